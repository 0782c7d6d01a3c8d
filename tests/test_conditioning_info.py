"""TRACK.INFO merging (kept keys, --overwrite, the lock between processes) and the stem rules
(how stems are found beside a track, and the one-line refusals of stems that do not fit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runner.dataset.info import lock_path, merge_info, read_info
from runner.dataset.stems import STEMS, check_stems, find_stems, stem_targets
from runner.errors import AudioError, OutputError

SR = 44100
ROOT = Path(__file__).resolve().parent.parent


def test_merge_keeps_other_keys_and_existing_values_unless_overwrite(tmp_path):
    info = tmp_path / "song.INFO"
    info.write_text(json.dumps({"caption": "by hand", "bpm": 999, "lufs": -9.0}))
    merge = merge_info(info, {"bpm": 120.5, "lufs": -9.0, "onset_density": 2.0,
                              "flux": float("nan")})
    assert (merge.added, merge.replaced, merge.kept) == (["onset_density", "flux"], [], ["bpm"])
    data = json.loads(info.read_text())
    assert data == {"caption": "by hand", "bpm": 999, "lufs": -9.0, "onset_density": 2.0,
                    "flux": None}
    merge = merge_info(info, {"bpm": 120.5}, overwrite=True)
    assert merge.replaced == ["bpm"] and read_info(info)["bpm"] == 120.5
    assert read_info(info)["caption"] == "by hand"
    assert not lock_path(info).exists()  # the holder removes it
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "the existing INFO is not a JSON object; left as it is: fix or remove it"),
    ("{bpm: 1", "the existing INFO is not JSON (Expecting property name enclosed in double "
                "quotes: line 1 column 2 (char 1)); left as it is: fix or remove it"),
])
def test_an_info_that_is_not_a_json_object_is_refused_and_left_alone(tmp_path, content,
                                                                        message):
    info = tmp_path / "song.INFO"
    info.write_text(content)
    with pytest.raises(OutputError) as caught:
        merge_info(info, {"bpm": 120.0})
    assert str(caught.value) == f"{info}: {message}"
    assert info.read_text() == content


HAMMER = """
import sys
from pathlib import Path
from runner.dataset.info import merge_info
path, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(count):
    merge_info(path, {f"{name}_{i}": i, "last": name})
"""


def test_two_processes_updating_one_info_lose_nothing(tmp_path):
    """Two real processes merge 300 keys each into one INFO at once, while this process reads
    it: every key of both is there at the end, and every read saw a whole JSON object."""
    info = tmp_path / "song.INFO"
    info.write_text(json.dumps({"caption": "kept"}))
    count = 300
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, str(info), name, str(count)],
                              env=env, stderr=subprocess.PIPE, text=True) for name in "ab"]
    reads = 0
    while any(p.poll() is None for p in procs):
        data = json.loads(info.read_text())  # never half a file: writes are renames
        assert data["caption"] == "kept"
        reads += 1
        time.sleep(0.002)
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    data = json.loads(info.read_text())
    missing = [f"{n}_{i}" for n in "ab" for i in range(count) if f"{n}_{i}" not in data]
    assert not missing, f"lost updates: {len(missing)} keys, e.g. {missing[:5]}"
    assert len(data) == 2 * count + 2 and reads > 0
    assert not lock_path(info).exists()


# -- stems ----------------------------------------------------------------------------------
def _wav(path: Path, seconds: float = 1.0, channels: int = 2, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros((int(seconds * sr), channels), np.float32), sr)
    return path


def test_stems_are_found_in_each_layout_in_order(tmp_path):
    alone = _wav(tmp_path / "Alone" / "Alone.wav")
    for stem in STEMS:
        _wav(tmp_path / "Alone" / f"{stem}.flac" if stem == "bass" else
             tmp_path / "Alone" / f"{stem}.wav")
    assert find_stems(alone) == {s: alone.parent / (f"{s}.flac" if s == "bass" else f"{s}.wav")
                                 for s in STEMS}
    album = tmp_path / "Album"
    one, two = _wav(album / "one.wav"), _wav(album / "two.wav")
    for stem in STEMS:
        _wav(album / f"one.{stem}.wav")
        _wav(tmp_path / "mirror" / "Album" / "two" / f"{stem}.wav")
    assert find_stems(one) == {s: album / f"one.{s}.wav" for s in STEMS}
    assert find_stems(two) == {}  # bare <stem>.* only for a track alone in its folder
    mirrored = find_stems(two, Path("Album"), tmp_path / "mirror")
    assert mirrored == {s: tmp_path / "mirror" / "Album" / "two" / f"{s}.wav" for s in STEMS}
    assert stem_targets(two, None, None)["drums"] == album / "two.drums.wav"
    assert stem_targets(alone, None, None)["vocals"] == alone.parent / "vocals.wav"


def test_missing_stems_are_one_line(tmp_path):
    track = _wav(tmp_path / "A" / "song.wav")
    _wav(tmp_path / "A" / "song.drums.wav")
    _wav(tmp_path / "A" / "song.vocals.wav")
    with pytest.raises(AudioError) as caught:
        find_stems(track)
    assert str(caught.value) == (f"{track}: stems incomplete in {track.parent}/song.<stem>.*: "
                                 "bass, other missing (drums, vocals found); all four or none")
    other = _wav(tmp_path / "B" / "other_song.wav")
    with pytest.raises(AudioError) as caught:
        find_stems(other, Path("B"), tmp_path / "stems")
    assert str(caught.value) == (f"{other}: no stems in {tmp_path}/stems/B/other_song/ (--stems):"
                                 " expected drums.*, bass.*, other.*, vocals.*")


@pytest.mark.parametrize("bad, message", [
    (dict(sr=48000), "stem bass (bass.wav) is at 48000 Hz, the mix at 44100 Hz: stems must "
                     "have the mix's sample rate"),
    (dict(channels=1), "stem bass (bass.wav) has 1 channel(s), the mix 2: mono stems for a "
                       "stereo mix are refused: give stereo stems"),
    (dict(seconds=1.2), "stem bass (bass.wav) lasts 1.200 s (52920 samples), the mix 1.000 s "
                        "(44100): stems must have the mix's length (within 50 ms)"),
])
def test_stems_that_do_not_fit_the_mix_are_one_line(tmp_path, bad, message):
    track = _wav(tmp_path / "song.wav")
    stems = {stem: _wav(tmp_path / f"{stem}.wav", **(bad if stem == "bass" else {}))
             for stem in STEMS}
    with pytest.raises(AudioError) as caught:
        check_stems(track, stems)
    assert str(caught.value) == f"{track}: {message}"


def test_stems_within_the_length_tolerance_pass(tmp_path):
    track = _wav(tmp_path / "song.wav")
    stems = {stem: _wav(tmp_path / f"{stem}.wav", seconds=1.04) for stem in STEMS}
    assert check_stems(track, stems).frames == SR
