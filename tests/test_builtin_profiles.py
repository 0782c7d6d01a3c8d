"""The built-in profiles through the installed commands: jq paths, subsets, Essentia profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from runner import compile, output
from runner import profile as load
from tests.test_cli import run

DEMO = Path(__file__).with_name("data") / "demo.mp3"
SCHEMAS = Path(__file__).parent.parent / "schemas"
BUILTINS = ["music", "lowlevel", "tonal", "rhythm", "beats", "freesound_general", "freesound_music",
            "highlevel", "clap", "tempo", "conditioning", "melody", "harmony"]


@pytest.fixture(scope="module")
def music_doc(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("music") / "demo.json"
    result = run("streaming-extractor-music", str(DEMO), str(out))
    assert result.returncode == 0, result.stderr
    # the only line: highlevel's models are not in the (test's empty) model cache
    assert result.stderr.startswith("note: highlevel: all 17 outputs left out, their models")
    assert result.stderr.count("\n") == 1 and "extractor models fetch highlevel" in result.stderr
    return json.loads(out.read_text())


def test_documented_jq_paths(music_doc):
    rhythm, tonal, lowlevel = music_doc["rhythm"], music_doc["tonal"], music_doc["lowlevel"]
    assert rhythm["bpm"] == pytest.approx(100, abs=1)  # the demo is made at 100 BPM
    beats = rhythm["beats_position"]
    assert len(beats) > 25 and all(b2 > b1 for b1, b2 in zip(beats, beats[1:], strict=False))
    assert sum(abs(b2 - b1 - 0.6) < 0.03 for b1, b2 in zip(beats, beats[1:], strict=False)) \
        > 0.8 * (len(beats) - 1)
    assert len(rhythm["onset_times"]) >= len(beats)  # kick, snare and hats all make onsets
    assert tonal["key_key"] in "A A# B C C# D D# E F F# G G#".split()
    assert tonal["key_scale"] in ("major", "minor")
    # the chords are tuned to A440; the drums pull Essentia's estimate (434 Hz here) a little
    assert tonal["tuning_frequency"] == pytest.approx(440, abs=10)
    assert len(lowlevel["mfcc"]["mean"]) == 13
    assert 0 < lowlevel["spectral_centroid"]["mean"] < 22050
    assert music_doc["metadata"]["profile"]["name"] == "music"


@pytest.mark.parametrize("name", ["lowlevel", "tonal", "rhythm", "beats"])
def test_subset_commands_give_subsets_of_music(tmp_path, music_doc, name):
    out = tmp_path / f"{name}.json"
    for spelling in (f"streaming-extractor-{name}", f"streaming_extractor_{name}"):
        result = run(spelling, str(DEMO), str(out))
        assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    sections = set(doc) - {"metadata"}
    assert sections == ({"rhythm"} if name == "beats" else {name})
    for section in sections:
        assert set(doc[section]) <= set(music_doc[section])
    if name == "beats":
        assert set(doc["rhythm"]) == {"beats_position", "beats_count", "bpm", "onset_times",
                                      "onset_rate", "beats_loudness", "beats_loudness_band_ratio"}
        assert doc["rhythm"]["beats_position"] == music_doc["rhythm"]["beats_position"]


def test_essentia_profile_file_as_third_argument(tmp_path):
    profile = tmp_path / "essentia_profile.yaml"
    profile.write_text(
        "outputFormat: yaml\noutputFrames: 1\nstartTime: 2\nendTime: 12\n"
        "lowlevel:\n  frameSize: 4096\n  hopSize: 2048\n  stats: [mean, var]\n"
        "  mfccStats: [mean]\nrhythm:\n  method: multifeature\ntonal:\n  stats: [\"mean\"]\n"
        "chromaprint:\n  compute: 0\n"
    )
    out = tmp_path / "out.yaml"
    result = run("streaming_extractor_music", str(DEMO), str(out), str(profile))
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(out.read_text())
    assert set(doc["lowlevel"]["spectral_centroid"]) == {"mean", "var"}
    assert set(doc["lowlevel"]["mfcc"]) == {"mean"}
    assert set(doc["tonal"]["hpcp"]) == {"mean"}
    assert doc["metadata"]["audio_properties"]["analysis"]["length"] == pytest.approx(10, abs=0.01)
    frames = yaml.safe_load((tmp_path / "out.yaml_frames").read_text())  # Essentia: OUT_frames
    # FrameCutter centres frame k at k * hop: frames while k * 2048 - 4096 / 2 < 441000 samples
    assert len(frames["lowlevel"]["spectral_centroid"]) == 217
    assert len(frames["lowlevel"]["mfcc"][0]) == 13


def test_essentia_profile_unknown_key(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("lowlevel:\n  frameSize: 1024\n  frameSiz: 3\n")
    result = run("streaming-extractor-music", str(DEMO), str(tmp_path / "o.json"), str(profile))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {profile}:3: lowlevel.frameSiz: unknown key of Essentia's extractor profile "
        "format (did you mean 'lowlevel.frameSize'?)"
    )


def test_profile_option_runs_another_profile(tmp_path):
    out = tmp_path / "o.json"
    result = run("streaming-extractor-music", str(DEMO), str(out), "--profile", "beats")
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["metadata"]["profile"]["name"] == "beats"


def test_profiles_command_lists_builtins():
    result = run("extractor", "profiles")
    assert result.returncode == 0
    for name in BUILTINS:
        assert name in result.stdout
    assert "_input" not in result.stdout  # fragments are not profiles


@pytest.mark.parametrize("name", BUILTINS)
def test_committed_output_schemas_are_current(name):
    """schemas/<profile>.output.schema.json is what `extractor schema <profile>` generates."""
    plan = compile.compile_profile(load.load_profile(name))
    generated = output.output_schema(plan)
    committed = json.loads((SCHEMAS / f"{name}.output.schema.json").read_text())
    assert committed == json.loads(json.dumps(generated)), (
        f"run: extractor schema {name} -o schemas/{name}.output.schema.json")


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_profiles_validate_and_configure(name):
    plan = compile.compile_profile(load.load_profile(name))
    compile.check_instantiation(plan)
    assert plan.descriptors or plan.models


def test_music_decodes_once_and_shares_front_ends():
    plan = compile.compile_profile(load.load_profile("music"))
    loaders = [n for n in plan.nodes.values() if n.algorithm and "Loader" in n.algorithm]
    assert loaders == []  # the only decoder is the built-in audio source
    # lowlevel, rhythm and tonal all read the one gain-normalised signal of stage 1
    consumers = {n.id for n in plan.nodes.values() if any(
        r.node == "signal" for r in n.inputs.values())}
    assert {"ll_frames", "eqloud", "rhythm_extractor", "tonal_frames", "onsets"} <= consumers


def test_every_builtin_file_validates_on_its_own():
    """Every built-in file is valid on its own: loading checks each file it reads (extends.py),
    and this also covers the files no profile extends (_essentia_svm.yaml)."""
    from runner.profile.validate import validate_document

    for path in sorted(load.builtin_dir().glob("*.yaml")):
        data, lines = load.read_yaml(path)
        origins = {key: (str(path), line) for key, line in lines.items()}
        validate_document(load.Profile(name=path.stem, source=str(path), data=data,
                                       origins=origins))


@pytest.mark.parametrize("name, sections", [
    ("freesound-general", {"lowlevel", "rhythm", "tonal", "sfx"}),
    ("freesound-music", {"lowlevel", "rhythm", "tonal"}),
])
def test_freesound_commands(tmp_path, clicks_wav, name, sections):
    for spelling in (f"streaming-extractor-{name}", f"streaming_extractor_{name.replace('-', '_')}"):
        out = tmp_path / f"{spelling}.json"
        result = run(spelling, str(clicks_wav), str(out))
        assert result.returncode == 0, result.stderr
        doc = json.loads(out.read_text())
        assert set(doc) - {"metadata"} == sections
        assert abs(doc["rhythm"]["bpm"] - 120) < 3
        assert doc["rhythm"]["bpm_confidence"] >= 0
