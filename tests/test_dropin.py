"""Essentia's extractor binary, dropped in: Essentia's documented profile files have their
documented effect, and the tools that call the binary (beets-xtractor, abzer, the
AcousticBrainz client's profile) run unchanged against our commands.

The profile files under tests/data/essentia_profiles/ are copied from Essentia's
documentation and from the clients' sources; each names its origin in its first lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import click_track, write_audio
from tests.test_cli import command

PROFILES = Path(__file__).parent / "data" / "essentia_profiles"
ESSENTIA = "streaming_extractor_music"  # Essentia's spelling: Essentia's exit codes and files
MBID = "4b1c2b54-2c5c-4b43-9c9f-6bb4c1a1c0d1"
# What the AcousticBrainz server required of a submission (acousticbrainz-server db/data.py,
# SANITY_CHECK_KEYS; musicbrainz_trackid is renamed musicbrainz_recordingid on arrival).
AB_REQUIRED = [
    "metadata.version.essentia", "metadata.version.essentia_git_sha",
    "metadata.version.extractor", "metadata.version.essentia_build_sha",
    "metadata.audio_properties.length", "metadata.audio_properties.bit_rate",
    "metadata.audio_properties.codec", "metadata.audio_properties.lossless",
    "metadata.tags.file_name", "metadata.tags.musicbrainz_trackid", "lowlevel", "rhythm", "tonal",
]


def essentia(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([command(ESSENTIA), *args], capture_output=True, text=True,
                          timeout=600, env=env)


def value(doc: dict, dotted: str):
    for part in dotted.split("."):
        doc = doc[part]
    return doc


def tag_mbid(path: Path, mbid: str = MBID) -> Path:
    import mutagen.flac

    tagged = mutagen.flac.FLAC(str(path))
    tagged["MUSICBRAINZ_TRACKID"] = mbid
    tagged.save()
    return path


@pytest.fixture(scope="module")
def track(tmp_path_factory) -> Path:
    return write_audio(tmp_path_factory.mktemp("dropin") / "clicks.flac", click_track(8.0))


@pytest.fixture(scope="module")
def long_track(tmp_path_factory) -> Path:
    """40 s: Essentia's documented segments (0-30 s, 30-60 s) both cut it."""
    return write_audio(tmp_path_factory.mktemp("dropin") / "long.wav", click_track(40.0))


# -- Essentia's documented profiles ------------------------------------------------------------
def test_documented_full_example(long_track, tmp_path):
    out = tmp_path / "out.json"
    result = essentia(str(long_track), str(out), str(PROFILES / "doc_full_example.yaml"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    props = doc["metadata"]["audio_properties"]
    assert props["analysis"]["start_time"] == 0 and props["analysis"]["end_time"] == 30
    assert abs(props["analysis"]["length"] - 30.0) < 0.01
    assert out.read_text().startswith('{\n    "')  # indent: 4
    stats = set(doc["lowlevel"]["spectral_centroid"])
    assert stats == {"mean", "var", "median", "min", "max", "dmean", "dmean2", "dvar", "dvar2"}
    assert set(doc["rhythm"]["beats_loudness"]) == stats
    assert set(doc["tonal"]["hpcp_entropy"]) == stats
    assert not (tmp_path / "out.json_frames").exists()  # outputFrames: 0


def test_documented_frames_and_statistics(track, tmp_path):
    out = tmp_path / "out.json"
    result = essentia(str(track), str(out), str(PROFILES / "doc_frames_and_statistics.yaml"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert set(doc["lowlevel"]["spectral_flux"]) == {"mean", "var", "median"}
    assert set(doc["rhythm"]["beats_loudness"]) == {"mean", "var", "median", "min", "max"}
    assert set(doc["tonal"]["hpcp_crest"]) == {"mean", "var", "median", "min", "max"}
    # documented by Essentia, read by none of its extractors: said, not silently dropped
    notes = [line for line in result.stderr.splitlines() if "average_loudness." in line]
    assert len(notes) == 2 and all(line.startswith("note: ") and "has no effect" in line
                                   for line in notes), result.stderr


def test_documented_output_snippet_writes_the_frames_beside(track, tmp_path):
    out = tmp_path / "out.json"
    result = essentia(str(track), str(out), str(PROFILES / "doc_output_format.yaml"))
    assert result.returncode == 0, result.stderr
    frames = json.loads((tmp_path / "out.json_frames").read_text())  # OUT + "_frames"
    assert len(frames["lowlevel"]["spectral_centroid"]) > 100
    assert "mean" in json.loads(out.read_text())["lowlevel"]["spectral_centroid"]


def test_documented_segment(long_track, tmp_path):
    out = tmp_path / "out.json"
    result = essentia(str(long_track), str(out), str(PROFILES / "doc_segment.yaml"))
    assert result.returncode == 0, result.stderr
    analysis = json.loads(out.read_text())["metadata"]["audio_properties"]["analysis"]
    assert analysis["start_time"] == 30 and analysis["sample_rate"] == 44100
    assert abs(analysis["length"] - 10.0) < 0.01  # 30 s to the end of the 40 s file


def test_documented_chromaprint(track, tmp_path):
    out = tmp_path / "out.json"
    result = essentia(str(track), str(out), str(PROFILES / "doc_chromaprint.yaml"))
    assert result.returncode == 0, result.stderr
    fingerprint = json.loads(out.read_text())["chromaprint"]["string"]
    assert isinstance(fingerprint, str) and len(fingerprint) > 10


def test_a_segment_past_the_end_is_one_line(track, tmp_path):
    out = tmp_path / "out.json"
    result = essentia(str(track), str(out), str(PROFILES / "doc_segment.yaml"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {track}: no audio in the analysed range: from 30 s to 60 s, and the file is "
        "8.0 s long (startTime, endTime)")
    assert not out.exists()


@pytest.mark.parametrize("text, line, key, hint", [
    ("lowlevel:\n  frameSize: 2048\n  hopsize: 1024\n", 3, "lowlevel.hopsize",
     "did you mean 'lowlevel.hopSize'?"),
    ("outputFormat: json\nindnt: 2\n", 2, "indnt", "did you mean 'indent'?"),
    ("tonal:\n  keyProfile: edma\n", 2, "tonal.keyProfile", "Essentia's tonal keys: "
     "tonal.frameSize, tonal.hopSize, tonal.silentFrames, tonal.stats, tonal.windowType, "
     "tonal.zeroPadding"),
])
def test_an_unknown_key_is_named_in_essentia_terms(track, tmp_path, text, line, key, hint):
    profile = tmp_path / "profile.yml"
    profile.write_text(text)
    expected = (f"error: {profile}:{line}: {key}: unknown key of Essentia's extractor profile "
                f"format ({hint})")
    for name, code in ((ESSENTIA, 1), ("streaming-extractor-music", 2)):
        result = subprocess.run([command(name), str(track), str(tmp_path / "o.json"),
                                 str(profile)], capture_output=True, text=True)
        assert (result.returncode, result.stderr.strip()) == (code, expected), name


def test_keys_of_other_sections_are_noted_for_a_profile_without_them(track, tmp_path):
    """One Essentia profile for every command: the rhythm command says what it leaves alone."""
    out = tmp_path / "out.json"
    result = subprocess.run(
        [command("streaming_extractor_rhythm"), str(track), str(out),
         str(PROFILES / "doc_full_example.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    noted = {line.split(": ")[2].split()[0] for line in result.stderr.splitlines()
             if line.startswith("note: ")}
    assert {"lowlevel.frameSize", "tonal.frameSize", "average_loudness.frameSize"} <= noted
    assert "rhythm.method" not in noted


# -- AcousticBrainz clients --------------------------------------------------------------------
def test_acousticbrainz_profile_refuses_a_file_without_mbid_with_exit_2(track, tmp_path):
    out = tmp_path / "out.json"
    result = essentia(str(track), str(out), str(PROFILES / "acousticbrainz_client.yaml"))
    assert result.returncode == 2  # what the AcousticBrainz clients read as "no MBID"
    assert "no MusicBrainz recording id" in result.stderr
    assert not out.exists()
    ours = subprocess.run([command("streaming-extractor-music"), str(track), str(out),
                           str(PROFILES / "acousticbrainz_client.yaml")], capture_output=True,
                          text=True)
    assert ours.returncode == 1  # our spelling: an input that could not be analysed


def test_acousticbrainz_submission_passes_the_servers_check(track, tmp_path):
    tagged = tag_mbid(Path(shutil.copy(track, tmp_path / "tagged.flac")))
    out = tmp_path / "out.json"
    result = essentia(str(tagged), str(out), str(PROFILES / "acousticbrainz_client.yaml"))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "\n" not in text.strip()  # indent: 0
    doc = json.loads(text)
    for key in AB_REQUIRED:
        value(doc, key)  # present
    assert doc["metadata"]["version"]["essentia_build_sha"] == (
        "0123456789abcdef0123456789abcdef01234567")  # mergeValues
    assert doc["metadata"]["tags"]["musicbrainz_trackid"] == [MBID]


def test_merge_values_never_replace_what_the_analysis_computes(track, tmp_path):
    profile = tmp_path / "profile.yaml"
    profile.write_text("mergeValues:\n  metadata:\n    x: 'y'\n  rhythm:\n    bpm: '120'\n")
    result = essentia(str(track), str(tmp_path / "o.json"), str(profile))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: {profile}:5: mergeValues.rhythm.bpm: 'rhythm.bpm' would replace 'rhythm.bpm', which the "
        "analysis computes (merge only values of your own)")


def test_abzer_reads_the_result_through_its_open_handle(track, tmp_path):
    """abzer (PyPI) passes a NamedTemporaryFile's name as OUT and reads the result through the
    handle it holds open: the finished document must land in that same file."""
    from abzer.abzer import FileHandler
    from abzer.const import PROFILE_TEMPLATE

    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE_TEMPLATE.format(sha="ab" * 20))
    tagged = tag_mbid(Path(shutil.copy(track, tmp_path / "tagged.flac")))
    handler = FileHandler(str(tagged))
    inode = os.stat(handler.tempfile.name).st_ino
    assert asyncio.run(handler.process(command(ESSENTIA), str(profile))) == 0
    assert os.stat(handler.tempfile.name).st_ino == inode
    data = json.loads(handler.tempfile.read().decode("utf-8"))
    assert data["metadata"]["tags"]["musicbrainz_trackid"][0] == MBID  # what abzer submits by
    assert data["metadata"]["version"]["essentia_build_sha"] == "ab" * 20
    # and abzer's own verdict on a file without an MBID: the extractor's exit code 2
    untagged = FileHandler(str(track))
    assert asyncio.run(untagged.process(command(ESSENTIA), str(profile))) == 2


def test_an_existing_output_is_rewritten_in_place(track, tmp_path):
    out = tmp_path / "out.json"
    out.write_text("")
    inode = out.stat().st_ino
    with open(out, "rb") as reader:
        result = essentia(str(track), str(out))
        assert result.returncode == 0, result.stderr
        assert json.loads(reader.read())["rhythm"]["bpm"] > 0
    assert out.stat().st_ino == inode


# -- highlevel.svm_models: Essentia's classifiers as our models -------------------------------
SVM_HEADS = {  # model id -> (tiny graph it runs, the classes its metadata names)
    "danceability-msd-musicnn-1": ("tiny-party-musicnn", ["danceable", "not_danceable"]),
    "mood_happy-msd-musicnn-1": ("tiny-party-musicnn", ["happy", "non_happy"]),
    "mood_sad-msd-musicnn-1": ("tiny-party-musicnn", ["non_sad", "sad"]),
    "voice_instrumental-msd-musicnn-1": ("tiny-party-musicnn", ["instrumental", "voice"]),
    "moods_mirex-msd-musicnn-1": ("tiny-moods-musicnn", [
        "passionate, rousing, confident, boisterous, rowdy",
        "rollicking, cheerful, fun, sweet, amiable/good natured",
        "literate, poignant, wistful, bittersweet, autumnal, brooding",
        "humorous, silly, campy, quirky, whimsical, witty, wry",
        "aggressive, fiery, tense/anxious, intense, volatile, visceral"]),
}


@pytest.fixture
def svm_models(graphs, tmp_path, monkeypatch) -> None:
    """MTG's model ids, standing for tiny graphs with their metadata's class names (a lock
    file of the test's own, fetched into an empty cache): the mapping, not the models, is
    what these tests check."""
    import hashlib

    folder = tmp_path / "svm-models"
    folder.mkdir()
    models = {}

    def pin(path: Path) -> dict:
        data = path.read_bytes()
        return {"name": path.name, "url": path.as_uri(),
                "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    embedding = json.loads((graphs / "tiny-musicnn.json").read_text())
    shutil.copy(graphs / "tiny-musicnn.pb", folder / "msd-musicnn-1.pb")
    (folder / "msd-musicnn-1.json").write_text(json.dumps(embedding))
    models["msd-musicnn-1"] = {
        "description": "test", "license": "test", "algorithm": "TensorflowPredictMusiCNN",
        "groups": ["svm-test"], "graph": "msd-musicnn-1.pb", "metadata": "msd-musicnn-1.json",
        "files": [pin(folder / "msd-musicnn-1.pb"), pin(folder / "msd-musicnn-1.json")]}
    for model_id, (graph, classes) in SVM_HEADS.items():
        meta = json.loads((graphs / f"{graph}.json").read_text())
        meta["classes"] = classes
        meta["inference"]["embedding_model"]["model_name"] = "msd-musicnn-1"
        shutil.copy(graphs / f"{graph}.pb", folder / f"{model_id}.pb")
        (folder / f"{model_id}.json").write_text(json.dumps(meta))
        models[model_id] = {
            "description": "test", "license": "test", "algorithm": "TensorflowPredict2D",
            "groups": ["svm-test"], "graph": f"{model_id}.pb", "metadata": f"{model_id}.json",
            "embedding": "msd-musicnn-1",
            "files": [pin(folder / f"{model_id}.pb"), pin(folder / f"{model_id}.json")]}
    lock_file = tmp_path / "svm.lock.json"
    lock_file.write_text(json.dumps({"format": 1, "models": models}))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(lock_file))
    fetched = subprocess.run([command("extractor"), "models", "fetch", "svm-test", "--quiet"],
                             capture_output=True, text=True)
    assert fetched.returncode == 0, fetched.stderr


def test_documented_highlevel_snippet(svm_models, track, tmp_path):
    out = tmp_path / "out.json"
    result = essentia(str(track), str(out), str(PROFILES / "doc_highlevel.yaml"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert sorted(doc["highlevel"]) == ["mood_sad"]
    sad = doc["highlevel"]["mood_sad"]
    assert set(sad["all"]) == {"sad", "not_sad"}  # Essentia's labels (the model says non_sad)
    assert sad["probability"] == max(sad["all"].values())
    warning = ("highlevel: genre_tzanetakis left out: Essentia's SVM classifiers, with no "
               "model here (docs/drop-in.md)")
    assert doc["metadata"]["warnings"] == [warning]
    assert f"warning: {track}: {warning}" in result.stderr


def test_beets_xtractor_in_a_real_beets_library(svm_models, tmp_path):
    """beets-xtractor 0.4.2 (PyPI), configured as its README says, with our command as the
    extractor: every imported item gets bpm, danceability and average loudness, and the
    highlevel fields our models provide under the names its queries use."""
    music = tmp_path / "music"
    (music / "album").mkdir(parents=True)
    for name, bpm in (("fast", 140.0), ("slow", 90.0)):
        write_audio(music / "album" / f"{name}.flac", click_track(8.0, bpm=bpm))
    (music / "album" / "broken.flac").write_bytes(b"fLaC" + bytes(200))  # fails, others go on
    beetsdir = tmp_path / "beets"
    beetsdir.mkdir()
    config = {
        "directory": str(tmp_path / "library"), "library": str(tmp_path / "library.db"),
        "plugins": "xtractor", "import": {"copy": False, "write": False, "autotag": False},
        "xtractor": {
            "essentia_extractor": command(ESSENTIA), "output_path": str(tmp_path / "xout"),
            "keep_output": True, "write": False,
            "extractor_profile": {
                "outputFormat": "json", "outputFrames": 0,
                "lowlevel": {"frameSize": 2048, "hopSize": 1024},
                "highlevel": {"compute": 1, "svm_models": [
                    f"/svm/{name}.history" for name in (
                        "danceability", "gender", "genre_rosamerica", "mood_happy", "mood_sad",
                        "moods_mirex", "voice_instrumental")]},
                "chromaprint": {"compute": 0}}}}
    (beetsdir / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "xout").mkdir()
    env = dict(os.environ, BEETSDIR=str(beetsdir))

    def run_beet(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "beets", *args], capture_output=True,
                              text=True, env=env, timeout=600,
                              cwd=music)  # cwd: a folder beside the library

    imported = run_beet("import", "-A", "-q", str(music))
    assert imported.returncode == 0, imported.stderr
    extracted = run_beet("-v", "xtractor")
    assert extracted.returncode == 0, extracted.stderr
    listed = run_beet("ls", "-f", "$path|$bpm|$danceability|$average_loudness|$danceable|"
                      "$mood_happy|$mood_mirex|$voice_instrumental|$gender", "path::flac$")
    rows = {Path(line.split("|")[0]).stem: line.split("|")[1:]
            for line in listed.stdout.splitlines()}
    for title, expected_bpm in (("fast", 140), ("slow", 90)):
        bpm, dance, loudness, danceable, happy, mirex, voice, gender = rows[title]
        assert abs(int(bpm) - expected_bpm) <= 2, rows
        assert float(dance) > 0 and 0 < float(loudness) <= 1
        assert 0 < float(danceable) < 1 and 0 < float(happy) < 1
        assert mirex in {f"Cluster{i}" for i in range(1, 6)}
        assert voice in ("voice", "instrumental")
        assert gender == "$gender"  # no model for Essentia's gender classifier: left unset
    # beets refuses the broken file at import, or it fails alone in the extraction
    assert "broken" not in rows or rows["broken"][0] in ("0", ""), rows
    query = run_beet("ls", "-f", "$path", "mood_mirex::^Cluster[1-5]$")
    assert sorted(Path(p).stem for p in query.stdout.split()) == ["fast", "slow"]


def test_every_essentia_svm_name_maps_to_a_pinned_model_with_its_labels():
    """The mapping table (profiles/_essentia_svm.yaml) names models of the lock file, and its
    labels turn the models' classes (inline metadata where the lock has it) into Essentia's."""
    from runner.models.supply import lock
    from runner.profile.essentia_format import svm_table

    essentia_classes = {
        "danceability": ["danceable", "not_danceable"],
        "mood_acoustic": ["acoustic", "not_acoustic"],
        "mood_aggressive": ["aggressive", "not_aggressive"],
        "mood_electronic": ["electronic", "not_electronic"],
        "mood_happy": ["happy", "not_happy"], "mood_party": ["not_party", "party"],
        "mood_relaxed": ["not_relaxed", "relaxed"], "mood_sad": ["not_sad", "sad"],
        "moods_mirex": [f"Cluster{i}" for i in range(1, 6)],
        "tonal_atonal": ["atonal", "tonal"], "voice_instrumental": ["instrumental", "voice"],
    }
    table = svm_table()
    assert set(table) == set(essentia_classes)
    for name, entry in table.items():
        entry = {"model": entry} if isinstance(entry, str) else entry
        model = lock.get(entry["model"])
        classes = (model.inline_metadata or {}).get("classes")
        if classes is None:
            continue  # metadata fetched with the model: checked when the stage is built
        labels = entry.get("labels")
        renamed = (list(labels) if isinstance(labels, list) else
                   [(labels or {}).get(c, c) for c in classes])
        assert sorted(renamed) == sorted(essentia_classes[name]), name


def test_drop_in_page_table_matches_the_mapping():
    from runner.profile.essentia_format import svm_table

    section = (Path(__file__).parents[1] / "docs" / "drop-in.md").read_text()
    for name, entry in svm_table().items():
        model = entry if isinstance(entry, str) else entry["model"]
        assert f"| `{name}` | `{model}` |" in section, name
    assert np.all([g in section for g in ("gender", "genre_rosamerica", "timbre")])
