"""The README is the contract with users: its example profile and commands must work."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.test_cli import run

README = Path(__file__).parent.parent / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_annotated_example_profile_runs(tmp_path, clicks_wav):
    (example,) = [b for b in blocks("yaml") if b.startswith("name: my-profile")]
    profile = tmp_path / "my-profile.yaml"
    profile.write_text(example)
    assert run("extractor", "validate", str(profile)).returncode == 0
    out = tmp_path / "out.json"
    result = run("extractor", "run", str(profile), str(clicks_wav), str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert abs(doc["rhythm"]["bpm"] - 120) < 2
    assert set(doc["rhythm"]["beats_loudness"]) == {"mean", "var"}
    assert set(doc["lowlevel"]["mfcc"]) == {"mean", "cov", "icov"}


def test_essentia_profile_example_is_accepted(tmp_path, clicks_wav):
    (example,) = [b for b in blocks("yaml") if b.startswith("outputFormat: yaml")]
    profile = tmp_path / "essentia.yaml"
    profile.write_text(example.replace("startTime: 10\nendTime: 40\n", ""))
    out = tmp_path / "out.yaml"
    result = run("streaming-extractor-music", str(clicks_wav), str(out), str(profile))
    assert result.returncode == 0, result.stderr
    assert "chromaprint" in out.read_text()


def test_setup_commands_name_real_files_and_commands():
    first, second = [b.strip() for b in blocks("sh")[:2]]
    assert "streaming-extractor-music tests/data/demo.mp3 demo.json" in first
    assert (README.parent / "tests" / "data" / "demo.mp3").exists()
    ci = (README.parent / ".ci" / "run").read_text()
    assert second in ci  # CI runs exactly the README's test command
