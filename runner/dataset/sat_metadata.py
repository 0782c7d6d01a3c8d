"""Stable Audio Tools' custom metadata for a folder made by `extractor crops` / `extractor
prompts`: the prompt (and, for a crop, its place in its track) from the ``.INFO`` beside each
audio file.

`extractor prompts` copies this file into the dataset folder, and the dataset config names it
as ``custom_metadata_module``; stable-audio-tools loads it with
``importlib.util.spec_from_file_location`` and calls ``get_custom_metadata(info, audio)`` for
every sample, where ``info["path"]`` is the audio file. It runs in the training environment, so
it uses the standard library only.
"""

import json
import math
import os


def _read_info(audio_path):
    """The JSON object in ``song.INFO`` beside ``song.flac`` (None: absent or damaged)."""
    base = os.path.splitext(audio_path)[0]
    try:
        with open(base + ".INFO", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_text(audio_path):
    """The prompt in ``song.txt`` beside ``song.flac`` (None: absent)."""
    try:
        with open(os.path.splitext(audio_path)[0] + ".txt", encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def get_custom_metadata(info, audio):
    """``{"prompt": ...}`` for a file with a prompt; for a crop also ``seconds_start`` and
    ``seconds_total`` of its place in the whole track (what stable-audio-open's timing
    conditioning expects). A file without a prompt is rejected (``__reject__``: the loader
    draws another file) rather than trained on with an empty text."""
    data = _read_info(info["path"]) or {}
    prompt = data.get("prompt") or _read_text(info["path"])
    if not isinstance(prompt, str) or not prompt:
        return {"__reject__": True}
    metadata = {"prompt": prompt}
    crop = data.get("crop")
    if isinstance(crop, dict) and isinstance(crop.get("track_seconds"), (int, float)):
        offset = float(crop.get("seconds_start") or 0.0)
        metadata["seconds_start"] = int(info.get("seconds_start", 0)) + math.floor(offset)
        metadata["seconds_total"] = math.ceil(crop["track_seconds"])
    return metadata
