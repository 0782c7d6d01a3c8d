"""A corpus of malformed and hostile profiles, each refused the same way by every command.

Every file in tests/profiles/hostile/ (helpers start with ``_``) says in its first line what it
tests and in its second, ``# expect: FILE:LINE: KEY: MESSAGE...``, the start of the one line
every command must print: exit 2, one stderr line, pointing into the user's file. Cases that
are too large to commit (a huge file, 50,000 nodes, long extends chains) or that live on the
command line (``--set`` typos) are made here. The commands run in-process (runner.cli), a few
through the installed programs, and the hostile ones in a subprocess that measures their CPU
time and peak memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import cli
from runner.profile.reading import MAX_PROFILE_BYTES
from runner.profile.validate import MAX_DESCRIPTORS, MAX_GRAPH_NODES
from tests.conftest import tone, write_audio

CORPUS = Path(__file__).parent / "profiles" / "hostile"
CASES = sorted(p for p in CORPUS.glob("*.yaml") if not p.name.startswith("_"))
# Refused before anything is expanded: each must cost < 1 s of CPU and < 200 MB (measured in
# test_hostile_profiles_are_refused_fast, with the generated ones below).
HOSTILE = ["alias_bomb", "alias_recursive", "too_many_aliases", "deep_nesting", "long_int",
           "pow_bomb", "pow_chain", "long_expression", "substitution_bomb", "integer_overflow",
           "not_utf8", "two_documents", "port_bomb", "configure_bomb_bands",
           "configure_bomb_fft", "run_bomb_beat_window", "run_bomb_resample"]


def expectation(path: Path) -> str:
    """The start of the error line a case promises (its ``# expect:`` comment)."""
    for line in path.read_bytes().decode("ascii", errors="replace").splitlines()[:3]:
        if line.startswith("# expect: "):
            return line[len("# expect: "):]
    raise AssertionError(f"{path.name} has no '# expect:' line")


def test_corpus_is_large_and_documented():
    assert len(CASES) >= 60
    for path in CASES:
        first = path.read_bytes().splitlines()[0]
        assert first.startswith(b"# ") and len(first) > 10, f"{path.name}: say what it tests"
        expectation(path)


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio(tmp_path_factory.mktemp("hostile") / "tone.wav", tone(1.0))


def refusals(capsys: pytest.CaptureFixture, commands: list[tuple]) -> list[tuple[int, list[str]]]:
    """Run each (entry point, argv) in-process; return its exit code and stderr lines."""
    results = []
    for entry, argv in commands:
        code = entry([str(a) for a in argv])
        captured = capsys.readouterr()
        results.append((code, captured.err.splitlines()))
    return results


def assert_refused(results: list[tuple[int, list[str]]], expected: str) -> None:
    for code, lines in results:
        assert code == 2, lines
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"error: {expected}"), (lines[0], expected)
        assert "internal error" not in lines[0] and "Traceback" not in lines[0]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_every_command_refuses_with_one_line(path, capsys, short_wav, tmp_path):
    """`extractor validate`, `extractor run` (and for Essentia profile files the extractor
    command that takes them) all exit 2 with the same one line, before reading any audio."""
    out = tmp_path / "out.json"
    commands = [(cli.main, ["validate", path]), (cli.main, ["run", path, short_wav, out])]
    if path.name.startswith("legacy_"):
        commands.append((cli.music, [short_wav, out, path]))
    assert_refused(refusals(capsys, commands), f"{CORPUS}/{expectation(path)}")
    assert not out.exists()


SET_TYPOS = [
    ("lowlevel", "options.lowlevel.framesize=4096",
     "--set: options.lowlevel.framesize: option 'lowlevel.framesize' is not used by the profile "
     "(did you mean 'lowlevel.frameSize'?)"),
    ("rhythm", "graph.rhythm_extractr.params.method=degara",
     "--set: graph.rhythm_extractr.params.method: no node 'rhythm_extractr' "
     "(did you mean 'rhythm_extractor'?)"),
    ("rhythm", "graph.rhythm_extractor.params.methd=degara",
     "--set: graph.rhythm_extractor.params.methd: RhythmExtractor2013 has no parameter 'methd' "
     "(did you mean 'method'?)"),
    ("rhythm", "descriptors.rhythm.bpmm=null",
     "--set: descriptors.rhythm.bpmm: null deletes nothing: there is no descriptor 'rhythm.bpmm' "
     "(did you mean 'rhythm.bpm'?)"),
    ("lowlevel", "options.lowlevel.frameSize=0",
     "--set: options.lowlevel.frameSize: 0 is not within [1,inf) (in "
     "graph.ll_frames.params.frameSize, lowlevel.yaml:"),
    ("lowlevel", "options.lowlevel.hopSize=${lowlevel.frameSize} / 0",
     "--set: options.lowlevel.hopSize: expected an integer, got '${lowlevel.frameSize} / 0'"),
    ("lowlevel", "audio.samplerate=22050", "--set: audio.samplerate: unknown key 'samplerate'"),
    ("rhythm", "graph.rhythm_extractor.params={1: 2}",
     "--set: graph.rhythm_extractor.params: YAML reads the key 1 as a number, not as a name"),
    ("rhythm", "options.x=[&a [1, 1]" + ", *a" * 1001 + "]",
     "--set: options.x: more than 1000 YAML aliases"),
    ("lowlevel", "stats.lowlevel=[mean, avg]", '--set: stats.lowlevel.1: "avg" is not one of'),
]


@pytest.mark.parametrize("profile, override, expected", SET_TYPOS,
                         ids=[s[1][:40] for s in SET_TYPOS])
def test_set_typos_are_refused(profile, override, expected, capsys, short_wav, tmp_path):
    out = tmp_path / "out.json"
    commands = [(cli.main, ["validate", profile, "--set", override]),
                (cli.main, ["run", profile, short_wav, out, "--set", override])]
    assert_refused(refusals(capsys, commands), expected)


def generated(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Hostile cases too large to commit: name -> (file, the start of its error line)."""
    cases: dict[str, tuple[Path, str]] = {}
    huge = tmp_path / "huge.yaml"
    with open(huge, "w") as out:
        out.write("name: huge\nstats: {lowlevel: [mean]}\ndescriptors:\n")
        index = 0
        while out.tell() <= MAX_PROFILE_BYTES + 1000:
            out.write(f"  lowlevel.rms_{index}: rms.rms\n")
            index += 1
    limit_line = huge.read_bytes()[:MAX_PROFILE_BYTES].count(b"\n") + 1
    cases["huge_file"] = (huge, f"{huge}:{limit_line}: the profile is larger than 512 KiB")
    nodes = tmp_path / "many_nodes.yaml"
    nodes.write_text("name: many_nodes\noptions:\n  many: [" + ",".join(["1"] * 60_000) + "]\n")
    cases["many_nodes"] = (nodes, f"{nodes}:3: options.many.49993: more than 50000 YAML nodes")
    for index in range(20):  # a chain of 20 files, each extending the next
        (tmp_path / f"chain{index}.yaml").write_text(
            f"name: chain{index}\nextends: chain{index + 1}.yaml\n")
    (tmp_path / "chain20.yaml").write_text("name: chain20\n")
    cases["deep_extends"] = (tmp_path / "chain0.yaml",
                             f"{tmp_path}/chain15.yaml:2: extends.0: 'extends' is nested more "
                             "than 16 deep")
    for level in range(12):  # each extends both files of the next level: 2**12 paths
        for side in "ab":
            nxt = f"extends: [d{level + 1}a.yaml, d{level + 1}b.yaml]\n" if level < 11 else ""
            (tmp_path / f"d{level}{side}.yaml").write_text(f"name: d{level}{side}\n{nxt}")
    cases["diamond_extends"] = (tmp_path / "d0a.yaml", "")
    cases["dev_zero"] = (Path("/dev/zero"), "/dev/zero: is not a regular file")
    # as large as a profile may be (nodes, descriptors), its one mistake at the very end
    for case, bad_node in (("max_size_bad_wire", False), ("max_size_bad_configuration", True)):
        nodes, descriptors = MAX_GRAPH_NODES - 1, MAX_DESCRIPTORS - 1
        lines = ["name: max_size", "stats: {lowlevel: [mean]}", "graph:"]
        for index in range(nodes):
            params = f"frameSize: {2048 + index}, hopSize: 1024"
            if bad_node and index == nodes - 1:  # Essentia's own check refuses this one
                params = "frameSize: 100, startFromZero: false, validFrameThresholdRatio: 1"
            lines.append(f"  fc{index}: {{algorithm: FrameCutter, params: {{{params}}}, "
                         "inputs: {signal: audio.signal}}")
        lines.append("descriptors:")
        for index in range(descriptors):
            wire = "nowhere.frame" if not bad_node and index == descriptors - 1 else (
                f"fc{index % nodes}.frame")
            lines.append(f"  lowlevel.d{index}: {wire}")
        path = tmp_path / f"{case}.yaml"
        path.write_text("\n".join(lines) + "\n")
        cases[case] = (path, f"{path}:{len(lines)}: descriptors.lowlevel.d{descriptors - 1}: no "
                       "node named 'nowhere'" if not bad_node else
                       f"{path}:{3 + nodes}: graph.fc{nodes - 1}.params: Error while configuring")
    return cases


@pytest.mark.parametrize("name", ["huge_file", "many_nodes", "deep_extends", "diamond_extends",
                                  "dev_zero", "max_size_bad_wire",
                                  "max_size_bad_configuration"])
def test_generated_hostile_profiles(name, capsys, short_wav, tmp_path):
    path, expected = generated(tmp_path)[name]
    out = tmp_path / "out.json"
    results = refusals(capsys, [(cli.main, ["validate", path]),
                                (cli.main, ["run", path, short_wav, out])])
    if name == "diamond_extends":  # which file trips the bound depends on the walk: its text
        assert all(code == 2 and len(lines) == 1 for code, lines in results), results
        assert "reads more than 256 profiles" in results[0][1][0]
        return
    assert_refused(results, expected)


MEASURE = r"""
import contextlib, io, json, resource, sys
from pathlib import Path
from runner import cli

def peak_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def reset_peak():
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # then the peak is the whole process's so far: a stricter test

def validate(path):
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = cli.main(["validate", path])
    return code, err.getvalue()

validate(sys.argv[1])  # warm up: the modules every refusal uses, Essentia included
results = []
for path in sys.argv[2:]:
    reset_peak()
    before = resource.getrusage(resource.RUSAGE_SELF)
    code, err = validate(path)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    results.append({"path": path, "code": code, "err": err, "cpu_s": cpu,
                    "peak_mib": peak_kib() / 1024})
print(json.dumps(results))
"""


def test_hostile_profiles_are_refused_fast(tmp_path):
    """Alias bombs, deep nesting, huge files, arithmetic bombs: refused in well under a second
    of CPU and 200 MB (before: a 9-level alias bomb grew to 14 GB; a 42 MB profile took 85 s
    and 3.1 GB; ``${frame} ** 99999999`` took 5 s and 490 MB)."""
    paths = [str(CORPUS / f"{name}.yaml") for name in HOSTILE]
    paths += [str(path) for path, _ in generated(tmp_path).values()]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    warm = str(CORPUS / "unknown_algorithm.yaml")
    result = subprocess.run([sys.executable, "-c", MEASURE, warm, *paths], capture_output=True,
                            text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(measured) == len(paths)
    for entry in measured:
        name = Path(entry["path"]).name
        assert entry["code"] == 2 and len(entry["err"].splitlines()) == 1, entry
        assert entry["cpu_s"] < 1.0, f"{name}: {entry['cpu_s']:.2f} s of CPU"
        assert entry["peak_mib"] < 200, f"{name}: {entry['peak_mib']:.0f} MiB"


def command(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


@pytest.mark.parametrize("args, case", [
    (["extractor", "validate"], "alias_bomb"),
    (["extractor", "run"], "vector_into_scalar_param"),
    (["extractor", "run"], "single_on_framewise"),
    (["streaming-extractor-music", "AUDIO", "OUT"], "legacy_typo"),
])
def test_installed_commands_exit_2_with_one_line(args, case, short_wav, tmp_path):
    """The real programs: exit status 2 and nothing on stderr but the one line (no
    TensorFlow or Essentia chatter, no traceback)."""
    path = CORPUS / f"{case}.yaml"
    out = tmp_path / "out.json"
    argv = [command(args[0]), *[str(short_wav) if a == "AUDIO" else str(out) if a == "OUT"
                                else a for a in args[1:]]]
    argv += [str(path)] + ([str(short_wav), str(out)] if args[1:] == ["run"] else [])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"error: {CORPUS}/{expectation(path)}"] or (
        len(result.stderr.splitlines()) == 1
        and result.stderr.startswith(f"error: {CORPUS}/{expectation(path)}")), result.stderr
    assert not out.exists()
