"""`extractor find`: filters parsed into parameterised SQL, and the ways to show tracks.

``--where`` is a small language, not SQL: comparisons of a descriptor (dotted name, or a
track column: path, output, profile, profile_hash, duration, analysed_at) with a number or a
quoted string (``= != <> < <= > >= like``, ``between .. and ..``, ``in (..)``, ``is [not]
null``), joined by ``and``, ``or``, ``not`` and parentheses. Names and values become query
parameters, so nothing a user types reaches the database as SQL.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from typing import IO, Any

from runner.catalog import schema
from runner.catalog.backend import Backend, CatalogError

TRACK_COLUMNS = {"path", "output", "profile", "profile_hash", "duration", "analysed_at"}
KEYS = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
ENHARMONIC = {"DB": "C#", "D#": "Eb", "GB": "F#", "G#": "Ab", "A#": "Bb", "CB": "B", "E#": "F",
              "FB": "E", "B#": "C"}
SHOWN = ["rhythm.bpm", "tonal.key_key", "tonal.key_scale"]
_TOKEN = re.compile(r"""\s*(?:
    (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])
  | '(?P<string>(?:[^']|'')*)'
  | "(?P<quoted>(?:[^"]|"")+)"
  | (?P<op><=|>=|!=|<>|==|=|<|>|\(|\)|,)
  | (?P<word>[A-Za-z_][\w.#-]*)
)""", re.VERBOSE)
WORDS = {"and", "or", "not", "between", "in", "is", "null", "like", "true", "false"}


@dataclass
class Found:
    """Tracks to show: one dict per track (path, output, profile, duration and the values of
    ``columns``), in order."""

    columns: list[str]
    rows: list[dict[str, Any]]
    audio_root: str | None = None


@dataclass
class Filters:
    conditions: list[str] = field(default_factory=list)  # SQL with ? placeholders
    params: list[Any] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # descriptors the filters mention

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Filters:
        filters = cls()
        if args.bpm:
            low, high = parse_range(args.bpm, "--bpm")
            filters.scalar("rhythm.bpm", "BETWEEN ? AND ?", [low, high], "num")
        if args.key:
            key, scale = parse_key(args.key)
            filters.scalar("tonal.key_key", "= ?", [key], "text")
            if scale:
                filters.scalar("tonal.key_scale", "= ?", [scale], "text")
        for text in args.where:
            sql, params, names = WhereParser(text).parse()
            filters.conditions.append(sql)
            filters.params.extend(params)
            filters.names.extend(n for n in names if n not in filters.names)
        return filters

    def scalar(self, name: str, test: str, values: list[Any], column: str) -> None:
        self.conditions.append(_exists(name, column, test))
        self.params.extend([name, *values])
        if name not in self.names:
            self.names.append(name)


def _exists(name: str, column: str, test: str) -> str:
    return (f"EXISTS (SELECT 1 FROM scalars s WHERE s.track_id = t.id AND s.name = ? "
            f"AND s.{column} {test})")


def parse_range(text: str, option: str) -> tuple[float, float]:
    match = re.fullmatch(r"\s*([-+]?\d+(?:\.\d*)?)\s*\.\.\s*([-+]?\d+(?:\.\d*)?)\s*", text)
    if not match:
        raise CatalogError(f"{option} {text}: expected a range like 120..130")
    low, high = float(match[1]), float(match[2])
    return (low, high) if low <= high else (high, low)


def parse_key(text: str) -> tuple[str, str | None]:
    """``A minor``, ``Am``, ``F# major``, ``Bb`` -> Essentia's spelling (``A``, ``minor``)."""
    match = re.fullmatch(r"\s*([A-Ga-g])([#b]?)\s*(m|min|minor|maj|major)?\s*", text,
                         re.IGNORECASE)
    if not match:
        raise CatalogError(f'--key {text}: expected a key like "A minor", "F# major" or "Am"')
    note = match[1].upper() + match[2]
    note = ENHARMONIC.get(note.upper(), note)
    mode = (match[3] or "").lower()
    scale = None if not mode else "minor" if mode in ("m", "min", "minor") else "major"
    return note, scale


class WhereParser:
    """``--where`` text -> (SQL, parameters, descriptor names); one line on any error."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                self.fail(pos + len(text[pos:]) - len(text[pos:].lstrip()), "unexpected text")
            group = kind = match.lastgroup or ""
            value = match[group]
            if kind == "string":
                value = value.replace("''", "'")
            elif kind == "quoted":
                kind, value = "name", value.replace('""', '"')
            elif kind == "word":
                kind = "word" if value.lower() in WORDS else "name"
            self.tokens.append((kind, value, match.start(group)))
            pos = match.end()
        self.i = 0
        self.params: list[Any] = []
        self.names: list[str] = []

    def fail(self, pos: int, why: str) -> None:
        raise CatalogError(f"--where {self.text!r}: {why} at character {pos + 1} "
                           "(e.g. \"rhythm.bpm > 120 and tonal.key_scale = 'minor'\")")

    def peek(self, *words: str) -> bool:
        if self.i >= len(self.tokens):
            return False
        kind, value, _ = self.tokens[self.i]
        return (kind == "word" and value.lower() in words) or (kind == "op" and value in words)

    def take(self) -> tuple[str, str, int]:
        if self.i >= len(self.tokens):
            self.fail(len(self.text), "unexpected end")
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, *words: str) -> None:
        kind, value, pos = self.take()
        if not ((kind == "word" and value.lower() in words) or (kind == "op" and value in words)):
            self.fail(pos, f"expected {' or '.join(words)}, found {value!r}")

    def parse(self) -> tuple[str, list[Any], list[str]]:
        sql = self.expr()
        if self.i < len(self.tokens):
            self.fail(self.tokens[self.i][2], f"unexpected {self.tokens[self.i][1]!r}")
        return f"({sql})", self.params, self.names

    def expr(self) -> str:
        parts = [self.term()]
        while self.peek("or"):
            self.take()
            parts.append(self.term())
        return " OR ".join(parts) if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def term(self) -> str:
        parts = [self.factor()]
        while self.peek("and"):
            self.take()
            parts.append(self.factor())
        return " AND ".join(parts)

    def factor(self) -> str:
        if self.peek("not"):
            self.take()
            return f"NOT ({self.factor()})"
        if self.peek("("):
            self.take()
            inner = self.expr()
            self.expect(")")
            return f"({inner})"
        return self.comparison()

    def value(self) -> Any:
        kind, value, pos = self.take()
        if kind == "number":
            return float(value)
        if kind == "string":
            return value
        if kind == "word" and value.lower() in ("true", "false"):
            return 1.0 if value.lower() == "true" else 0.0
        self.fail(pos, f"expected a number or a 'quoted string', found {value!r}")

    def comparison(self) -> str:
        kind, name, pos = self.take()
        if kind != "name":
            self.fail(pos, f"expected a descriptor name, found {name!r}")
        if name not in self.names:
            self.names.append(name)
        if self.peek("is"):
            self.take()
            negate = self.peek("not")
            if negate:
                self.take()
            self.expect("null")
            found = self._test(name, "IS NOT NULL", [], "num", any_column=True)
            return found if negate else f"NOT {found}"
        if self.peek("between"):
            self.take()
            low = self.value()
            self.expect("and")
            high = self.value()
            return self._test(name, "BETWEEN ? AND ?", [low, high], _column(low, high))
        if self.peek("in"):
            self.take()
            self.expect("(")
            values = [self.value()]
            while self.peek(","):
                self.take()
                values.append(self.value())
            self.expect(")")
            marks = ", ".join("?" for _ in values)
            return self._test(name, f"IN ({marks})", values, _column(*values))
        op_kind, op, op_pos = self.take()
        if not (op_kind == "op" and op in ("=", "==", "!=", "<>", "<", "<=", ">", ">=")
                or op_kind == "word" and op.lower() == "like"):
            self.fail(op_pos, f"expected a comparison (= != < <= > >= like), found {op!r}")
        op = {"==": "=", "!=": "<>"}.get(op, op.upper())
        value = self.value()
        return self._test(name, f"{op} ?", [value], _column(value))

    def _test(self, name: str, test: str, values: list[Any], column: str,
              any_column: bool = False) -> str:
        if name in TRACK_COLUMNS:
            self.params.extend(values)
            return f"t.{name} {test}"
        self.params.extend([name, *values])
        if any_column:
            return ("EXISTS (SELECT 1 FROM scalars s WHERE s.track_id = t.id AND s.name = ? "
                    "AND (s.num IS NOT NULL OR s.text IS NOT NULL))")
        return _exists(name, column, test)


def _column(*values: Any) -> str:
    return "text" if any(isinstance(v, str) for v in values) else "num"


def _chunks(items: list[Any], size: int = 500) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def describe(db: Backend, ids: list[int], names: list[str]) -> dict[int, dict[str, Any]]:
    """Track columns and the named descriptors of the tracks ``ids``, by id."""
    rows: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        marks = ", ".join("?" for _ in chunk)
        for track_id, path, output, profile, duration in db.execute(
                f"SELECT id, path, output, profile, duration FROM tracks WHERE id IN ({marks})",
                chunk):
            rows[track_id] = {"path": path, "output": output, "profile": profile,
                              "duration": duration}
        wanted = [n for n in names if n not in TRACK_COLUMNS]
        if wanted:
            name_marks = ", ".join("?" for _ in wanted)
            for track_id, name, num, text in db.execute(
                    f"SELECT track_id, name, num, text FROM scalars WHERE track_id IN ({marks}) "
                    f"AND name IN ({name_marks})", [*chunk, *wanted]):
                rows[track_id][name] = text if text is not None else num
    return rows


def find(db: Backend, filters: Filters, limit: int = 50) -> Found:
    schema.check_readable(db)
    where = " AND ".join(filters.conditions) or "1 = 1"
    ids = [row[0] for row in db.execute(
        f"SELECT t.id FROM tracks t WHERE {where} ORDER BY t.path, t.output LIMIT ?",
        [*filters.params, max(0, limit)])]
    columns = SHOWN + [n for n in filters.names if n not in SHOWN and n not in TRACK_COLUMNS]
    described = describe(db, ids, columns)
    return Found(columns, [described[i] for i in ids], schema.meta(db, "audio_root"))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.6g}"
    return str(value)


def show(found: Found, fmt: str, out: IO[str]) -> None:
    """A rich table, JSON, an M3U playlist, or the audio paths one per line."""
    def audio(row: dict[str, Any]) -> str:
        path = row["path"] or row["output"]
        return f"{found.audio_root.rstrip('/')}/{path}" if found.audio_root else path

    if fmt == "json":
        out.write(json.dumps(found.rows, indent=1) + "\n")
    elif fmt == "paths":
        out.writelines(audio(row) + "\n" for row in found.rows)
    elif fmt == "m3u":
        out.write("#EXTM3U\n")
        for row in found.rows:
            seconds = round(row["duration"]) if row.get("duration") is not None else -1
            name = (row["path"] or row["output"]).rsplit("/", 1)[-1]
            out.write(f"#EXTINF:{seconds},{name}\n{audio(row)}\n")
    else:
        from rich.console import Console
        from rich.table import Table

        extra = [c for c in found.columns if c not in ("tonal.key_key", "tonal.key_scale")]
        table = Table("path", "duration", "key", *extra, title=f"{len(found.rows)} tracks")
        for row in found.rows:
            key = " ".join(_text(row.get(k)) for k in ("tonal.key_key", "tonal.key_scale"))
            table.add_row(row["path"] or row["output"], _text(row.get("duration")),
                          key.strip(), *(_text(row.get(c)) for c in extra))
        Console(file=out, width=None if out.isatty() else 200).print(table)
