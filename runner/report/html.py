"""One self-contained HTML page: styles, data, Vega's runtime and the page's script inline.

The page opens from disk with no network: the Vega, Vega-Lite and vega-embed runtime comes
from ``vl-convert-python`` (``vl_convert.javascript_bundle()``, about 0.9 MB, the same
libraries Altair's offline HTML inlines), the data is one JSON block. Charts are Vega-Lite
specs (charts.py); the track table is a plain HTML table the page script fills, searches and
sorts (a table is not a chart).
"""

from __future__ import annotations

import functools
import html
import importlib.metadata
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import OutputError
from runner.output import write_atomic

RUNTIME_HINT = "pip install 'extractor-profiles[report]'"
RUNTIME_END = "\n// extractor-profiles: the whole bundle\n"  # a cache file cut short is redone


def runtime_cache(version: str) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "extractor-profiles" / "report" / f"vega-runtime-{version}.js"


@functools.lru_cache(maxsize=1)
def vega_runtime() -> str:
    """Vega + Vega-Lite + vega-embed as one script. Bundling takes 4 s (holding the GIL), so
    the bundle is kept in the user's cache, one file per vl-convert-python version."""
    try:
        import vl_convert
    except ImportError:
        raise OutputError(f"the report needs vl-convert-python (Vega's runtime, inlined in "
                          f"the page): {RUNTIME_HINT}") from None
    cached = runtime_cache(importlib.metadata.version("vl-convert-python"))
    try:
        text = cached.read_text(encoding="utf-8")
        if text.endswith(RUNTIME_END):
            return text
    except OSError:
        pass
    text = script_safe(vl_convert.javascript_bundle()) + RUNTIME_END
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cached, text)
    except (OSError, OutputError):  # a read-only home: bundle again next time
        pass
    return text


def script_safe(text: str) -> str:
    """Text that cannot end its <script> element early."""
    return text.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


def json_for_script(value: Any) -> str:
    """JSON that is safe inside <script type=application/json>: no '<' at all, no NaN."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c")


@dataclass
class Section:
    """A heading, a paragraph or two of HTML, and the charts (id -> Vega-Lite spec)."""

    id: str
    title: str
    intro: str
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)
    body: str = ""  # extra HTML after the charts


STYLE = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; }
body { margin: 0; background: #f6f7f9; }
header { background: #1f2a44; color: #fff; padding: 16px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; opacity: .8; font-size: 13px; }
nav { padding: 8px 28px; background: #fff; border-bottom: 1px solid #ddd; font-size: 14px; }
nav a { margin-right: 16px; color: #1f5fa8; text-decoration: none; }
main { padding: 8px 28px 40px; }
section { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; margin: 18px 0;
          padding: 12px 20px 18px; }
section h2 { font-size: 18px; margin: 6px 0 6px; }
section p.intro { margin: 0 0 10px; color: #555; font-size: 13px; max-width: 70em; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #e1e4e8; border-radius: 6px; padding: 10px 16px; min-width: 120px; }
.card b { display: block; font-size: 22px; }
.card span { color: #666; font-size: 12px; }
.chart { width: 100%; min-height: 60px; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; }
.grid .chart { width: auto; }
#track-search { font-size: 14px; padding: 6px 10px; width: 320px; max-width: 90%; }
#track-count { margin-left: 12px; color: #555; font-size: 13px; }
.table-wrap { max-height: 560px; overflow: auto; margin-top: 10px; border: 1px solid #e1e4e8; }
table { border-collapse: collapse; font-size: 12.5px; width: 100%; }
th { position: sticky; top: 0; background: #eef1f5; cursor: pointer; text-align: left;
     padding: 6px 8px; white-space: nowrap; user-select: none; }
th.sorted-asc::after { content: " \\25B2"; } th.sorted-desc::after { content: " \\25BC"; }
td { padding: 4px 8px; border-top: 1px solid #eee; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.warn { color: #a15c00; white-space: normal; min-width: 16em; }
tr:hover td { background: #f3f7ff; }
.octave { color: #c25e00; font-weight: bold; }
"""

# Embeds every chart, then fills the table. Each failure goes to console.error, which is
# what the browser test watches.
SCRIPT = r"""
(function () {
  const report = JSON.parse(document.getElementById("report-data").textContent);
  const fields = report.data.fields;
  const tracks = report.data.rows.map(function (row) {
    const track = {};
    fields.forEach(function (name, i) { track[name] = row[i]; });
    return track;
  });
  const embeds = Object.entries(report.charts).map(function ([id, spec]) {
    spec.datasets = {tracks: tracks};
    const renderer = (spec.usermeta && spec.usermeta.renderer) || "svg";
    return vegaEmbed("#" + id, spec, {mode: "vega-lite", actions: false, renderer: renderer,
                                      loader: {target: "_blank"}})
      .catch(function (error) { console.error("chart " + id + ": " + error); });
  });
  Promise.all(embeds).then(function () { document.body.dataset.charts = "rendered"; });

  const body = document.getElementById("track-rows");
  if (!body) return;
  const columns = report.table;
  const search = document.getElementById("track-search");
  const count = document.getElementById("track-count");
  const limit = report.table_limit;
  const text = tracks.map(function (t) {
    return columns.map(function (c) { return t[c.field] == null ? "" : String(t[c.field]); })
      .join(" ").toLowerCase();
  });
  let order = tracks.map(function (_, i) { return i; });
  let sortField = null, sortAsc = true;

  function cell(track, column) {
    const td = document.createElement("td");
    const value = track[column.field];
    if (column.field === "name") {
      const a = document.createElement("a");
      a.href = track.json; a.target = "_blank"; a.textContent = value;
      td.appendChild(a);
    } else if (column.field === "bpm" && value != null && track.octave) {
      td.textContent = value + " \u2248"; td.className = "num octave";
      td.title = "octave-ambiguous: " + track.octave;
    } else {
      td.textContent = value == null ? "" : value;
      if (column.numeric) td.className = "num";
      if (column.field === "warnings") td.className = "warn";
    }
    return td;
  }
  function draw() {
    const query = search.value.trim().toLowerCase();
    const shown = order.filter(function (i) { return !query || text[i].includes(query); });
    const rows = document.createDocumentFragment();
    shown.slice(0, limit).forEach(function (i) {
      const tr = document.createElement("tr");
      columns.forEach(function (c) { tr.appendChild(cell(tracks[i], c)); });
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
    count.textContent = shown.length + " of " + tracks.length + " tracks" +
      (shown.length > limit ? " (first " + limit + " shown: search to narrow)" : "");
  }
  document.querySelectorAll("#track-table th").forEach(function (th) {
    th.addEventListener("click", function () {
      const field = th.dataset.field;
      sortAsc = sortField === field ? !sortAsc : true;
      sortField = field;
      const sign = sortAsc ? 1 : -1;
      order.sort(function (a, b) {
        const x = tracks[a][field], y = tracks[b][field];
        if (x == null || x === "") return (y == null || y === "") ? a - b : 1;
        if (y == null || y === "") return -1;
        if (x < y) return -sign;
        if (x > y) return sign;
        return a - b;
      });
      document.querySelectorAll("#track-table th").forEach(function (h) {
        h.classList.remove("sorted-asc", "sorted-desc");
      });
      th.classList.add(sortAsc ? "sorted-asc" : "sorted-desc");
      draw();
    });
  });
  search.addEventListener("input", draw);
  draw();
})();
"""


def _section_html(section: Section) -> str:
    charts = "".join(f'<div class="chart" id="{html.escape(chart_id)}"></div>'
                     for chart_id in section.charts)
    if len(section.charts) > 1:
        charts = f'<div class="grid">{charts}</div>'
    return (f'<section id="{section.id}"><h2>{html.escape(section.title)}</h2>'
            f'<p class="intro">{section.intro}</p>{charts}{section.body}</section>')


def render_page(title: str, subtitle: str, sections: list[Section], data: dict[str, Any],
                table: list[dict[str, Any]], table_limit: int) -> str:
    """The whole document; ``sections`` already hold only what has data."""
    charts = {cid: spec for s in sections for cid, spec in s.charts.items()}
    payload = {"data": data, "charts": charts, "table": table, "table_limit": table_limit}
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>",
        f"<nav>{nav}</nav><main>",
        *(_section_html(s) for s in sections),
        "</main>",
        f'<script type="application/json" id="report-data">{json_for_script(payload)}</script>',
        f"<script>{vega_runtime()}</script>",
        f"<script>{script_safe(SCRIPT)}</script>",
        "</body></html>",
    ])
