"""The beets plugin (beetsplug/extractor.py) in a real beets library, and the mapping of our
outputs to beets fields (runner/library/beets_fields.py) against beets-xtractor's names."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from runner.library.beets_fields import beets_bpm, beets_fields, beets_key, numeric_fields
from tests.conftest import click_track, write_audio
from tests.test_cli import command
from tests.test_dropin import svm_models  # noqa: F401 - a fixture (tiny models in the cache)

pytest.importorskip("beets")


# -- the mapping ---------------------------------------------------------------------------
@pytest.mark.parametrize("key, scale, expected", [
    ("A", "minor", "Am"), ("C", "major", "C"), ("F#", "major", "F#"), ("Bb", "minor", "A#m"),
    ("Eb", "major", "D#"), ("Ab", "minor", "G#m"), ("C#", "minor", "C#m"),
    ("H", "major", None), ("", "minor", None), ("A", "dorian", None), (None, "major", None),
])
def test_keys_are_written_as_beets_writes_them(key, scale, expected):
    assert beets_key(key, scale) == expected


def test_keys_survive_beets_own_key_type():
    """beets normalises initial_key with its MusicalKey type: ours come back unchanged."""
    from beets.dbcore.types import MusicalKey

    for key in ("C", "Am", "C#", "A#m", "G#m", "F#"):
        assert MusicalKey().normalize(key) == key


@pytest.mark.parametrize("value, expected", [
    (119.6, 120), (90.2, 90), (0.0, None), (-3.0, None), (math.nan, None), (None, None),
    (True, None), ("120", None),
])
def test_bpm_is_an_integer_as_beets_stores_it(value, expected):
    assert beets_bpm(value) == expected


def _set(doc: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def xtractor_targets() -> dict[str, dict]:
    """beets-xtractor 0.4.2's own targets (its config_default.yml): field name -> path, type."""
    import beetsplug.xtractor

    config = Path(beetsplug.xtractor.__file__).with_name("config_default.yml")
    defaults = yaml.safe_load(config.read_text())
    return {**defaults["low_level_targets"], **defaults["high_level_targets"]}


def test_every_beets_xtractor_field_keeps_its_name():
    """A document with a value at each path beets-xtractor reads gives each of its field
    names, with that value: the queries its users keep go on working."""
    targets = xtractor_targets()
    doc: dict = {}
    expected = {}
    for number, (name, target) in enumerate(sorted(targets.items()), start=1):
        value = {"integer": 100 + number, "float": number / 100, "string": f"class{number}"}[
            target["type"]]
        _set(doc, target["path"], value)
        expected[name] = value
    fields = beets_fields(doc)
    assert {name: fields.get(name) for name in expected} == expected
    assert set(targets) - {"bpm"} <= set(numeric_fields()) | {
        name for name, t in targets.items() if t["type"] == "string"}


def test_the_music_profiles_highlevel_sections_and_the_users_own():
    doc = {
        "metadata": {"warnings": []},
        "rhythm": {"bpm": 127.7, "danceability": 1.23456789, "beats_count": 40},
        "tonal": {"key_key": "Bb", "key_scale": "minor", "key_strength": 0.8,
                  "chords_key": "F", "chords_scale": "major"},
        "lowlevel": {"average_loudness": 0.91},
        "highlevel": {
            "mood_happy": {"value": "non_happy", "probability": 0.7,
                           "all": {"happy": 0.3, "non_happy": 0.7}},
            "moods_mirex": {"value": "b", "probability": 0.4,
                            "all": {"a": 0.1, "b": 0.4, "c": 0.2, "d": 0.2, "e": 0.1}},
            "genre_discogs400": {"value": "Electronic---Techno", "probability": 0.6,
                                 "all": {"Electronic---Techno": 0.6, "Rock---Punk": 0.1}},
            "voice_instrumental": {"value": "instrumental", "probability": 0.9,
                                   "all": {"instrumental": 0.9, "voice": 0.1}},
        },
        "mymodels": {"crowd": {"value": "yes", "probability": 0.8,
                               "all": {"yes": 0.8, "no": 0.2}}},
    }
    assert beets_fields(doc) == {
        "bpm": 128, "initial_key": "A#m", "danceability": 1.234568, "beats_count": 40,
        "average_loudness": 0.91, "key_strength": 0.8, "chords_key": "F",
        "chords_scale": "major", "mood_happy": 0.3, "mood_mirex": "b",
        **{f"mood_mirex_cluster_{n}": p for n, p in enumerate((0.1, 0.4, 0.2, 0.2, 0.1), 1)},
        "voice_instrumental": "instrumental", "is_voice": 0.1, "is_instrumental": 0.9,
        "genre_discogs400": "Electronic---Techno", "mymodels_crowd": "yes",
    }


def test_a_model_named_like_a_beets_field_never_replaces_the_users_tag():
    from beets.library import Item

    doc = {"highlevel": {"genre": {"value": "Rock", "probability": 0.9,
                                   "all": {"Rock": 0.9, "Pop": 0.1}}},
           "mine": {"mood": {"value": "calm", "probability": 0.9, "all": {"calm": 0.9}}}}
    assert beets_fields(doc, frozenset(Item._fields)) == {"highlevel_genre": "Rock",
                                                          "mine_mood": "calm"}
    assert "genre" in Item._fields


def test_silence_keeps_the_items_tempo_and_key():
    doc = {"metadata": {"warnings": ["silent: the audio is digital silence"]},
           "rhythm": {"bpm": 120.0}, "tonal": {"key_key": "A", "key_scale": "minor"},
           "lowlevel": {"average_loudness": 0.0}}
    assert beets_fields(doc) == {"average_loudness": 0.0}


def test_an_output_is_reused_only_for_the_same_hash_file_name_and_audio(tmp_path):
    import json

    from runner.batch import Job
    from runner.library.beets_batch import current

    audio, output = tmp_path / "song.flac", tmp_path / "7.json"
    audio.write_bytes(b"audio")
    output.write_text(json.dumps({"metadata": {"profile": {"hash": "h1"},
                                               "tags": {"file_name": "song.flac"}}}))
    os.utime(audio, (1_000_000, 1_000_000))
    job = Job(0, audio, output)
    assert current(job, "h1") and not current(job, "h2")
    other = tmp_path / "other.flac"  # beets gave item 7's id to another file
    other.write_bytes(b"audio")
    os.utime(other, (1_000_000, 1_000_000))
    assert not current(Job(0, other, output), "h1")
    audio.touch()  # the audio changed after the analysis
    os.utime(output, (1_000_000, 1_000_000))
    assert not current(job, "h1")


# -- real beets ----------------------------------------------------------------------------
class Beets:
    """A beets library of its own (config and database in a temporary folder)."""

    def __init__(self, root: Path, **plugin: object) -> None:
        self.root = root
        self.dir = root / "beets"
        self.dir.mkdir(parents=True)
        config = {"directory": str(root / "library"), "library": str(self.dir / "library.db"),
                  "plugins": "extractor",
                  "import": {"copy": False, "write": False, "autotag": False},
                  "extractor": {"jobs": 2, **plugin}}
        (self.dir / "config.yaml").write_text(yaml.safe_dump(config))
        self.env = dict(os.environ, BEETSDIR=str(self.dir))

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        # the `beet` script pip installed (beets' own entry point, which loads our plugin
        # from the beetsplug namespace as a user's shell would)
        done = subprocess.run([command("beet"), *args], capture_output=True,
                              text=True, env=self.env, timeout=300, cwd=self.root)
        assert done.returncode == 0, done.stderr
        return done

    def rows(self, fmt: str, *query: str) -> dict[str, list[str]]:
        """file stem -> the format's fields (separated by |)."""
        listed = self("ls", "-f", "$path|" + fmt, *query).stdout.splitlines()
        return {Path(line.split("|")[0]).stem: line.split("|")[1:] for line in listed}


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("beets-music")
    for name, bpm in (("fast", 140.0), ("slow", 90.0)):
        write_audio(folder / f"{name}.flac", click_track(8.0, bpm=bpm))
    write_audio(folder / "damaged.wav", click_track(3.0))
    return folder


@pytest.fixture(scope="module")
def analysed(music, tmp_path_factory) -> tuple[Beets, subprocess.CompletedProcess]:
    """Imported with `beet import -A`, one file damaged after the import, then
    `beet extract`."""
    beet = Beets(tmp_path_factory.mktemp("library"))
    beet("import", "-A", "-q", str(music))
    assert sorted(beet.rows("$bpm")) == ["damaged", "fast", "slow"]
    damaged = music / "damaged.wav"
    damaged.write_bytes(b"not audio at all")
    return beet, beet("extract")


def test_extract_sets_bpm_and_initial_key(analysed):
    beet, extracted = analysed
    rows = beet.rows("$bpm|$initial_key")
    assert abs(int(rows["fast"][0]) - 140) <= 1 and abs(int(rows["slow"][0]) - 90) <= 1, rows
    assert rows["fast"][1] == rows["slow"][1] == "A"  # click_track's chord: A major
    assert rows["damaged"] == ["0", ""]
    assert "extract: 2 analysed, 0 up to date, 1 failed; 2 items updated" in extracted.stdout


def test_a_file_that_fails_is_reported_and_the_rest_go_on(analysed, music):
    beet, extracted = analysed
    line = f"extractor: {music / 'damaged.wav'}: unsupported or corrupt audio"
    assert line in extracted.stderr, extracted.stderr
    failures = (beet.dir / "extractor" / "failures.jsonl").read_text()
    assert str(music / "damaged.wav") in failures


def test_flexible_attributes_answer_queries(analysed):
    beet, _ = analysed
    rows = beet.rows("$danceability|$average_loudness|$beats_count|$key_strength")
    for name in ("fast", "slow"):
        dance, loudness, beats, strength = rows[name]
        assert float(dance) > 0.5 and 0 < float(loudness) <= 1 and 0 < float(strength) <= 1
        assert int(beats) > 8
    assert sorted(beet.rows("$bpm", "danceability:0.5..")) == ["fast", "slow"]
    assert sorted(beet.rows("$bpm", "bpm:100..")) == ["fast"]
    assert sorted(beet.rows("$bpm", "initial_key:A")) == ["fast", "slow"]


def test_a_rerun_skips_what_is_up_to_date(analysed):
    beet, _ = analysed
    again = beet("extract", "-q")
    assert again.stdout.strip() == "extract: 0 analysed, 2 up to date, 1 failed; 0 items updated"
    forced = beet("extract", "-q", "--force", "path::slow")
    assert forced.stdout.strip() == "extract: 1 analysed, 0 up to date, 0 failed; 0 items updated"


def test_write_puts_the_tags_into_the_files_and_they_stay_up_to_date(analysed, music):
    import mutagen

    beet, _ = analysed
    fast = music / "fast.flac"
    assert "BPM" not in (mutagen.File(fast).tags or {})
    beet("modify", "-y", "path::fast", "initial_key=C")  # stored, not written (write: no)
    written = beet("extract", "-q", "--write", "path::fast")
    assert written.stdout.strip() == "extract: 0 analysed, 1 up to date, 0 failed; 1 items updated"
    tags = mutagen.File(fast).tags
    assert tags["INITIALKEY"] == ["A"] and abs(int(tags["BPM"][0]) - 140) <= 1
    again = beet("extract", "-q", "path::fast")  # the tags changed the file, not the audio
    assert again.stdout.strip() == "extract: 0 analysed, 1 up to date, 0 failed; 0 items updated"


def test_auto_analyses_on_import_and_is_off_by_default(music, tmp_path):
    plain = Beets(tmp_path / "plain")
    plain("import", "-A", "-q", str(music / "slow.flac"))
    assert plain.rows("$bpm") == {"slow": ["0"]}
    auto = Beets(tmp_path / "auto", auto=True)
    imported = auto("import", "-A", "-q", str(music / "slow.flac"))
    assert "extract: 1 analysed" in imported.stdout
    assert abs(int(auto.rows("$bpm")["slow"][0]) - 90) <= 1


def test_beets_own_plugins_and_beets_xtractor_load_beside_ours(tmp_path):
    """beetsplug is a namespace package shared with beets and its plugins: ours adds a
    module to it and hides nothing; the field types it declares agree with those of the
    plugins that store the same names (beets refuses two plugins that disagree)."""
    beet = Beets(tmp_path)
    config = yaml.safe_load((beet.dir / "config.yaml").read_text())
    config["plugins"] = "extractor xtractor acousticbrainz keyfinder info"
    (beet.dir / "config.yaml").write_text(yaml.safe_dump(config))
    version = beet("version")
    assert "plugins: acousticbrainz, extractor, info, keyfinder, xtractor" in version.stdout, version.stdout
    helps = beet("help").stdout
    assert all(name in helps for name in ("extract ", "xtractor", "keyfinder", "info"))


@pytest.mark.usefixtures("svm_models")
def test_highlevel_fields_from_the_models_in_the_cache(music, tmp_path):
    """Tiny graphs under MTG's ids (test_dropin's svm_models): the music profile runs the
    models in the cache and the plugin stores their taxonomies under beets-xtractor's names."""
    beet = Beets(tmp_path)
    beet("import", "-A", "-q", str(music / "fast.flac"))
    extracted = beet("extract")
    assert "extract: 1 analysed" in extracted.stdout, extracted.stderr
    fields = "$danceable|$mood_mirex|$mood_mirex_cluster_1|$msd_musicnn"
    danceable, mirex, cluster, tag = beet.rows(fields)["fast"]
    assert 0 < float(danceable) < 1 and 0 < float(cluster) < 1
    assert mirex.startswith(("passionate", "rollicking", "literate", "humorous", "aggressive"))
    assert sorted(beet.rows("$bpm", "danceable:0..1")) == ["fast"]


def test_ctrl_c_keeps_what_was_analysed_and_a_rerun_does_the_rest(tmp_path):
    """Ctrl-C (SIGINT to the foreground process group, as a terminal sends it) during
    `beet extract`: one line, no traceback, no half-written output; the items analysed so far
    have their fields; the next run analyses only the others."""
    import signal
    import time

    music = tmp_path / "music"
    music.mkdir()
    for index in range(6):
        write_audio(music / f"t{index}.flac", click_track(2.0, bpm=100.0 + 5 * index))
    beet = Beets(tmp_path / "lib", jobs=1)
    beet("import", "-A", "-q", str(music))
    outputs = beet.dir / "extractor"
    running = subprocess.Popen([command("beet"), "extract", "-q"], env=beet.env,
                               cwd=beet.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(outputs.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(running.pid, signal.SIGINT)
    out, err = running.communicate(timeout=120)
    assert running.returncode == 1 and "Traceback" not in err, err
    stored = [name for name, (bpm,) in beet.rows("$bpm").items() if bpm != "0"]
    assert err.strip().splitlines()[-1] == (
        f"error: extract: interrupted; {len(stored)} items updated from the {len(stored)} "
        f"analysed so far (run it again for the other {6 - len(stored)})")
    assert 1 <= len(stored) < 6
    assert not [p for p in outputs.iterdir() if p.name.endswith(".tmp")]
    again = beet("extract", "-q")
    assert again.stdout.strip() == (f"extract: {6 - len(stored)} analysed, {len(stored)} up "
                                    f"to date, 0 failed; {6 - len(stored)} items updated")
    assert all(bpm != "0" for (bpm,) in beet.rows("$bpm").values())
