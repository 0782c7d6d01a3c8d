"""Networks are built and torn down for every file: memory must not creep up (MTG/essentia#405)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import click_track, write_audio

SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    from runner.extract import Extractor

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    extractor = Extractor("music")  # compiled once, reused for every file
    paths, out = sys.argv[1:3], sys.argv[3]
    samples, docs = [], []
    for i in range(40):
        docs.append(extractor.extract(paths[i % 2], out))
        samples.append(rss_mib())
    same = [json.dumps(docs[i], sort_keys=True) == json.dumps(docs[i % 2], sort_keys=True)
            for i in range(len(docs))]
    print(json.dumps({"rss": samples, "same": same}))
    sys.stdout.flush()
    os._exit(0)
""")


def test_repeated_runs_do_not_grow_memory_and_repeat_exactly(tmp_path):
    """One compiled profile, its networks reused for 40 files (two alternating inputs)."""
    first = write_audio(tmp_path / "a.wav", click_track(5.0, bpm=120))
    second = write_audio(tmp_path / "b.wav", click_track(7.0, bpm=90, seed=4), sr=48000)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(first), str(second), str(tmp_path / "o.json")],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert all(report["same"])  # a reused network gives each file exactly its first result
    samples = report["rss"]
    warm, end = samples[9], samples[-1]
    # 30 more runs after warming up: allow allocator noise, not a per-run leak
    assert end - warm < 15, f"RSS grew from {warm:.0f} MiB to {end:.0f} MiB over 30 runs"
