"""End-to-end: the installed commands on audio files made by the tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import click_track, tone, write_audio

MINI = Path(__file__).with_name("data") / "mini.yaml"


def command(name: str) -> str:
    """The console script installed beside this Python (pip install -e .)."""
    path = Path(sys.executable).with_name(name)
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed (pip install -e .)"
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([command(args[0]), *args[1:]], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_run_profile_writes_valid_json(tmp_path, clicks_wav):
    out = tmp_path / "nested" / "out.json"
    result = run("extractor", "run", str(MINI), str(clicks_wav), str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no TensorFlow or Essentia chatter
    doc = json.loads(out.read_text())
    assert abs(doc["rhythm"]["bpm"] - 120) < 2
    assert doc["rhythm"]["beats_count"] == len(doc["rhythm"]["beats_position"])
    assert doc["metadata"]["profile"]["name"] == "mini"
    assert doc["metadata"]["audio_properties"]["codec"] == "pcm_s16le"
    assert doc["metadata"]["audio_properties"]["number_channels"] == 2
    assert doc["metadata"]["audio_properties"]["lossless"] is True
    assert len(doc["lowlevel"]["mfcc"]["mean"]) == 13
    assert not list(out.parent.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_profile_hash_changes_with_overrides(tmp_path, clicks_wav):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run("extractor", "run", str(MINI), str(clicks_wav), str(a)).returncode == 0
    assert run("extractor", "run", str(MINI), str(clicks_wav), str(b),
               "--set", "graph.fc.params.frameSize=1024").returncode == 0
    ha = json.loads(a.read_text())["metadata"]["profile"]["hash"]
    hb = json.loads(b.read_text())["metadata"]["profile"]["hash"]
    assert ha != hb


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.wav", None, "missing.wav: no such file"),
        ("empty.wav", b"", "empty.wav: empty file"),
        ("noise.mp3", bytes(np.random.default_rng(1).integers(0, 255, 4000, dtype=np.uint8)),
         "noise.mp3: unsupported or corrupt audio"),
        ("notes.txt", b"not audio at all\n", "notes.txt: not a supported audio file"),
    ],
)
def test_bad_audio_gives_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = run("extractor", "run", str(MINI), str(path), str(tmp_path / "o.json"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o.json").exists()


def test_bad_profile_gives_one_line_with_location(tmp_path, clicks_wav):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINI.read_text().replace("hopSize: 1024}", "hopsize: 1024}", 1))
    result = run("extractor", "run", str(bad), str(clicks_wav), str(tmp_path / "o.json"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {bad}:7: graph.fc.params.hopsize: FrameCutter has no parameter 'hopsize' "
        "(did you mean 'hopSize'?)"
    )
    debug = run("extractor", "run", str(bad), str(clicks_wav), str(tmp_path / "o.json"),
                "--debug")
    assert "Traceback" in debug.stderr


def test_validate_and_schema_commands(tmp_path):
    result = run("extractor", "validate", str(MINI))
    assert result.returncode == 0, result.stderr
    assert "stage 1: bl, nbeats" in result.stdout
    assert "shared: fc also serves fc2" in result.stdout
    schema = run("extractor", "schema", str(MINI))
    assert json.loads(schema.stdout)["properties"]["rhythm"]["required"] == [
        "beats_count", "beats_loudness", "beats_position", "bpm"]
    fmt = run("extractor", "schema", "profile")
    assert json.loads(fmt.stdout)["title"] == "extractor profile"


def test_stereo_downmix_and_trim(tmp_path):
    left, right = tone(4.0, 440.0), tone(4.0, 880.0) * 0.0
    path = write_audio(tmp_path / "st.wav", np.stack([left, right], axis=1))
    out = tmp_path / "o.json"
    result = run("extractor", "run", str(MINI), str(path), str(out),
                 "--set", "audio.downmix=left", "--set", "audio.start_time=1",
                 "--set", "audio.end_time=3")
    assert result.returncode == 0, result.stderr
    props = json.loads(out.read_text())["metadata"]["audio_properties"]
    assert props["analysis"]["length"] == pytest.approx(2.0, abs=0.01)
    assert props["analysis"]["downmix"] == "left"


def test_resampling_to_analysis_rate(tmp_path):
    path = write_audio(tmp_path / "lo.wav", click_track(6.0, sr=22050), sr=22050)
    out = tmp_path / "o.json"
    assert run("extractor", "run", str(MINI), str(path), str(out)).returncode == 0
    props = json.loads(out.read_text())["metadata"]["audio_properties"]
    assert props["sample_rate"] == 22050
    assert props["analysis"]["sample_rate"] == 44100
    assert props["analysis"]["length"] == pytest.approx(6.0, abs=0.01)


# -- outputs go where the user meant ------------------------------------------------------------
@pytest.mark.parametrize("form", ["existing folder", "ends in /"])
def test_an_output_folder_gets_the_file_inside(tmp_path, clicks_wav, form):
    """OUTPUT naming a folder (it exists, or ends in '/') is an output folder, as --output:
    OUT/<input stem>.json, never a file named like the folder."""
    out = tmp_path / "out"
    if form == "existing folder":
        out.mkdir()
    result = run("extractor", "run", str(MINI), str(clicks_wav),
                 str(out) + ("/" if form == "ends in /" else ""))
    assert result.returncode == 0, result.stderr
    assert out.is_dir() and sorted(p.name for p in out.iterdir()) == ["clicks.json"]
    assert json.loads((out / "clicks.json").read_text())["metadata"]["profile"]["name"] == "mini"


def test_the_output_extension_decides_the_format(tmp_path, clicks_wav):
    """out.yaml is YAML (Essentia's outputFormat), out.json JSON; another extension gets the
    profile's format, and a note says so."""
    import yaml

    docs = {}
    for name in ("out.json", "out.yaml", "out.yml", "out.sig"):
        result = run("extractor", "run", str(MINI), str(clicks_wav), str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        text = (tmp_path / name).read_text()
        docs[name] = yaml.safe_load(text)
        assert text.startswith("{") == (name in ("out.json", "out.sig")), name
        assert result.stderr == ("" if name != "out.sig" else
                                 f"note: {tmp_path / name}: written as JSON (the profile's "
                                 "output.format); name it .json, .yaml or .yml to choose\n")
    assert docs["out.yaml"]["rhythm"]["bpm"] == pytest.approx(docs["out.json"]["rhythm"]["bpm"])
    assert docs["out.yaml"].keys() == docs["out.json"].keys() == docs["out.sig"].keys()


@pytest.mark.parametrize("where, reason", [
    ("/proc/out.json", "cannot create a file in /proc (No such file or directory)"),
    ("{file}/out.json", "{file} is not a folder"),
    ("{folder}/sub/", None),  # a folder: handled as an output folder, see above
])
def test_an_unwritable_output_is_one_line_before_any_analysis(tmp_path, clicks_wav, where,
                                                              reason):
    afile = tmp_path / "afile"
    afile.write_text("x")
    target = where.format(file=afile, folder=afile)
    result = run("extractor", "run", str(MINI), str(clicks_wav), target)
    assert result.returncode == 1
    if reason is None:
        expected = (f"error: {target}: cannot write output: cannot make the folder "
                    "(Not a directory)")
    else:
        expected = f"error: {target}: cannot write output: {reason.format(file=afile)}"
    assert result.stderr.splitlines()[-1] == expected, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_unwritable_output_folders_of_a_batch_are_one_line(tmp_path, clicks_wav):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, message in [
        ("/proc/outdir", "/proc/outdir: cannot write output: cannot make the folder "
                         "(No such file or directory)"),
        (str(afile), f"{afile}: cannot write output: it is a file, not a folder"),
    ]:
        result = run("extractor", "run", str(MINI), str(clicks_wav.parent), out)
        assert result.returncode == 1
        assert result.stderr == f"error: {message}\n"
    both = run("extractor", "run", str(MINI), str(clicks_wav), str(tmp_path / "a"),
               "--output", str(tmp_path / "b"))
    assert both.returncode == 2
    assert both.stderr == (f"error: usage: two outputs: {tmp_path / 'a'} and --output "
                           f"{tmp_path / 'b'} (give one)\n")


def test_write_atomic_failures_are_output_errors(tmp_path, monkeypatch):
    """Whatever the system refuses at the last moment (the target became a folder, a file is
    where its folder should be, the disk is full) is one line naming the output, and no
    temporary file is left."""
    import errno

    from runner.errors import OutputError
    from runner.output import files as write

    (tmp_path / "x.json").mkdir()
    with pytest.raises(OutputError, match=r"x\.json: cannot write output: it is a folder$"):
        write.write_atomic(tmp_path / "x.json", "{}")
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match=r"cannot make the folder .*/f/g \(Not a directory\)$"):
        write.write_atomic(tmp_path / "f" / "g" / "y.json", "{}")
    with pytest.raises(OutputError, match=r"cannot make the folder .*/f \(a file is in the way"):
        write.write_atomic(tmp_path / "f" / "y.json", "{}")

    def full(fd: int) -> None:  # what a full disk answers when the data is flushed
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(write.os, "fsync", full)
    with pytest.raises(OutputError, match=r"z\.json: cannot write output: No space left on "
                                          r"device$"):
        write.write_atomic(tmp_path / "z.json", "{}")
    assert sorted(os.listdir(tmp_path)) == ["f", "x.json"]
    with pytest.raises(OutputError, match="cannot write output: cannot create a file in /proc"):
        write.write_atomic("/proc/x.json", "{}")


def test_equal_loudness_says_what_the_graph_does(write_profile):
    """metadata.audio_properties.analysis.equal_loudness: true only when every descriptor
    reads the signal through EqualLoudness (as Essentia's eqloud outputs); the music profile
    writes false, as MusicExtractor does (tests/test_music_reference.py compares it)."""
    from runner import compile
    from runner import profile as load
    from runner.output import equal_loudness

    def plan(text: str):
        return compile.compile_profile(load.load_profile(str(write_profile(text))))

    head = """
        name: eq
        stats: {lowlevel: [mean]}
        graph:
          eq: {algorithm: EqualLoudness, inputs: {signal: audio.signal}}
          fc: {algorithm: FrameCutter, inputs: {signal: eq.signal}}
          rms: {algorithm: RMS, inputs: {array: fc.frame}}
          fc_raw: {algorithm: FrameCutter, inputs: {signal: audio.signal}}
          zcr: {algorithm: ZeroCrossingRate, inputs: {signal: fc_raw.frame}}
        descriptors:
          lowlevel.rms: rms.rms
          metadata.audio_properties.md5_encoded: {from: audio.md5, single: true}
    """
    assert equal_loudness(plan(head)) is True
    assert equal_loudness(plan(head + "      lowlevel.zcr: zcr.zeroCrossingRate\n")) is False
    assert equal_loudness(compile.compile_profile(load.load_profile("music"))) is False
    assert equal_loudness(compile.compile_profile(load.load_profile(str(MINI)))) is False
