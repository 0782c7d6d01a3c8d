"""Vega-Lite specifications of the report's charts (plain dicts; the page embeds them).

Per-track charts read the page's one shared dataset, ``{"name": "tracks"}`` (see
``data.dataset``), so 10,000 tracks are written once however many charts show them; the small
aggregated tables (key counts, taxonomy classes) travel inside their own spec. Field names
have no dots: Vega-Lite would read ``a.b`` as a nested field.
"""

from __future__ import annotations

import math
from typing import Any

TRACKS = {"name": "tracks"}
AGREE, AMBIGUOUS = "estimators agree", "octave-ambiguous"
BLUE, ORANGE = "#4c78a8", "#f58518"
# SVG keeps every mark in the document (and testable); above this many points the maps and
# scatter plots draw on a canvas, which stays fast at 10,000
SVG_POINT_LIMIT = 3000


def _track_tooltip(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"field": "name", "type": "nominal", "title": "track"}, *extra]


def tempo_chart() -> dict[str, Any]:
    """Histogram of rhythm.bpm, octave-ambiguous tracks stacked in their own colour."""
    return {
        "description": "tempo histogram",
        "data": TRACKS,
        "transform": [
            {"filter": "isValid(datum.bpm) && !datum.silent"},
            {"calculate": f"datum.octave ? '{AMBIGUOUS}' : '{AGREE}'", "as": "estimate"},
        ],
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {"field": "bpm", "type": "quantitative", "bin": {"maxbins": 40, "minstep": 2},
                  "title": "tempo, rhythm.bpm (BPM)", "axis": {"format": "d"}},
            "y": {"aggregate": "count", "type": "quantitative", "title": "tracks"},
            "color": {"field": "estimate", "type": "nominal", "title": "tempo estimators",
                      "scale": {"domain": [AGREE, AMBIGUOUS], "range": [BLUE, ORANGE]}},
            "order": {"field": "estimate", "sort": "ascending"},
        },
        "width": "container", "height": 240,
    }


def _ring(scale: str, outer: float, inner: float, most: int) -> list[dict[str, Any]]:
    theta = {"field": "slot", "type": "quantitative", "stack": True}
    order = {"field": "position", "type": "quantitative"}
    offset = -math.pi / 12  # centre C major (and A minor) at twelve o'clock
    keep = {"filter": f"datum.scale == '{scale}'"}
    return [
        {"transform": [keep],
         "mark": {"type": "arc", "radius": outer, "radius2": inner, "stroke": "#ffffff",
                  "thetaOffset": offset, "theta2Offset": offset, "tooltip": True},
         "encoding": {"theta": theta, "order": order,
                      "color": {"field": "tracks", "type": "quantitative",
                                "scale": {"scheme": "blues", "domainMin": 0}, "title": "tracks"},
                      "tooltip": [{"field": "label", "title": "key"},
                                  {"field": "scale"}, {"field": "tracks"}]}},
        {"transform": [keep],
         "mark": {"type": "text", "radius": (outer + inner) / 2, "thetaOffset": offset,
                  "fontSize": 12, "fontWeight": "bold" if scale == "major" else "normal"},
         "encoding": {"theta": theta, "order": order, "text": {"field": "label"},
                      # white on the darkest cells, grey on empty ones
                      "color": {"condition": [
                          {"test": f"datum.tracks > {most * 0.55:g}", "value": "#ffffff"},
                          {"test": "datum.tracks > 0", "value": "#222222"}],
                          "value": "#999999"}}},
    ]


def key_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Circle of fifths: majors outside, their relative minors inside, coloured by count."""
    most = max(row["tracks"] for row in rows)
    return {
        "description": "key distribution on the circle of fifths",
        "data": {"values": [{**row, "slot": 1} for row in rows]},
        "layer": [*_ring("major", 160, 105, most), *_ring("minor", 105, 50, most)],
        "view": {"stroke": None},
        "width": 340, "height": 340,
    }


def scatter_chart(x: str, x_title: str, y: str, y_title: str, points: int,
                  description: str, embedding: bool = False) -> dict[str, Any]:
    """One point per track; hover names it, a click opens its JSON."""
    spec: dict[str, Any] = {
        "description": description,
        "data": TRACKS,
        "transform": [{"filter": f"isValid(datum.{x}) && isValid(datum.{y}) && !datum.silent"}],
        "mark": {"type": "circle", "size": 36, "opacity": 0.65, "cursor": "pointer"},
        "encoding": {
            "x": {"field": x, "type": "quantitative", "title": x_title,
                  "scale": {"zero": False, "nice": True}, "axis": {"tickCount": 10}},
            "y": {"field": y, "type": "quantitative", "title": y_title,
                  "scale": {"zero": False, "nice": True}, "axis": {"tickCount": 8}},
            "tooltip": _track_tooltip({"field": x, "title": x_title},
                                      {"field": y, "title": y_title}),
            "href": {"field": "json"},
        },
        "width": "container", "height": 360,
        "usermeta": {"renderer": "svg" if points <= SVG_POINT_LIMIT else "canvas"},
    }
    if embedding:  # the axes mean nothing: say what the track is instead
        spec["encoding"]["tooltip"] = _track_tooltip(
            {"field": "key", "title": "key"}, {"field": "bpm", "title": "BPM"})
    return spec


def taxonomy_chart(name: str, rows: list[dict[str, Any]], tracks: int, classes: int
                   ) -> dict[str, Any]:
    """How many tracks each class tops; the colour is the class's mean probability."""
    shown = f"top {len(rows)} of {classes} classes" if classes > len(rows) else \
        f"{classes} classes"
    return {
        "description": f"{name} distribution",
        "title": {"text": name, "subtitle": f"{tracks} tracks, {shown}"},
        "data": {"values": rows},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "class", "type": "nominal", "sort": "-x", "title": None},
            "x": {"field": "tracks", "type": "quantitative", "title": "tracks (top class)"},
            "color": {"field": "mean_probability", "type": "quantitative",
                      "scale": {"scheme": "tealblues", "domain": [0, 1]},
                      "title": "mean probability"},
        },
        "width": 260,
    }
