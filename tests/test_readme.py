"""The README and docs/ are the contract with users: their examples, commands and links work."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.test_cli import run

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def blocks(language: str, page: Path = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)


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
    (example,) = [b for b in blocks("yaml", ROOT / "docs" / "profiles.md")
                  if b.startswith("outputFormat: yaml")]
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


def test_the_readme_links_every_docs_page_and_every_link_resolves():
    """README keeps what a new user needs and links the rest; a moved page breaks this test."""
    readme = README.read_text()
    for page in DOCS:
        assert f"](docs/{page.name})" in readme, page.name
    for source in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", source.read_text()):
            assert (source.parent / target).exists(), f"{source.name}: {target}"


def test_the_readme_stays_short():
    """One screen or two: the set-up commands, commands, exit codes, a profile, jq, links."""
    readme = README.read_text()
    assert len(readme.encode()) < 16_000
    for heading in ("## Set up", "## Commands", "## A profile", "## Querying results with jq",
                    "## Documentation"):
        assert heading in readme
    assert "Exit codes:" in readme


def test_no_merge_conflict_markers_are_committed():
    """A conflict resolved in a hurry once left its markers in a page; none may land again."""
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    marked = []
    for name in files:
        path = ROOT / name
        if path.suffix not in {".md", ".py", ".toml", ".yaml", ".yml", ".json", ".nix", ""}:
            continue
        if not path.is_file():
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        if any(line.startswith(("<<<<<<< ", ">>>>>>> ")) for line in lines):
            marked.append(name)
    assert marked == []
