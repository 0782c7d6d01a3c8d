"""The library report in a real browser: Debian's Chromium, headless, driven by selenium.

The library is analysed by the real `streaming-extractor-music` command (audio made here),
with hand-made highlevel and clap outputs of the same audio beside it. The page must render
every chart without a console error and with the network shut off, the table must search
and sort, a map point must name its track on hover and open its JSON on click. A screenshot
is saved in the test's temporary folder.

Needs `chromium` and `chromium-driver` (Debian packages; .ci/run installs them). Without them
the test is skipped on a developer's machine and fails under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import click_track, write_audio
from tests.test_cli import run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TRACKS = {"clicks_90": 90, "clicks_120": 120, "clicks_140": 140}


def _missing_browser() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    return ", ".join(missing) or None


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three click tracks and one silent file analysed by the music command, plus highlevel
    and clap outputs for the same audio (as music-highlevel and the clap profile write)."""
    root = tmp_path_factory.mktemp("report")
    audio, out = root / "audio", root / "out"
    audio.mkdir()
    for n, (name, bpm) in enumerate(TRACKS.items()):
        write_audio(audio / f"{name}.wav", click_track(4.0, bpm=bpm, seed=n))
    write_audio(audio / "silence.wav", np.zeros(44100 * 2, dtype=np.float32))
    result = run("streaming-extractor-music", str(audio), "--output", str(out / "music"))
    assert result.returncode == 0, result.stderr
    rng = np.random.default_rng(0)
    for n, path in enumerate(sorted((out / "music").glob("*.json"))):
        meta = json.loads(path.read_text())["metadata"]
        head = {"profile": {"name": "clap"}, "audio_properties": meta["audio_properties"],
                "tags": meta["tags"], "warnings": []}
        clap = {"metadata": head, "clap": {"embedding": rng.standard_normal(512).tolist()}}
        (out / "clap").mkdir(exist_ok=True)
        (out / "clap" / path.name).write_text(json.dumps(clap))
        happy = [0.9, 0.3, 0.6, 0.5][n]
        genre = {"electronic": 0.6 - 0.1 * n, "rock": 0.2 + 0.1 * n, "jazz": 0.2}
        highlevel = {"metadata": {**head, "profile": {"name": "highlevel"}}, "highlevel": {
            "mood_happy": {"value": "happy" if happy > 0.5 else "non_happy",
                           "probability": max(happy, 1 - happy),
                           "all": {"happy": happy, "non_happy": 1 - happy}},
            "genre_mine": {"value": max(genre, key=lambda g: genre[g]),
                           "probability": max(genre.values()), "all": genre}}}
        (out / "highlevel").mkdir(exist_ok=True)
        (out / "highlevel" / path.name).write_text(json.dumps(highlevel))
    (out / "broken.json").write_text('{"metadata": ')
    return out


@pytest.fixture(scope="module")
def report(library: Path) -> Path:
    page = library.parent / "site" / "report.html"
    result = run("extractor", "report", str(library), "-o", str(page))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"warning: {library / 'broken.json'}: skipped, not a "
                                    "readable result (")
    assert f"\n4 tracks -> {page} (" in result.stderr
    return page


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    missing = _missing_browser()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test needs {missing} (.ci/run installs them)")
        pytest.skip(f"needs {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={profile}", "--window-size=1280,1600",
                     # no network at all: anything the page fetched would fail, and log
                     "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _table_names(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#track-rows tr td:first-child')]"
        ".map(td => td.textContent)")


def _charts(driver) -> list[dict]:
    """Each chart's id, its drawn marks (SVG elements, or canvas pixels that are not
    background) and its size."""
    return driver.execute_script("""
        return [...document.querySelectorAll('.chart')].map(el => {
          const svg = el.querySelector('svg'), canvas = el.querySelector('canvas');
          const box = (svg || canvas || el).getBoundingClientRect();
          let marks = 0;
          if (svg) marks = svg.querySelectorAll('.role-mark > *').length;
          else if (canvas) {
            const pixels = canvas.getContext('2d')
              .getImageData(0, 0, canvas.width, canvas.height).data;
            for (let i = 0; i < pixels.length; i += 4)
              if (pixels[i + 3] > 0 && (pixels[i] < 250 || pixels[i + 2] < 250)) marks++;
          }
          return {id: el.id, marks: marks, canvas: !svg && !!canvas,
                  width: box.width, height: box.height};
        });""")


def _severe(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_the_report_in_chromium(browser, report, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(report.as_uri())
    _wait(lambda: driver.execute_script("return document.body.dataset.charts") == "rendered")

    charts = _charts(driver)
    ids = [c["id"] for c in charts]
    assert ids == ["chart-tempo", "chart-keys", "chart-loudness", "chart-taxonomy-0",
                   "chart-taxonomy-1", "chart-map0"]
    for chart in charts:  # every chart drew marks, in a box of its own
        assert chart["marks"] > 0 and chart["width"] > 100 and chart["height"] > 100, chart
    sections = driver.execute_script(
        "return [...document.querySelectorAll('section')].map(s => s.id)")
    assert sections == ["library", "tempo", "keys", "loudness", "taxonomies", "map0", "tracks"]

    # the table: every track, searchable, sortable
    names = _table_names(driver)
    assert sorted(names) == sorted(f"{name}.wav" for name in [*TRACKS, "silence"])
    search = driver.find_element(By.ID, "track-search")
    search.send_keys("clicks_12")
    assert _table_names(driver) == ["clicks_120.wav"]
    assert driver.find_element(By.ID, "track-count").text == "1 of 4 tracks"
    search.clear()
    search.send_keys("silent")  # the warning column is searched too
    assert _table_names(driver) == ["silence.wav"]
    search.clear()
    search.send_keys("x")
    search.clear()
    driver.execute_script("arguments[0].dispatchEvent(new Event('input'))", search)
    assert len(_table_names(driver)) == 4
    driver.find_element(By.CSS_SELECTOR, 'th[data-field="bpm"]').click()
    bpms = driver.execute_script(
        "return [...document.querySelectorAll('#track-rows tr td:nth-child(3)')]"
        ".map(td => parseFloat(td.textContent))")
    measured = [b for b in bpms if b == b]
    assert measured == sorted(measured) and len(measured) >= 3

    # the map: hover names the track, a click opens its JSON in a new tab
    point = driver.find_elements(By.CSS_SELECTOR, "#chart-map0 .role-mark > path")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
    ActionChains(driver).move_to_element(point).perform()
    _wait(lambda: "clicks_" in driver.execute_script(
        "const t = document.getElementById('vg-tooltip-element');"
        "return t && t.classList.contains('visible') ? t.textContent : ''"), 10)
    tooltip = driver.find_element(By.ID, "vg-tooltip-element").text
    driver.save_screenshot(str(tmp_path / "report-map.png"))
    before = set(driver.window_handles)
    ActionChains(driver).click(point).perform()
    _wait(lambda: len(driver.window_handles) > len(before), 10)
    report_tab = driver.current_window_handle
    driver.switch_to.window((set(driver.window_handles) - before).pop())
    _wait(lambda: driver.current_url.endswith(".json"), 10)
    opened = json.loads(driver.find_element(By.TAG_NAME, "body").text)
    name = tooltip.split("track")[1].split()[0].strip(": ")
    assert opened["metadata"]["tags"]["file_name"] == name
    assert opened["metadata"]["profile"]["name"] == "music"  # the descriptors, not the clap
    driver.close()
    driver.switch_to.window(report_tab)

    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
    if os.environ.get("REPORT_SCREENSHOT"):  # to look at it, or to refresh docs/report.png
        shutil.copy(tmp_path / "report.png", os.environ["REPORT_SCREENSHOT"])
    assert _severe(driver) == []


def test_a_large_library_draws_its_points_on_canvas(browser, tmp_path):
    """Above 3,000 points the scatter plots draw on a canvas (SVG would crawl); the table
    draws its first 1,000 rows and searches all of them."""
    from selenium.webdriver.common.by import By

    rng = np.random.default_rng(1)
    out = tmp_path / "out"
    out.mkdir()
    for n in range(3100):
        doc = {"metadata": {"profile": {"name": "music"}, "warnings": [],
                            "tags": {"file_name": f"t{n:04d}.flac"},
                            "audio_properties": {"length": 200.0, "md5_encoded": str(n)}},
               "lowlevel": {"loudness_ebu128": {"integrated": float(rng.normal(-12, 3))}},
               "rhythm": {"bpm": float(rng.uniform(60, 180)),
                          "danceability": float(rng.uniform(0.5, 2.5))},
               "tonal": {"key_key": "C", "key_scale": "minor"},
               "clap": {"embedding": rng.standard_normal(16).tolist()}}
        (out / f"t{n:04d}.json").write_text(json.dumps(doc))
    page = tmp_path / "report.html"
    result = run("extractor", "report", str(out), "-o", str(page))
    assert result.returncode == 0, result.stderr
    browser.get(page.as_uri())
    _wait(lambda: browser.execute_script("return document.body.dataset.charts") == "rendered")
    charts = {c["id"]: c for c in _charts(browser)}
    assert [c["canvas"] for c in charts.values()] == [False, False, True, True]
    for chart in charts.values():
        assert chart["marks"] > 0 and chart["width"] > 100, chart
    assert len(_table_names(browser)) == 1000
    assert browser.find_element(By.ID, "track-count").text == (
        "3100 of 3100 tracks (first 1000 shown: search to narrow)")
    browser.find_element(By.ID, "track-search").send_keys("t309")
    assert _table_names(browser) == [f"t309{n}.flac" for n in range(10)]
    assert _severe(browser) == []
