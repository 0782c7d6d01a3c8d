"""The Nix flake's sources agree, checked without Nix (tests/nix/check.sh adds Nix's side).

The flake generates its apps from pyproject.toml and its model packages from models.lock.json;
these tests keep those files consistent with profiles/ and with each other, and check that the
non-editable install the flake builds carries every runner package and data file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from runner.models.supply import lock as runner_lock

tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads pyproject.toml")
from tests.nix import consistency  # noqa: E402  (needs tomllib)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the files the checks read, safe to break."""
    for name in ("pyproject.toml", "models.lock.json", "nix/wheels.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    return tmp_path


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_apps_match_console_scripts_and_builtin_profiles():
    errors, notes = consistency.check_apps(set(consistency.expected_apps()))
    assert errors == [] and notes == []


def test_every_builtin_profile_has_a_command():
    apps = set(consistency.expected_apps())
    for profile in consistency.builtin_profiles():
        assert apps & set(consistency.profile_apps(profile)), profile


def test_a_profile_without_an_app_is_reported(repo):
    (repo / "profiles" / "foo_bar.yaml").write_text("name: foo\n")
    errors, _ = consistency.check_apps(set(consistency.expected_apps(repo)), repo)
    assert errors == ["built-in profile profiles/foo_bar.yaml has no app (expected one of "
                      "streaming-extractor-foo-bar, music-foo_bar)"]


def test_apps_and_scripts_missing_on_either_side_are_named(repo):
    apps = set(consistency.expected_apps(repo)) - {"streaming-extractor-beats"} | {"surprise"}
    errors, _ = consistency.check_apps(apps, repo)
    assert "console scripts without a flake app: streaming-extractor-beats" in errors
    assert "flake apps without a console script in pyproject.toml: surprise" in errors
    assert ("built-in profile profiles/beats.yaml has no app (expected one of "
            "streaming-extractor-beats, music-beats)") in errors


def test_a_command_in_pyproject_needs_its_profile(repo):
    assert consistency.check_apps(set(consistency.expected_apps(repo)), repo)[0] == []
    (repo / "profiles" / "highlevel.yaml").unlink()
    errors, _ = consistency.check_apps(set(consistency.expected_apps(repo)), repo)
    assert errors == ["app music-highlevel runs no built-in profile (no profiles/<name>.yaml for it)"]


def test_underscore_scripts_have_hyphenated_twins():
    """Essentia's spelling runs the same command, in its Essentia convention where it has one
    (exit codes, OUT_frames: runner.cli.essentia_*)."""
    scripts = consistency.console_scripts()
    for name, target in scripts.items():
        if "_" in name:
            module, _, function = scripts[consistency.essentia_twin(name)].partition(":")
            assert target in (f"{module}:{function}", f"{module}:essentia_{function}"), name
    assert scripts["streaming_extractor_music"] == "runner.cli:essentia_music"
    assert scripts["essentia_streaming_extractor_freesound"] == (
        "runner.cli:essentia_freesound_general")


def test_lock_pins_are_well_formed():
    assert consistency.check_lock() == []
    assert consistency.check_wheels() == []


def test_lock_checks_agree_with_the_runner():
    data = json.loads((ROOT / "models.lock.json").read_text())
    assert set(runner_lock.parse(data)) == set(consistency.lock_pins(data))


PLAIN = {"name": "m.pb", "url": "https://example.org/m.pb", "sha256": "ab" * 32, "size": 3}


def test_a_malformed_pin_is_reported(repo):
    lock = {"format": 1, "models": {
        "ok": {"groups": ["highlevel"], "files": [PLAIN, dict(PLAIN, name="m.json", size=None)]},
        "bad": {"groups": ["highlevel"], "files": [
            dict(PLAIN, sha256="AB" * 32, size="3"), dict(PLAIN, url="http://example.org/x")]},
        "half": {"groups": [], "source": PLAIN, "graph": "h.pb"},
    }}
    (repo / "models.lock.json").write_text(json.dumps(lock))
    assert consistency.check_lock(repo) == [
        f"models.lock.json: models.bad.files[0]: sha256 {'AB' * 32!r} is not 64 lowercase hex "
        "digits",
        "models.lock.json: models.bad.files[0]: size '3' is not a positive integer",
        "models.lock.json: models.bad.files[1]: url 'http://example.org/x' is not https",
        "models.lock.json: models.half: groups must be a non-empty list of names",
        "models.lock.json: models.half: 'source' and 'convert' go together",
        "models.lock.json: models.half: a converted model names its metadata file",
        "models.lock.json: models.half: convert.tool is missing",
    ]


REBUILT = {"note": "assembled from a sibling's JSON", "sources": ["https://github.com/o/r/blob/0/s"]}


def test_metadata_is_a_pinned_file_or_inline_with_its_source(repo):
    inline = {"inference": {"algorithm": "TensorflowPredict2D"}}
    lock = {"format": 1, "models": {
        "file": {"groups": ["g"], "files": [PLAIN], "metadata": "m.json"},
        "inline": {"groups": ["g"], "files": [PLAIN], "metadata": inline,
                   "metadata_source": "https://github.com/o/r/blob/0/m.json"},
        "unsourced": {"groups": ["g"], "files": [PLAIN], "metadata": inline},
        "rebuilt": {"groups": ["g"], "files": [PLAIN], "metadata": inline,
                    "metadata_reconstructed": REBUILT},
        "both": {"groups": ["g"], "files": [PLAIN], "metadata": inline,
                 "metadata_source": "https://github.com/o/r/blob/0/m.json",
                 "metadata_reconstructed": REBUILT},
        "noteless": {"groups": ["g"], "files": [PLAIN], "metadata": inline,
                     "metadata_reconstructed": dict(REBUILT, note="")},
        "unsourced_rebuild": {"groups": ["g"], "files": [PLAIN], "metadata": inline,
                              "metadata_reconstructed": dict(REBUILT, sources=["a sibling"])},
        "shapeless": {"groups": ["g"], "files": [PLAIN], "metadata": inline,
                      "metadata_reconstructed": "from a sibling"},
    }}
    (repo / "models.lock.json").write_text(json.dumps(lock))
    at = "models.lock.json: models."
    assert consistency.check_lock(repo) == [
        f"{at}file: metadata 'm.json' is not among its files",
        f"{at}unsourced: inline metadata without a metadata_source",
        f"{at}both: inline metadata with both a metadata_source and metadata_reconstructed",
        f"{at}noteless: metadata_reconstructed without a note",
        f"{at}unsourced_rebuild: metadata_reconstructed.sources is not a list of https addresses",
        f"{at}shapeless: metadata_reconstructed is not an object of 'note' and 'sources'",
    ]


def test_the_essentia_wheel_is_the_required_version(repo):
    edit_json(repo / "nix" / "wheels.json",
              lambda w: w["essentia-tensorflow"].update(version="2.1b6.dev1"))
    errors = consistency.check_wheels(repo)
    assert errors[0] == ("nix/wheels.json: essentia-tensorflow 2.1b6.dev1 but pyproject.toml "
                         "requires ['2.1b6.dev1389']")


def show_derivation(pins: list[dict]) -> dict:
    """What `nix show-derivation -r` prints for a model: its downloads and one build."""
    drvs = {f"/nix/store/{i}-{p['name']}.drv": {
        "outputs": {"out": {"path": "/nix/store/x", "hashAlgo": "sha256", "hash": p["sha256"]}},
        "env": {"name": p["name"]}} for i, p in enumerate(pins)}
    drvs["/nix/store/b-model.drv"] = {"outputs": {"out": {"path": "/nix/store/y"}}, "env": {}}
    return drvs


def test_the_nix_packages_hold_the_train_extra(repo):
    """`extractor train` in the `train`/`full` packages, its models' runtime in every package."""
    assert consistency.check_train_deps(ROOT) == []
    (repo / "nix").mkdir(exist_ok=True)
    text = (ROOT / "nix" / "python.nix").read_text()
    (repo / "nix" / "python.nix").write_text(text.replace("    ps.skl2onnx\n", "", 1)
                                             .replace("    ps.onnxruntime\n", "", 1))
    assert consistency.check_train_deps(repo) == [
        "nix/python.nix: trainDeps lacks ps.skl2onnx (pyproject.toml's `train` extra needs it)",
        "nix/python.nix: runnerDeps lacks ps.onnxruntime (pyproject.toml's `train` extra needs it)",
    ]


def test_model_derivations_must_fetch_their_pins():
    lock = json.loads((ROOT / "models.lock.json").read_text())
    pins = consistency.lock_pins(lock)
    good = {model_id: show_derivation(p) for model_id, p in pins.items()}
    assert consistency.check_model_derivations(good) == []

    model_id = next(iter(pins))
    wrong = dict(good, **{model_id: show_derivation([dict(pins[model_id][0], sha256="0" * 64)])})
    pin = pins[model_id][0]
    assert consistency.check_model_derivations(wrong) == [
        f"model-{model_id}: no fixed-output download of {pin['name']} with sha256 {pin['sha256']}"]
    missing = {k: v for k, v in good.items() if k != model_id}
    assert consistency.check_model_derivations(missing) == [
        f"models without a model-<id> package: {model_id}"]
    # a model an installed package carries (package: urls) needs no package of its own
    carried = {k: v for k, v in good.items() if k != "madmom-downbeats"}
    assert "madmom-downbeats" in good
    assert consistency.check_model_derivations(carried) == []


def test_the_installed_package_carries_every_runner_package_and_data_file():
    """The flake builds a wheel (not an editable install): nothing may be left behind."""
    with open(ROOT / "pyproject.toml", "rb") as handle:
        setuptools = tomllib.load(handle)["tool"]["setuptools"]
    packages = {".".join(p.relative_to(ROOT).parent.parts)
                for p in (ROOT / "runner").rglob("__init__.py")}
    assert packages <= set(setuptools["packages"])
    data = setuptools["package-data"]["runner"]
    for link in (ROOT / "runner").iterdir():
        if link.is_symlink():
            assert any(pattern.split("/")[0] == link.name for pattern in data), link.name


def test_ci_runs_the_nix_check_before_the_readme_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    nix = [i for i, line in enumerate(ci) if "tests/nix/check.sh" in line]
    assert nix and nix[0] < len(ci) - 1
    assert ci[-1].startswith("python3.11 -m venv .venv")


def test_a_model_converted_by_nix_is_accepted_by_the_runner(tmp_path):
    """nix/models.nix writes the manifest with nix/write_manifest.py; the runner must take it."""
    import importlib.util

    from runner.models.supply import cache

    spec = importlib.util.spec_from_file_location("write_manifest", ROOT / "nix" / "write_manifest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = next(m for m in runner_lock.models().values() if m.source)
    folder = tmp_path / model.id
    folder.mkdir()
    for name in model.outputs:
        (folder / name).write_bytes(name.encode())
    module.write_manifest(folder, model.source.sha256, list(model.outputs))
    assert cache.check_folder(model, folder).state == cache.PRESENT
    module.write_manifest(folder, "0" * 64, list(model.outputs))  # another source's conversion
    assert cache.check_folder(model, folder).state == cache.MISMATCH


def _flake_value(name: str) -> str:
    """A let binding of flake.nix, as written there (the check reads what Nix evaluates)."""
    found = re.search(rf"\n\s*{name} = ((?:\"[^\"]*\")|(?:\{{[^}}]*\}}));",
                      (ROOT / "flake.nix").read_text())
    assert found, name
    return found.group(1)


def test_apps_depend_on_the_default_model_group_only():
    groups = set(re.findall(r'"([^"]+)"', _flake_value("appModelGroups")))
    assert groups == {"default"}
    lock = json.loads((ROOT / "models.lock.json").read_text())["models"]
    default = sorted(m for m, e in lock.items() if "default" in e["groups"])
    assert consistency.check_app_models({"music-highlevel": default, "extractor": default,
                                         "music-clap": []}) == []
    assert consistency.check_app_models({"music-highlevel": default + ["msd-musicnn-1"]}) == [
        "app music-highlevel depends on models outside the 'default' group: msd-musicnn-1",
        f"app music-highlevel holds {default + ['msd-musicnn-1']}, not the 'default' group "
        f"{default}"]
    closure = {"/nix/store/a.drv": {"env": {"name": "extractor-model-musicnn-msd"}},
               "/nix/store/b.drv": {"env": {"name": "extractor-models-default"}},
               "/nix/store/c.drv": {"env": {"name": "msd-musicnn-1.pb"}}}
    assert consistency.app_models({"x": closure}) == {"x": ["musicnn-msd"]}


def test_the_nix_tests_check_leaves_out_network_and_tensorflow_tests():
    """pyproject.toml registers the markers; flake.nix's selection leaves out each of them but
    `slow` (which the sandbox can run), and the README's test command still runs them all."""
    assert {"slow", "network", "tensorflow"} <= set(consistency.registered_markers())
    selection = json.loads(_flake_value("nixTestSelection"))
    command = f"python -m pytest -q -p no:cacheprovider -m '{selection}'"
    assert consistency.check_test_selection(command) == []
    assert consistency.check_test_selection("python -m pytest -q") == [
        "checks.tests: its pytest command has no -m '...' selection"]
    assert consistency.check_test_selection("python -m pytest -m 'not network and not gpu'") == [
        "checks.tests: -m 'not network and not gpu' does not leave out the 'tensorflow' tests",
        "checks.tests: -m 'not network and not gpu' names markers pyproject.toml does not "
        "register: gpu"]
    readme = (ROOT / "README.md").read_text()
    assert "&& .venv/bin/python -m pytest -q\n" in readme  # the set-up command: every test


def test_the_packaged_data_are_links_to_the_top_level_files():
    """runner/ ships profiles, schemas and the lock file as links to the top-level ones: a copy
    (e.g. left by `sed -i`, which replaces a link with a file) would drift from what Nix and
    the docs read."""
    for name in ("profiles", "schemas", "models.lock.json"):
        link = ROOT / "runner" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve(), link
