"""An output folder or a catalog -> report.html: read, compute the sections, render, write
atomically."""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from runner.errors import OutputError
from runner.output import write_atomic
from runner.report import charts, data
from runner.report.html import Section, render_page
from runner.report.loading import Library, load_library
from runner.report.tracks import Track

TABLE_LIMIT = 1000  # rows drawn at once; search and sort work on every track


@dataclass
class Built:
    """What the command tells the user afterwards."""

    tracks: int
    unreadable: list[tuple[Path, str]]
    not_results: int
    sections: list[str]
    size: int
    seconds: float


def json_links(paths: list[Path], folder: Path, report_dir: Path) -> list[str]:
    """Links from the report to the tracks' JSON (all under ``folder``) that survive moving
    the report and the outputs together."""
    try:
        base = Path(os.path.relpath(folder.resolve(), report_dir.resolve()))
    except ValueError:  # another drive (Windows): absolute file URLs
        return [path.resolve().as_uri() for path in paths]
    return [quote((base / path.relative_to(folder)).as_posix()) for path in paths]


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _library_section(library: Library, tracks: list[Track]) -> Section:
    summary = data.library_summary(tracks, len(library.unreadable), len(library.not_results))
    cards = [("tracks", f"{summary['tracks']:,}"),
             ("total duration (h:mm:ss)", _duration(summary["duration_s"])),
             ("with warnings", f"{summary['with_warnings']:,}"),
             ("silent", f"{summary['silent']:,}")]
    if summary["unreadable"]:
        cards.append(("unreadable files skipped", f"{summary['unreadable']:,}"))
    if summary["not_results"]:
        cards.append(("other JSON files skipped", f"{summary['not_results']:,}"))
    body = "".join(f'<div class="card"><b>{html.escape(value)}</b><span>{html.escape(label)}'
                   f"</span></div>" for label, value in cards)
    profiles = ", ".join(f"{html.escape(name)} ({count:,})"
                         for name, count in summary["profiles"].items()) or "unknown"
    return Section("library", "Library", f"Profiles: {profiles}. Silent tracks are listed in "
                   "the table but left out of the charts.", body=f'<div class="cards">{body}</div>')


def _chart_sections(tracks: list[Track], maps: list[dict]) -> list[Section]:
    sections = []
    tempo = data.tempo(tracks)
    if tempo:
        sections.append(Section(
            "tempo", "Tempo", f"rhythm.bpm of {tempo['tracks']:,} tracks (median "
            f"{tempo['median_bpm']:.0f} BPM). <b>{tempo['ambiguous']:,}</b> are "
            "octave-ambiguous: another estimate of the same output (the BPM histogram's first "
            "peak, its second peak when at least half as strong, or the freesound profiles' "
            "loop tempo) is about 2 or 3 times or a half or a third of rhythm.bpm (within 5 %).",
            {"chart-tempo": charts.tempo_chart()}))
    keys = data.keys(tracks)
    if keys:
        sections.append(Section(
            "keys", "Keys", "tonal.key_key/key_scale (tonal.key.* for the freesound profiles) on "
            "the circle of fifths: major keys outside, each relative minor inside.",
            {"chart-keys": charts.key_chart(keys)}))
    scatter = data.loudness_danceability(tracks)
    if scatter:
        sections.append(Section(
            "loudness", "Loudness and danceability", f"{scatter['tracks']:,} tracks. Hover a "
            "point for the track, click it to open its JSON.",
            {"chart-loudness": charts.scatter_chart(
                "loudness", scatter["x_title"], "dance", scatter["y_title"], scatter["tracks"],
                "loudness against danceability")}))
    taxonomies = data.taxonomies(tracks)
    if taxonomies:
        sections.append(Section(
            "taxonomies", "Classifiers", "Each classifier section present (highlevel.*, your "
            "own models): how many tracks each class tops; colour: its mean probability.",
            {f"chart-taxonomy-{n}": charts.taxonomy_chart(t.name, t.rows, t.tracks, t.classes)
             for n, t in enumerate(taxonomies)}))
    for n, embedding in enumerate(maps):
        sections.append(Section(
            f"map{n}", f"Map: {embedding['name']}", f"{len(embedding['points']):,} tracks, "
            f"{embedding['dimensions']}-dimensional embeddings projected to 2-D by "
            f"{embedding['method']}: nearby points sound alike to the model. Hover a point for "
            "the track, click it to open its JSON.",
            {f"chart-map{n}": charts.scatter_chart(
                f"map{n}_x", "component 1", f"map{n}_y", "component 2",
                len(embedding["points"]), f"embedding map {embedding['name']}", embedding=True)}))
    return sections


def _table(dataset: dict) -> list[dict]:
    titles = dataset["titles"]
    columns = [("name", "track", False), ("duration", "duration (s)", True),
               ("bpm", "BPM", True), ("key", "key", False),
               ("loudness", titles["loudness"], True), ("dance", titles["dance"], True)]
    columns += [(f, titles[f], False) for f in dataset["fields"] if f.startswith("top")]
    columns.append(("warnings", "warnings", False))
    return [{"field": f, "title": t, "numeric": numeric} for f, t, numeric in columns]


def _table_section(tracks: list[Track], table: list[dict]) -> Section:
    head = "".join(f'<th data-field="{c["field"]}">{html.escape(c["title"])}</th>'
                   for c in table)
    body = ('<input id="track-search" type="search" placeholder="search tracks, keys, '
            'classes..." aria-label="search tracks"><span id="track-count"></span>'
            f'<div class="table-wrap"><table id="track-table"><thead><tr>{head}</tr></thead>'
            '<tbody id="track-rows"></tbody></table></div>')
    return Section("tracks", "Tracks", f"{len(tracks):,} tracks. Click a heading to sort; "
                   "\u2248 marks an octave-ambiguous tempo.", body=body)


def build_report(folder: Path, output: Path, method: str = "pca", jobs: int | None = None
                 ) -> Built:
    """Write the report of every output under ``folder`` to ``output`` (``jobs`` processes
    read the outputs; None: decided by their size)."""
    start = time.perf_counter()
    if not folder.is_dir():
        raise OutputError(f"{folder}: not a folder")
    library = load_library(folder, jobs)
    if not library.tracks:
        detail = f" ({len(library.unreadable)} unreadable)" if library.unreadable else ""
        raise OutputError(f"{folder}: no results found{detail}")
    return _write(library, str(folder.resolve()), output, method, start)


def build_report_from_catalog(url: str, output: Path, method: str = "pca") -> Built:
    """Write the report of every output a catalog (SQLite or PostgreSQL) holds: the same
    page as the folder's, its links going to the outputs the catalog was updated from."""
    from runner.report.from_catalog import load_catalog

    start = time.perf_counter()
    library, location = load_catalog(url, output.parent)
    if not library.tracks:
        raise OutputError(f"{location}: the catalog holds no outputs")
    return _write(library, location, output, method, start)


def _write(library: Library, source: str, output: Path, method: str, start: float) -> Built:
    tracks = library.tracks
    maps = data.embedding_maps(tracks, method)
    links = json_links([t.path for t in tracks], library.folder, output.parent)
    dataset = data.dataset(tracks, links, maps)
    table = _table(dataset)
    sections = [_library_section(library, tracks), *_chart_sections(tracks, maps),
                _table_section(tracks, table)]
    page = render_page("Library report", f"{source} - {len(tracks):,} tracks",
                       sections, dataset, table, TABLE_LIMIT)
    write_atomic(output, page)
    return Built(len(tracks), library.unreadable, len(library.not_results),
                 [s.id for s in sections], len(page.encode("utf-8")),
                 time.perf_counter() - start)
