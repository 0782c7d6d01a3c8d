"""The model rooms kept apart: running (runner.models: the stage and one runner per family),
supplying (runner.models.supply) and converting (runner.models.convert, never imported by a
run); and a new family of models added as one runner and one lock-entry kind."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runner import cli
from runner.errors import ModelError
from runner.models import family
from runner.models.family import AudioAt, ModelResults
from runner.models.supply import cache, lock
from tests.conftest import tone, write_audio

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Every module a file imports (at the top or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _importers(prefix: str, among: str = "runner") -> list[str]:
    """The files under ``among`` (relative to the repository) that import ``prefix``."""
    found = []
    for path in sorted((ROOT / among).rglob("*.py")):
        if any(name == prefix or name.startswith(prefix + ".") for name in _imports(path)):
            found.append(str(path.relative_to(ROOT)))
    return found


def test_nothing_outside_the_conversion_tools_imports_them() -> None:
    """The musicnn conversion needs TensorFlow, which kills a process that has essentia: it
    is run as a command (runner.models.supply.fetch.CONVERTERS), never imported."""
    outside = [p for p in _importers("runner.models.convert")
               if not p.startswith("runner/models/convert/")]
    assert outside == []


def test_supply_and_compile_import_nothing_that_runs_a_model() -> None:
    """The lock file and the cache are read by the compiler, the output schema and
    `extractor models`: supplying a model never pulls in running one."""
    running = [p for p in _importers("runner.models", "runner/models/supply")
               if not all(n.startswith("runner.models.supply") or not n.startswith("runner.models")
                          for n in _imports(ROOT / p))]
    assert running == []
    compile_side = sorted({n for p in (ROOT / "runner" / "compile").glob("*.py")
                           for n in _imports(p) if n.startswith("runner.models")})
    assert all(n.startswith("runner.models.supply") for n in compile_side), compile_side


def test_running_a_profile_imports_no_conversion_tensorflow_or_torch() -> None:
    code = ("import sys, runner.cli, runner.extract, runner.models.stage, "
            "runner.models.tf_family, runner.models.clap_family; "
            "print(sorted(m for m in sys.modules if m.startswith('runner.models.convert') "
            "or m.split('.')[0] in ('tensorflow', 'torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_a_lock_entry_of_a_kind_no_family_runs_is_one_line() -> None:
    model = lock.parse({"format": 1, "models": {"odd": {"kind": "onnx", "files": []}}})["odd"]
    with pytest.raises(ModelError) as err:
        family.factory_for(model)
    assert str(err.value) == ("model 'odd' is a 'onnx' model, which no model family runs "
                              f"(kinds: {', '.join(family.FAMILIES)})")


class LoudnessRunner:
    """A family of its own for the test: a pinned JSON file of gains, one RMS per output."""

    def __init__(self, config) -> None:
        self.config = config
        self.outputs: list[tuple[str, lock.Model, cache.State]] = []
        self.gains: list[float] = []

    def add(self, output, model: lock.Model) -> dict[str, dict[str, str]]:
        state = cache.require(model)  # cache.MissingModel: the stage may leave it out
        self.outputs.append((output.name, model, state))
        return {model.id: state.pins()}

    def load(self) -> None:
        self.gains = [json.loads(state.path("gain.json").read_text())["gain"]
                      for _, _, state in self.outputs]

    def run(self, audio: AudioAt, results: ModelResults) -> None:
        signal = audio(8000.0)
        for (name, model, _), gain in zip(self.outputs, self.gains, strict=True):
            rms = float(np.sqrt(np.mean(np.square(signal, dtype=np.float64))))
            results.descriptors[f"{self.config.section}.{name}"] = [gain * rms, float(len(signal))]
            results.used[model.id] = family.used_pin(model)


@pytest.fixture
def loudness_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The family registered for kind ``toy-loudness``, a lock file with one such model,
    and that model in a model cache."""
    monkeypatch.setitem(family.FAMILIES, "toy-loudness", LoudnessRunner)
    weights = tmp_path / "gain.json"
    weights.write_text('{"gain": 2.0}')
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    entry = {"kind": "toy-loudness", "description": "RMS times a gain (test)", "license": "test",
             "groups": ["toy"], "files": [{"name": "gain.json", "url": weights.as_uri(),
                                           "sha256": digest, "size": weights.stat().st_size}]}
    lock_file = tmp_path / "toy.lock.json"
    gone = {**entry, "files": [{**entry["files"][0], "sha256": "0" * 64}]}  # never fetched
    lock_file.write_text(json.dumps({"format": 1, "models": {"toy-rms": entry, "toy-gone": gone}}))
    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", str(lock_file))
    models = tmp_path / "models"
    monkeypatch.setenv("EXTRACTOR_MODELS", str(models))
    (models / "toy-rms").mkdir(parents=True)
    (models / "toy-rms" / "gain.json").write_bytes(weights.read_bytes())
    return models


PROFILE = """
name: toy_loudness
description: a model family registered by a test
audio: {sample_rate: 44100}
models:
  section: toy
  missing: skip
  outputs:
    loud: toy-rms
"""


def test_a_new_family_is_one_runner_and_one_lock_kind(loudness_family: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    wav = write_audio(tmp_path / "a.wav", tone(2.0, amp=0.5))
    profile = tmp_path / "toy.yaml"
    profile.write_text(PROFILE)
    out = tmp_path / "a.json"
    assert cli.main(["run", str(profile), str(wav), str(out), "--quiet"]) == 0, capsys.readouterr()
    doc = json.loads(out.read_text())
    gain_times_rms, samples = doc["toy"]["loud"]
    assert abs(samples - 16000) <= 1  # 2 s at the rate the runner asked for (resampled)
    assert gain_times_rms == pytest.approx(2.0 * 0.5 / np.sqrt(2), rel=2e-2)
    pin = lock.get("toy-rms").files[0].sha256
    assert doc["metadata"]["models"] == {"used": {"toy-rms": pin}, "missing": [], "left_out": []}


def test_a_new_family_leaves_out_what_is_not_in_the_cache(
        loudness_family: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``missing: skip`` works for any family: the stage, not the runner, decides."""
    wav = write_audio(tmp_path / "a.wav", tone(1.0))
    profile = tmp_path / "toy.yaml"
    profile.write_text(PROFILE + "    gone: toy-gone\n")
    out = tmp_path / "a.json"
    assert cli.main(["run", str(profile), str(wav), str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: toy: 1 of 2 outputs left out (gone), their models are not in the model cache" in err
    doc = json.loads(out.read_text())
    assert list(doc["toy"]) == ["loud"]
    assert doc["metadata"]["models"]["missing"] == ["toy-gone"]
    assert doc["metadata"]["models"]["left_out"] == ["gone"]


def test_every_conversion_tool_is_a_module_the_fetch_and_nix_both_run() -> None:
    from runner.models.supply.fetch import CONVERTERS

    tools = {m.convert["tool"] for m in lock.models().values() if m.source}
    assert tools and tools <= set(CONVERTERS)
    nix = (ROOT / "nix" / "models.nix").read_text(encoding="utf-8")
    for tool in tools:
        module = CONVERTERS[tool]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
        assert f"{tool} =" in nix and f'"{module}"' in nix, (tool, module)
