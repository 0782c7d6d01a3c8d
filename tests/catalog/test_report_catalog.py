"""`extractor report --db URL`: the report built from a catalog (SQLite and PostgreSQL) is the
report built from the folder the catalog was updated from."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from runner.catalog import connect, update
from runner.cli import main
from runner.report.from_catalog import load_catalog
from runner.report.loading import load_library
from tests.test_report import freesound_doc, music_doc, taxonomy, write


def library(folder: Path) -> Path:
    """Hand-written outputs of four profiles: music, freesound, highlevel, clap (the latter two
    merged into their music tracks by audio), a silent track, octave ambiguity, a name from
    the tags, a user's own model section."""
    for n in range(5):
        doc = music_doc(f"{n}.wav", bpm=90.0 + 10 * n, key=["C", "A", "Db"][n % 3],
                        scale=["major", "minor"][n % 2], md5=f"md5-{n}",
                        bpm_histogram_second_peak_bpm=2 * (90.0 + 10 * n),
                        bpm_histogram_second_peak_weight=0.4 * (n % 2))
        write(folder, f"music/{n:02d}.json", doc)
        highlevel = {"metadata": {"profile": {"name": "highlevel", "hash": "h"},
                                  "audio_properties": {"md5_encoded": f"md5-{n}"}},
                     "highlevel": {
                         "mood_happy": taxonomy({"happy": n / 5, "non_happy": 1 - n / 5}),
                         "danceability": taxonomy({"danceable": 0.1 + n / 10,
                                                   "not_danceable": 0.9 - n / 10})},
                     "mine": {"colour": taxonomy({"red": 0.2 + n / 10, "blue": 0.8 - n / 10,
                                                  "green": 0.0})}}
        write(folder, f"highlevel/{n:02d}.json", highlevel)
        clap = {"metadata": {"profile": {"name": "clap", "hash": "c"},
                             "audio_properties": {"md5_encoded": f"md5-{n}"}},
                "clap": {"embedding": [float(n), (n * n) / 3.0] + [0.25] * 62}}
        write(folder, f"clap/{n:02d}.json", clap)
    tagged = music_doc("tagged.wav", md5="md5-tagged", warnings=["silent: no signal", "too short: 0.100 s of audio"])
    tagged["metadata"]["tags"].update(artist=["The Band"], title=["A Song"])
    write(folder, "music/tagged.json", tagged)
    loop = freesound_doc("loop.wav", bpm=80.0, loop=160.0)
    loop["metadata"]["profile"]["hash"] = "f"
    write(folder, "freesound/My Loops/loop #1.json", loop)
    return folder


def catalog(folder: Path, url: str) -> str:
    db = connect(url)
    try:
        update(db, folder)
    finally:
        db.close()
    return url


def page_body(path: Path) -> str:
    """The page without its subtitle (the folder's or the catalog's location)."""
    return re.sub(r"<header>.*?</header>", "", path.read_text(encoding="utf-8"))


def test_the_catalog_gives_the_folders_tracks_and_page(tmp_path, db_url, capsys):
    outputs = library(tmp_path / "out")
    catalog(outputs, db_url)
    from_folder = load_library(outputs).tracks
    from_db, _ = load_catalog(db_url, tmp_path)
    assert len(from_folder) == 7
    assert [t.name for t in from_db.tracks] == [t.name for t in from_folder]
    assert from_db.tracks == from_folder  # every value, paths to the JSON included
    for mine, theirs in zip(from_db.tracks, from_folder, strict=True):
        assert mine.embeddings.keys() == theirs.embeddings.keys()
        for name, vector in mine.embeddings.items():
            assert np.array_equal(vector, theirs.embeddings[name])
    merged = next(t for t in from_db.tracks if t.name == "3.wav")
    assert merged.profiles == ["music", "clap", "highlevel"]  # folder order
    assert set(merged.taxonomies) == {"highlevel.mood_happy", "highlevel.danceability",
                                      "mine.colour"}
    assert next(t for t in from_db.tracks if t.name == "The Band - A Song").silent

    assert main(["report", str(outputs), "-o", str(tmp_path / "folder.html")]) == 0
    folder_line = capsys.readouterr().err
    assert main(["report", "--db", db_url, "-o", str(tmp_path / "db.html")]) == 0
    db_line = capsys.readouterr().err
    sections = "sections: library, tempo, keys, loudness, taxonomies, map0, tracks)"
    assert folder_line.endswith(sections + "\n") and db_line.endswith(sections + "\n")
    assert db_line.startswith(f"7 tracks -> {tmp_path / 'db.html'} (")
    folder_page, db_page = page_body(tmp_path / "folder.html"), page_body(tmp_path / "db.html")
    assert '"out/freesound/My%20Loops/loop%20%231.json"' in db_page
    assert db_page == folder_page


def test_real_outputs_give_the_same_page(analysed, tmp_path, db_url, capsys):
    """The music and timbre profiles' outputs of real audio, as the catalog tests analyse it."""
    catalog(analysed["music"], db_url)
    from_db, _ = load_catalog(db_url, tmp_path)
    assert len(from_db.tracks) == 6 and all(t.path.is_file() for t in from_db.tracks)
    assert from_db.tracks == load_library(analysed["music"]).tracks
    assert main(["report", str(analysed["music"]), "-o", str(tmp_path / "folder.html")]) == 0
    assert main(["report", "--db", db_url, "-o", str(tmp_path / "db.html")]) == 0
    assert page_body(tmp_path / "db.html") == page_body(tmp_path / "folder.html")


def test_links_without_a_recorded_output_folder_go_beside_the_sqlite_file(tmp_path):
    """Catalogs updated before output_root was recorded: the SQLite file's folder."""
    outputs = library(tmp_path / "out")
    url = catalog(outputs, str(outputs / "catalog.sqlite"))
    db = connect(url)
    try:
        db.execute("DELETE FROM catalog_meta WHERE key = 'output_root'")
    finally:
        db.close()
    from_db, _ = load_catalog(url, tmp_path)
    assert from_db.tracks == load_library(outputs).tracks


def test_usage_and_catalog_errors(tmp_path, capsys):
    outputs = library(tmp_path / "out")
    usage = "error: usage: give an output folder or --db URL (a catalog), one of the two\n"
    assert main(["report", "-o", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err == usage
    assert main(["report", str(outputs), "--db", str(tmp_path / "c.sqlite")]) == 2
    assert capsys.readouterr().err == usage
    assert main(["report", "--db", str(tmp_path / "c.sqlite"), "-j", "2"]) == 2
    assert capsys.readouterr().err == ("error: usage: -j/--jobs is for an output folder; a "
                                       "catalog is read by one process\n")
    assert main(["report", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert capsys.readouterr().err == (f"error: {tmp_path / 'none.sqlite'}: no catalog here "
                                       "(make one with `extractor catalog update OUTPUT_DIR`)\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    catalog(empty, str(tmp_path / "empty.sqlite"))
    assert main(["report", "--db", str(tmp_path / "empty.sqlite"),
                 "-o", str(tmp_path / "r.html")]) == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'empty.sqlite'}: the catalog holds no outputs\n")
    assert not (tmp_path / "r.html").exists()
