"""Benchmark a built-in profile against the Essentia extractor it reproduces, in one run.

``music`` (the default) is compared with ``essentia.standard.MusicExtractor``;
``freesound_general`` and ``freesound_music`` with ``essentia.standard.FreesoundExtractor``.

Both run on the same files (a 30 s and a 5 min synthetic track, each as WAV and MP3), each
measurement in a fresh subprocess so peak memory is per run. The two sides alternate for
``--repeats`` rounds per file; the report gives median wall times (one command per file, the
next file in one process, the first file after the imports), peak RSS and the ratios
ours / reference (the reference is the anchor, 1.0).

Usage: python bench/bench_music.py [--repeats 3] [--workdir DIR] [--json OUT]
Child (internal): python bench/bench_music.py --child ours|reference FILE
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SR = 44100
TRACKS: list[tuple[str, float]] = [("30s", 30.0), ("5min", 300.0)]
FORMATS: list[str] = ["wav", "mp3"]
SIDES: tuple[str, str] = ("ours", "reference")


# --------------------------------------------------------------------------- child


def _rss_kib() -> int:
    """Current resident set size in KiB (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _peak_kib() -> int:
    """Peak resident set size of this process in KiB (ru_maxrss on Linux)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _hwm_kib() -> int:
    """Peak RSS of this process image only (VmHWM), a cross-check of ru_maxrss."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


REFERENCES = {"music": "MusicExtractor", "freesound_general": "FreesoundExtractor",
              "freesound_music": "FreesoundExtractor"}
# MusicExtractor writes no highlevel section here (its Gaia models are not obtainable), so ours
# runs without its model stage too, whatever the model cache holds (bench_highlevel.py times it).
NO_MODELS = {"music": ["options.highlevel.compute=false"]}


def child(side: str, path: str, profile: str = "music", again: bool = False) -> None:
    """Run one extraction, print one JSON line, and leave without interpreter teardown.

    ``again``: extract twice in the process and time the second, what each file after the
    first costs in a library run (ours: the same Extractor; reference: a new extractor call,
    as a Python user of Essentia writes it).
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result: dict[str, Any] = {"side": side, "file": path, "ok": False}
    code = 0
    try:
        if side == "ours":  # the runner imports Essentia its own (lazy) way, as the CLI does
            from runner.extract import Extractor
        else:
            import essentia

            essentia.log.infoActive = False
            essentia.log.warningActive = False
            import essentia.standard as std

        result["baseline_kib"] = _rss_kib()
        with tempfile.TemporaryDirectory(prefix="bench_music_out_") as tmp:
            out = os.path.join(tmp, "out.json")
            if side == "ours":
                extractor = None

                def extract() -> None:
                    nonlocal extractor
                    extractor = extractor or Extractor(profile, NO_MODELS.get(profile, []))
                    extractor.extract(path, out)
            else:
                def extract() -> None:
                    pool, _frames = getattr(std, REFERENCES[profile])()(path)
                    std.YamlOutput(filename=out, format="json")(pool)
            for _ in range(2 if again else 1):
                start = time.perf_counter()
                extract()
                result["wall_s"] = time.perf_counter() - start
            result["out_bytes"] = os.path.getsize(out)
        result["peak_kib"] = _peak_kib()
        result["hwm_kib"] = _hwm_kib()
        result["ok"] = True
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["peak_kib"] = _peak_kib()
        code = 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --------------------------------------------------------------------------- parent


def make_inputs(workdir: Path) -> list[Path]:
    """Write the four input files into ``workdir`` unless they are already there."""
    files = [workdir / f"demo_{label}.{fmt}" for label, _ in TRACKS for fmt in FORMATS]
    if all(f.is_file() and f.stat().st_size > 0 for f in files):
        return files
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import essentia
    import numpy as np

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard as std

    sys.path.insert(0, str(REPO))
    from tests.data.make_demo import demo

    workdir.mkdir(parents=True, exist_ok=True)
    for label, seconds in TRACKS:
        stereo: np.ndarray | None = None
        for fmt in FORMATS:
            target = workdir / f"demo_{label}.{fmt}"
            if target.is_file() and target.stat().st_size > 0:
                continue
            if stereo is None:
                mono = demo(seconds=seconds)
                stereo = np.ascontiguousarray(np.stack([mono, mono], axis=1), dtype=np.float32)
            partial = target.with_name(f"{target.stem}.part.{fmt}")
            std.AudioWriter(filename=str(partial), sampleRate=SR, format=fmt, bitrate=192)(stereo)
            partial.replace(target)
    return files


def make_inputs_isolated(workdir: Path) -> list[Path]:
    """Generate the inputs in a subprocess.

    On Linux a child's ru_maxrss starts from its parent's peak RSS (it survives fork and exec),
    so the parent must stay small: the audio is synthesised elsewhere.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--make-inputs", str(workdir)],
        env=env, cwd=str(REPO), capture_output=True, text=True,
    )
    if proc.returncode != 0:  # FFmpeg chatter on stderr is only shown when generation fails
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"generating the inputs failed (exit {proc.returncode})")
    return [workdir / f"demo_{label}.{fmt}" for label, _ in TRACKS for fmt in FORMATS]


def run_child(side: str, path: Path, profile: str = "music",
              again: bool = False) -> dict[str, Any]:
    """Measure one extraction in a fresh interpreter; return its JSON result."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", side, "--profile", profile,
         *(["--again"] if again else []), str(path)],
        capture_output=True, text=True, env=env, cwd=str(REPO),
    )
    process_s = time.perf_counter() - started  # interpreter start and imports included
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return {**json.loads(line), "process_s": process_s}
            except json.JSONDecodeError:
                break
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"side": side, "file": str(path), "ok": False,
            "error": f"child exited {proc.returncode}: " + " | ".join(tail)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median wall time and max peak RSS over the successful runs of one side."""
    good = [r for r in runs if r.get("ok")]
    summary: dict[str, Any] = {"runs": len(runs), "ok": len(good),
                               "errors": sorted({r["error"] for r in runs if not r.get("ok")})}
    if good:
        summary["median_wall_s"] = statistics.median(r["wall_s"] for r in good)
        summary["median_process_s"] = statistics.median(r["process_s"] for r in good)
        summary["wall_s"] = [r["wall_s"] for r in good]
        summary["peak_kib"] = max(r["peak_kib"] for r in good)
        summary["hwm_kib"] = max(r["hwm_kib"] for r in good)
        summary["baseline_kib"] = max(r["baseline_kib"] for r in good)
    return summary


def ratio(ours: dict[str, Any], ref: dict[str, Any], key: str) -> float | None:
    """ours / reference for ``key``, or None when either side has no value."""
    if key in ours and key in ref and ref[key]:
        return ours[key] / ref[key]
    return None


def machine_note() -> dict[str, Any]:
    """What the numbers were taken on."""
    note: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    try:
        note["cpu_model"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        from importlib.metadata import version

        note["essentia"] = version("essentia-tensorflow")
    except Exception:
        pass
    return note


def render(results: list[dict[str, Any]], note: dict[str, Any], repeats: int,
           profile: str = "music") -> None:
    """Print the results table with rich."""
    from rich.console import Console
    from rich.table import Table

    def secs(s: dict[str, Any], key: str = "median_wall_s") -> str:
        return f"{s[key]:.2f}" if s.get(key) is not None else "error"

    def proc(s: dict[str, Any]) -> str:
        return f"{s['median_process_s']:.2f}" if "median_process_s" in s else "error"

    def mib(s: dict[str, Any]) -> str:
        return f"{s['peak_kib'] / 1024:.0f}" if "peak_kib" in s else "error"

    def rat(value: float | None) -> str:
        return f"{value:.2f}" if value is not None else "-"

    table = Table(title=f"{profile} profile vs {REFERENCES[profile]} "
                  f"({repeats} alternating rounds per file)")
    table.add_column("file", no_wrap=True)
    for name in ("ref proc s", "ours proc s", "proc ×", "ref next s", "ours next s", "next ×",
                 "ref s", "ours s", "first ×", "ref MiB", "ours MiB", "mem ×"):
        table.add_column(name, justify="right", no_wrap=True)
    for res in results:
        ours, ref = res["ours"], res["reference"]
        table.add_row(res["name"], proc(ref), proc(ours), rat(res.get("process_ratio")),
                      secs(ref, "median_again_s"), secs(ours, "median_again_s"),
                      rat(res.get("again_ratio")), secs(ref), secs(ours),
                      rat(res["time_ratio"]), mib(ref), mib(ours), rat(res["mem_ratio"]))
    console = Console(width=max(150, Console().width))  # the table is wide; never squeeze it
    console.print(table)
    console.print("proc = median wall time of the whole process (interpreter, imports, "
                  "extraction, JSON: what one command per file costs); next = median wall time "
                  "of the second file in one process (what each file of a library run costs); "
                  "first = the first file in a process after the imports (ours builds its "
                  "algorithm classes and networks here, Essentia's import built all of its "
                  "classes before); peak = max ru_maxrss over the one-file runs.")
    console.print(f"ratio = ours / reference; reference = essentia.standard.{REFERENCES[profile]} "
                  "(anchor = 1.0). Target: <= 1.0, aiming at 0.75.")
    console.print("machine: " + ", ".join(f"{k}={v}" for k, v in note.items()))
    for res in results:
        for side in SIDES:
            for err in res[side]["errors"]:
                console.print(f"[red]{res['name']} {side}: {err}[/red]")


def bench(files: list[Path], repeats: int, profile: str = "music") -> list[dict[str, Any]]:
    """Alternate ours / reference ``repeats`` times per file."""
    results = []
    for path in files:
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        again: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for i in range(repeats):
            for side in SIDES:
                for library, into in ((False, runs), (True, again)):
                    r = run_child(side, path, profile, again=library)
                    into[side].append(r)
                    state = f"{r['wall_s']:.2f} s" if r.get("ok") else "FAILED"
                    print(f"  {path.name} round {i + 1}/{repeats} {side}"
                          f"{' (next file)' if library else ''}: {state}",
                          file=sys.stderr, flush=True)
        ours, ref = summarise(runs["ours"]), summarise(runs["reference"])
        ours_again, ref_again = summarise(again["ours"]), summarise(again["reference"])
        ours["median_again_s"] = ours_again.get("median_wall_s")
        ref["median_again_s"] = ref_again.get("median_wall_s")
        results.append({"name": path.name, "file": str(path), "ours": ours, "reference": ref,
                        "time_ratio": ratio(ours, ref, "median_wall_s"),
                        "again_ratio": ratio(ours, ref, "median_again_s"),
                        "process_ratio": ratio(ours, ref, "median_process_s"),
                        "mem_ratio": ratio(ours, ref, "peak_kib")})
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; run as the parent (benchmark) or as one measuring child."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per file")
    parser.add_argument("--workdir", help="folder caching the generated audio (default: temp)")
    parser.add_argument("--json", dest="json_out", help="also write the results here")
    parser.add_argument("--profile", choices=sorted(REFERENCES), default="music",
                        help="the built-in profile to measure (default: music)")
    parser.add_argument("--tracks", default="30s,5min",
                        help="which inputs: 30s, 5min or both (default: 30s,5min)")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--again", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--make-inputs", dest="make_inputs", help=argparse.SUPPRESS)
    parser.add_argument("file", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if not args.file:
            parser.error("--child needs FILE")
        child(args.child, args.file, args.profile, args.again)  # never returns
    if args.make_inputs:
        make_inputs(Path(args.make_inputs))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_music_") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        started = time.perf_counter()
        wanted = set(args.tracks.split(","))
        files = [f for f in make_inputs_isolated(workdir)
                 if f.stem.split("_", 1)[1] in wanted]
        results = bench(files, max(1, args.repeats), args.profile)
        total = time.perf_counter() - started
    note = machine_note()
    render(results, note, max(1, args.repeats), args.profile)
    print(f"total benchmark time: {total:.0f} s", file=sys.stderr)
    if args.json_out:
        doc = {"repeats": args.repeats, "machine": note, "total_s": total, "results": results}
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
