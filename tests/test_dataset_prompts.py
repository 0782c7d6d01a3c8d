"""`extractor prompts` (issue 23 item 6): deterministic template prompts from .INFO features,
configurable in YAML, and the Stable Audio Tools dataset config with its custom-metadata
module, imported and called here as stable-audio-tools does."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.dataset import prompts
from runner.errors import ProfileError

HOUSE = {
    "bpm": 128.2, "bpm_is_defined": True, "key": "A", "scale": "minor", "lufs": -8.5,
    "onset_density": 4.2, "brightness": 50.0,
    "genre": {"Electronic---Techno": 0.3, "Electronic---House": 0.62, "Rock---Punk": 0.01},
    "instrument": {"synthesizer": 0.7, "drums": 0.5, "piano": 0.05},
    "mood": {"dark": 0.05}, "tagger_note": "kept",
}


def test_default_template() -> None:
    template = prompts.load_template()
    text = prompts.render(HOUSE, template)
    assert text == "energetic house, 128 BPM, A minor, synthesizer and drums, loud"
    # deterministic: the same INFO in another key order gives the same text
    shuffled = dict(reversed(list(HOUSE.items())))
    shuffled["instrument"] = dict(reversed(list(HOUSE["instrument"].items())))
    assert prompts.render(shuffled, template) == text


def test_missing_and_undefined_fields_leave_their_parts_out() -> None:
    template = prompts.load_template()
    quiet = {"bpm": 61.0, "bpm_is_defined": False, "key": None, "scale": None, "lufs": -30.0,
             "onset_density": 0.5, "brightness": 80.0}
    assert prompts.render(quiet, template) == "calm music, quiet, bright"
    assert prompts.render({}, template) == ""


def test_template_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        'separator: " | "\n'
        "parts:\n"
        '  - "{genre} at {bpm:.1f} bpm"\n'
        '  - "{tags.artist}"\n'
        '  - "{crop.start:.2f}-{crop.end:.2f} of the {track.title}"\n'
        "labels:\n"
        "  genre: {feature: genre, top: 2, min: 0.2, join: ' / '}\n")
    template = prompts.load_template(path)
    info = {**HOUSE, "tags": {"artist": ["A", "B"]}, "crop": {"start": 0.25, "end": 0.5}}
    assert prompts.render(info, template, {"title": "Song"}) == (
        "house / techno at 128.2 bpm | A, B | 0.25-0.50 of the Song")
    (tmp_path / "bad.yaml").write_text("parts: ['{x}']\nwords:\n  energy: {feature: lufs}\n")
    with pytest.raises(ProfileError) as caught:
        prompts.load_template(tmp_path / "bad.yaml")
    assert str(caught.value) == (f"{tmp_path / 'bad.yaml'}: words.energy: needs 'feature' "
                                 "and 'levels', a list of [bound, word] pairs")


def test_command_writes_prompts_and_a_stable_audio_tools_dataset(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "crops"
    (data / "song").mkdir(parents=True)
    track = tmp_path / "song.flac"
    (tmp_path / "song.INFO").write_text(json.dumps({"title": "Song"}))
    crop = {**HOUSE, "crop": {"track": str(track), "seconds_start": 12.7, "track_seconds": 200.2}}
    (data / "song" / "song_1.INFO").write_text(json.dumps(crop))
    (data / "song" / "song_1.flac").write_bytes(b"")
    (data / "song" / "crops.json").write_text("{}")
    (data / "song" / "song_2.INFO").write_text("{not json")
    (data / "song" / "song_3.flac").write_bytes(b"")  # no INFO: no prompt
    template = tmp_path / "t.yaml"
    template.write_text('parts: ["{genre}, {bpm:.0f} BPM", "{track.title}"]\n'
                        "labels: {genre: {feature: genre}}\n")
    assert main(["prompts", str(data), "--template", str(template), "--write", "both"]) == 1
    err = capsys.readouterr().err
    assert f"error: {data / 'song' / 'song_2.INFO'}: not JSON (" in err
    written = json.loads((data / "song" / "song_1.INFO").read_text())
    assert written["prompt"] == "house, 128 BPM, Song"
    assert written["tagger_note"] == "kept" and written["crop"] == crop["crop"]
    assert (data / "song" / "song_1.txt").read_text() == "house, 128 BPM, Song\n"

    config = json.loads((data / "stable_audio_dataset.json").read_text())
    module_path = data / "stable_audio_metadata.py"
    assert config == {"dataset_type": "audio_dir", "random_crop": False, "datasets": [
        {"id": "crops", "path": f"{data.resolve()}/",
         "custom_metadata_module": str(module_path.resolve())}]}
    # as stable-audio-tools loads it (data/dataset.py: spec_from_file_location)
    spec = importlib.util.spec_from_file_location("metadata_module", module_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    info = {"path": str(data / "song" / "song_1.flac"), "seconds_start": 0}
    assert module.get_custom_metadata(info, None) == {
        "prompt": "house, 128 BPM, Song", "seconds_start": 12, "seconds_total": 201}
    assert module.get_custom_metadata({"path": str(data / "song" / "song_3.flac")}, None) == {
        "__reject__": True}
