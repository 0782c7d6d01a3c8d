"""Property: a profile that `extractor validate` accepts runs on a real file without an internal
error; one it refuses gets one clean line.

A seeded random mutator changes valid profiles (a small graph, a tonal graph with standard-mode
and derive nodes, children of the built-in rhythm and lowlevel profiles): random parameter
values, rewired inputs, parameter references, dropped nodes, renamed keys, toggled ``single``,
statistics, audio settings and options. Each mutant is validated in this process; each one
that validates runs in a fork of a helper process (so a crash, or Essentia's per-network
memory, stays there) on a few seconds of audio. An internal error is any line with 'internal error' or a
traceback, or a child killed by a signal. Reproduce a failure with the seed it prints:
PROFILE_MUTATION_SEED=<seed> pytest tests/test_profile_mutations.py
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner import cli, registry
from tests.conftest import click_track, piano_clip, write_audio

SEED = int(os.environ.get("PROFILE_MUTATION_SEED", "20261207"))
MUTANTS = int(os.environ.get("PROFILE_MUTANTS", "100"))
MINI = Path(__file__).with_name("data") / "mini.yaml"

TONAL = """
name: small_tonal
options: {frame: 4096, hop: 2048}
stats: {tonal: [mean, var]}
graph:
  fc: {algorithm: FrameCutter, params: {frameSize: "${frame}", hopSize: "${hop}"}, inputs: {signal: audio.signal}}
  win: {algorithm: Windowing, params: {type: blackmanharris62}, inputs: {frame: fc.frame}}
  spec: {algorithm: Spectrum, inputs: {frame: win.frame}}
  peaks:
    algorithm: SpectralPeaks
    params: {orderBy: magnitude, magnitudeThreshold: 0.00001, minFrequency: 20, maxFrequency: 3500, maxPeaks: 60}
    inputs: {spectrum: spec.spectrum}
  tuning: {algorithm: TuningFrequency, inputs: {frequencies: peaks.frequencies, magnitudes: peaks.magnitudes}}
  hpcp:
    algorithm: HPCP
    params: {referenceFrequency: {from: tuning.tuningFrequency, take: last}}
    inputs: {frequencies: peaks.frequencies, magnitudes: peaks.magnitudes}
  pcp: {function: key_pcp, inputs: {pcp: {from: hpcp.hpcp, take: mean}}}
  key: {algorithm: Key, inputs: {pcp: {from: pcp.pcp, take: last}}}
  thpcp: {function: transpose_to_peak, inputs: {hpcp: {from: hpcp.hpcp, take: mean}}}
  tf: {function: last, inputs: {values: {from: tuning.tuningFrequency, take: all}}}
  centroid: {algorithm: Centroid, params: {range: 22050}, inputs: {array: spec.spectrum}}
descriptors:
  tonal.hpcp: hpcp.hpcp
  tonal.key_key: {from: key.key, single: true}
  tonal.key_strength: {from: key.strength, single: true}
  tonal.thpcp: {from: thpcp.thpcp, single: true}
  tonal.tuning_frequency: {from: tf.value, single: true}
  tonal.centroid: {from: centroid.centroid, stats: [mean, max, dmean], empty: 0.0}
"""
CHILD_RHYTHM = "name: child_rhythm\nextends: rhythm\n"
CHILD_LOWLEVEL = "name: child_lowlevel\nextends: lowlevel\n"

TAKES = ["all", "first", "last", "mean", "median", "count"]
INTEGERS = [-5, 0, 1, 2, 7, 64, 1024, 4096, 2 ** 31, 10 ** 12]
REALS = [-1.0, 0.0, 1e-9, 0.5, 3.0, 440.0, 44100.0, 1e39, math.nan]
WORDS = ["hann", "degara", "mean", "x", "", "multifeature", "${frame}"]


class Mutator:
    """Random changes to one profile document (plain data), each recorded for the report."""

    def __init__(self, rng: random.Random, doc: dict[str, Any], child: bool) -> None:
        self.rng = rng
        self.doc = doc
        self.child = child  # a child profile: changes go into overrides of the inherited graph
        self.done: list[str] = []

    # -- what the mutants can refer to --------------------------------------------------------
    def graph(self) -> dict[str, Any]:
        return self.doc.setdefault("graph", {})

    def inherited(self) -> dict[str, Any]:
        """The graph the mutations see: the profile's own, or the built-in it extends."""
        if not self.child:
            return self.graph()
        from runner.profile import load_profile

        return load_profile(self.doc["extends"]).data.get("graph", {})

    def outputs(self) -> list[str]:
        wires = ["audio.signal", "audio.sample_rate", "audio.md5", "audio.channels"]
        for nid, spec in self.inherited().items():
            if isinstance(spec, dict) and spec.get("algorithm"):
                try:
                    outs = registry.info(spec["algorithm"]).outputs
                except Exception:
                    continue
                wires += [f"{nid}.{out}" for out in outs]
            elif isinstance(spec, dict) and spec.get("function"):
                from runner import derive

                fn = derive.FUNCTIONS.get(spec["function"])
                wires += [f"{nid}.{out}" for out in (fn.outputs if fn else ())]
        return wires

    def value_for(self, param: registry.Param | None) -> Any:
        rng = self.rng
        kind = param.type if param else rng.choice(["integer", "real", "string", "bool"])
        if param and param.range and param.range.startswith("{") and rng.random() < 0.5:
            return rng.choice([c.strip() for c in param.range[1:-1].split(",")])
        if kind == "integer":
            return rng.choice(INTEGERS + ["${frame} / 0", "${frame} ** 99", "12"])
        if kind == "real":
            return rng.choice(REALS + ["${frame} * 0.5", "-1e400"])
        if kind == "bool":
            return rng.choice([True, False, "yes", 1])
        if kind.startswith("vector_"):
            return rng.choice([[], [1.0], [0.1, 0.5, 0.9], ["a"], 3.0])
        return rng.choice(WORDS)

    # -- mutations --------------------------------------------------------------------------------
    def node_params(self, nid: str) -> dict[str, Any]:
        """Where a node's parameters are changed: its spec, or an override of the inherited one."""
        if self.child:
            override = self.graph().setdefault(nid, {})
            if override is None:  # dropped by an earlier mutation: change a scratch copy
                return {}
            return override.setdefault("params", {})
        return self.graph()[nid].setdefault("params", {})

    def random_node(self, algorithms_only: bool = False) -> tuple[str, dict[str, Any]] | None:
        nodes = [(n, s) for n, s in self.inherited().items() if isinstance(s, dict)
                 and (s.get("algorithm") or not algorithms_only)]
        return self.rng.choice(nodes) if nodes else None

    def param_value(self) -> None:
        picked = self.random_node(algorithms_only=True)
        if picked is None:
            return
        nid, spec = picked
        try:
            params = registry.info(spec["algorithm"]).params
        except Exception:
            return
        if not params:
            return
        name = self.rng.choice(sorted(params))
        value = self.value_for(params[name])
        self.node_params(nid)[name] = value
        self.done.append(f"graph.{nid}.params.{name} = {value!r}")

    def param_reference(self) -> None:
        picked = self.random_node(algorithms_only=True)
        if picked is None:
            return
        nid, spec = picked
        try:
            params = registry.info(spec["algorithm"]).params
        except Exception:
            return
        if not params:
            return
        name = self.rng.choice(sorted(params))
        ref = {"from": self.rng.choice(self.outputs()), "take": self.rng.choice(TAKES)}
        self.node_params(nid)[name] = ref
        self.done.append(f"graph.{nid}.params.{name} = {ref}")

    def rewire(self) -> None:
        picked = self.random_node()
        if picked is None:
            return
        nid, spec = picked
        inputs = spec.get("inputs") or {}
        if not inputs:
            return
        port = self.rng.choice(sorted(inputs))
        wire: Any = self.rng.choice(self.outputs())
        if self.rng.random() < 0.4:
            wire = {"from": wire, "take": self.rng.choice(TAKES)}
        if self.child:
            override = self.graph().setdefault(nid, {})
            if override is None:
                return
            override.setdefault("inputs", {})[port] = wire
        else:
            spec["inputs"][port] = wire
        self.done.append(f"graph.{nid}.inputs.{port} = {wire}")

    def drop_node(self) -> None:
        picked = self.random_node()
        if picked is None:
            return
        nid, _ = picked
        if self.child:
            self.graph()[nid] = None  # null: the node and what depends on it go
        else:
            del self.graph()[nid]
        self.done.append(f"graph.{nid} dropped")

    def rename(self) -> None:
        section = self.rng.choice(["graph", "descriptors", "params"])
        if section == "params":
            picked = self.random_node(algorithms_only=True)
            params = self.node_params(picked[0]) if picked else {}
            if not params:
                return
            old = self.rng.choice(sorted(params))
            params[old[:-1] + old[-1].swapcase() + "x"] = params.pop(old)
            self.done.append(f"graph.{picked[0]}.params.{old} renamed")
            return
        mapping = self.doc.get(section) or {}
        if not mapping or self.child:
            return
        old = self.rng.choice(sorted(mapping))
        other = self.rng.choice(sorted(mapping))
        new = self.rng.choice([old + "_2", other + ".x", old.upper(), other])
        mapping[new] = mapping.pop(old)
        self.done.append(f"{section}.{old} renamed to {new}")

    def descriptor(self) -> None:
        descriptors = self.doc.setdefault("descriptors", {})
        name = self.rng.choice(sorted(descriptors) or ["lowlevel.added"])
        spec = descriptors.get(name) or self.rng.choice(self.outputs())
        if isinstance(spec, str):
            spec = {"from": spec}
        choice = self.rng.random()
        if choice < 0.3:
            spec["single"] = not spec.get("single", False)
        elif choice < 0.55:
            spec["stats"] = self.rng.sample(["mean", "var", "cov", "icov", "copy", "last",
                                             "value", "median", "dmean"], self.rng.randint(1, 3))
        elif choice < 0.75:
            spec["empty"] = self.rng.choice([0.0, [0.0, 1.0], "none", True])
        else:
            spec["from"] = self.rng.choice(self.outputs())
        if "from" not in spec:
            spec["from"] = self.rng.choice(self.outputs())
        descriptors[name] = spec
        self.done.append(f"descriptors.{name} = {spec}")

    def audio(self) -> None:
        key = self.rng.choice(["sample_rate", "start_time", "end_time", "downmix"])
        value = {"sample_rate": [8000, 22050, 48000, 500, 1e7, "44100"],
                 "start_time": [0, 0.5, 2.5, 10, -1], "end_time": [1.0, 2.0, 0.1, 1e6, None],
                 "downmix": ["left", "right", "mix"]}[key]
        chosen = self.rng.choice(value)
        self.doc.setdefault("audio", {})[key] = chosen
        self.done.append(f"audio.{key} = {chosen!r}")

    def option(self) -> None:
        options = self.doc.setdefault("options", {})
        if self.child:
            from runner.profile import load_profile

            options_known = load_profile(self.doc["extends"]).data.get("options", {})
        else:
            options_known = dict(options)
        if not options_known:
            return
        name = self.rng.choice(sorted(options_known))
        value = self.value_for(None) if self.rng.random() < 0.7 else self.rng.choice(
            [f"${{{name}}} * 2", "${frame} / 0", 2048, 1024, 0])
        options[name] = value
        self.done.append(f"options.{name} = {value!r}")

    def mutate(self) -> None:
        actions = [self.param_value, self.param_value, self.param_reference, self.rewire,
                   self.rewire, self.drop_node, self.rename, self.descriptor, self.descriptor,
                   self.audio, self.option]
        for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
            self.rng.choice(actions)()


# A child process that runs command lines on request, each in a fork of itself: a crash or
# Essentia's per-network memory stays in the fork, and nothing is forked from the test
# process (whose earlier tests may have left threads behind).
FORK_SERVER = r"""
import contextlib, io, json, os, resource, signal, sys, traceback
from runner import cli, registry
registry.algorithm_names()  # Essentia imported once, before any fork
for line in sys.stdin:
    argv = json.loads(line)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # stderr (Python's and C's) goes to the pipe
        os.close(read)
        os.dup2(write, 2)
        # a mutant that grew without bound would take the machine with it: 3 GB more than
        # the process has, 120 s (either ends the fork, which the test reports)
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + 3 * 2 ** 30, resource.RLIM_INFINITY))
        signal.alarm(120)
        sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), write_through=True)
        code = 99
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                code = cli.main(argv)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 98)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        err = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    print(json.dumps([os.waitstatus_to_exitcode(status), err]), flush=True)
"""


class ForkServer:
    """Runs ``extractor`` command lines (runner.cli.main) in forks of one child process."""

    def __init__(self) -> None:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self.process = subprocess.Popen([sys.executable, "-c", FORK_SERVER], text=True, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, argv: list[str]) -> tuple[int, str]:
        """(exit code, or -signal; stderr) of one command line."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(argv) + "\n")
        self.process.stdin.flush()
        code, err = json.loads(self.process.stdout.readline())
        return code, err

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


def clean_failure(text: str) -> bool:
    """One line saying what is wrong, nothing internal."""
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    return (len(errors) == 1 and "internal error" not in text and "Traceback" not in text)


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("mutations")
    return [write_audio(folder / "clicks.wav", click_track(2.5)),
            write_audio(folder / "piano.wav", piano_clip(2.0))]


@pytest.mark.slow
def test_mutated_profiles_validate_or_run_cleanly(tmp_path, audio_files, capsys):
    bases = [
        (yaml.safe_load(MINI.read_text()), False),
        (yaml.safe_load(TONAL), False),
        (yaml.safe_load(CHILD_RHYTHM), True),
        (yaml.safe_load(CHILD_LOWLEVEL), True),
    ]
    tally = {"refused": 0, "ran": 0, "failed cleanly": 0, "refused at run": 0}
    problems = []
    server = ForkServer()
    for index in range(MUTANTS):
        rng = random.Random(f"{SEED}-{index}")
        base, child = bases[index % len(bases)]
        mutant = Mutator(rng, copy.deepcopy(base), child)
        mutant.mutate()
        path = tmp_path / f"mutant{index}.yaml"
        path.write_text(yaml.safe_dump(mutant.doc, sort_keys=False))
        label = f"seed {SEED}, mutant {index} ({base.get('name')}): {'; '.join(mutant.done)}"
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["validate", str(path)])
        err = capsys.readouterr().err
        if code == 2 and clean_failure(err):
            tally["refused"] += 1
            continue
        if code != 0:
            problems.append(f"{label}\n  validate exit {code}: {err.strip()[-500:]}")
            continue
        audio = audio_files[index % len(audio_files)]
        out = tmp_path / f"mutant{index}.json"
        code, err = server.run(["run", str(path), str(audio), str(out)])
        if code == 0 and "internal error" not in err and "Traceback" not in err:
            json.loads(out.read_text())
            tally["ran"] += 1
        elif code in (1, 2) and clean_failure(err):
            tally["failed cleanly" if code == 1 else "refused at run"] += 1
        else:
            problems.append(f"{label}\n  run exit {code}: {err.strip()[-800:]}")
    server.close()
    assert not problems, "\n".join(problems[:10]) + f"\n({len(problems)} problems; {tally})"
    # not vacuous: many mutants are refused, and many still run to the end
    assert tally["refused"] >= MUTANTS // 5 and tally["ran"] >= MUTANTS // 5, tally
    print(f"mutations (seed {SEED}): {tally}")
