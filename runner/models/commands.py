"""`extractor models list|fetch|verify|add`: the model cache as a person sees it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runner.errors import ModelError
from runner.models.supply import cache, lock


def _size(model: lock.Model) -> str:
    pins = [model.source] if model.source else list(model.files)
    if any(p is None or p.size is None for p in pins):
        return "?"
    total = sum(p.size or 0 for p in pins if p is not None)
    return f"{total / 1e6:.1f} MB"


def list_models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    chosen = lock.select(args.models) if args.models else list(lock.models().values())
    table = Table("model", "state", "size", "groups", "licence", "fetched from", "where",
                  title=f"models (cache: {cache.user_cache()})")
    styles = {cache.PRESENT: "green", cache.MISMATCH: "bold red", cache.MISSING: "yellow"}
    for model in chosen:
        state = cache.locate(model)
        label = "present, verified" if state.ok else state.state
        table.add_row(model.id, f"[{styles[state.state]}]{label}[/]", _size(model),
                      ",".join(model.groups), model.license, lock.origin(model),
                      str(state.folder or ""))
    # piped (grep, less): no terminal width to fit, so no model id or licence is cut short
    Console(width=None if sys.stdout.isatty() else 250).print(table)
    return 0


def verify(args: argparse.Namespace) -> int:
    """Hash every present model again; exit 1 when any copy does not match its pin."""
    chosen = lock.select(args.models) if args.models else list(lock.models().values())
    bad = 0
    for model in chosen:
        state = cache.locate(model)
        if state.state == cache.MISSING:
            if args.models:
                print(f"{model.id}: missing; {lock.fetch_hint([model.id])}", file=sys.stderr)
                bad += 1
            continue
        if state.ok:
            print(f"{model.id}: ok ({state.folder})")
        else:
            print(f"{model.id}: {state.detail}; re-fetch with: extractor models fetch "
                  f"{model.id}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


def fetch(args: argparse.Namespace) -> int:
    """Download (and convert) the named models or groups, and the embedding models heads need."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from runner.models.supply import fetch as fetching

    chosen = lock.select(args.models)
    table = lock.models()
    for model in list(chosen):  # a head needs its embedding model (or one that provides it)
        if model.embedding and not any(
            m.id == model.embedding or model.embedding in m.provides for m in chosen
        ):
            chosen.append(table[model.embedding] if model.embedding in table else
                          next(m for m in table.values() if model.embedding in m.provides))
        if model.tokenizer and model.tokenizer not in [m.id for m in chosen]:
            chosen.append(table[model.tokenizer])  # CLAP: the text side's files
    failed = 0
    quiet = args.quiet or not sys.stderr.isatty()
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  disable=quiet, transient=True) as bars:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bars.add_task(name, total=total)
            bars.update(tasks[name], completed=done)

        unreachable: dict[str, tuple[str, list[str]]] = {}  # host -> (reason, models)
        for model in chosen:
            host = lock.origin(model)
            if host in unreachable and not (cache.locate(model).ok and not args.force):
                unreachable[host][1].append(model.id)  # one line for them all, below
                continue
            try:
                folder = fetching.fetch(model, force=args.force, progress=progress)
            except fetching.Unreachable as exc:
                unreachable[exc.host] = (exc.reason, [model.id])
                continue
            except ModelError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failed += 1
                continue
            print(f"{model.id}: ok ({folder})", file=sys.stderr)
    for host, (reason, ids) in unreachable.items():  # offline: one line per host, not per file
        print(f"error: {host} cannot be reached ({reason}); not fetched: {', '.join(ids)} "
              f"({len(ids)} of them: fetching them needs internet access to {host})",
              file=sys.stderr)
        failed += len(ids)
    return 1 if failed else 0


def _add(args: argparse.Namespace) -> int:
    from runner.training.commands import models_add

    folder = Path(args.model_dir)
    weights = ("model.safetensors", "pytorch_model.bin")
    if (folder / "config.json").is_file() and any((folder / n).is_file() for n in weights):
        return add_hub_model(folder.resolve(), args.name, args.license)
    return models_add(args)


def _hub_entry(folder: Path) -> tuple[str, str, list[Path]]:
    """(architecture, lock-entry kind, the files to pin) of a hub model folder, checked:
    transformers' classes from safetensors only; MERT (runner.models.mert) also from
    pytorch_model.bin, its config checked against what runner.models.mert implements."""
    import json

    from runner.models import mert
    from runner.models.hub_audio import ARCHITECTURES, CONFIG, PREPROCESSOR, WEIGHTS

    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        architecture = str((config.get("architectures") or [""])[0])
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ModelError(f"{folder / CONFIG}: not a transformers config ({exc})") from None
    if architecture == mert.ARCHITECTURE:
        mert.check_config(config, str(folder / CONFIG))
        weights = next(n for n in mert.WEIGHT_FILES if (folder / n).is_file())
        return architecture, "mert", [folder / n for n in (CONFIG, PREPROCESSOR, weights)
                                      if (folder / n).is_file()]
    if architecture not in ARCHITECTURES:
        raise ModelError(f"{folder / CONFIG}: architecture '{architecture}' is not one of "
                         f"{', '.join((*ARCHITECTURES, mert.ARCHITECTURE))}")
    if not (folder / WEIGHTS).is_file():
        raise ModelError(f"{folder}: {architecture} weights are read from {WEIGHTS} only "
                         "(never from a pickle)")
    return architecture, "transformers-audio", [
        folder / n for n in (CONFIG, PREPROCESSOR, WEIGHTS) if (folder / n).is_file()]


def add_hub_model(folder: Path, name: str | None, license_: str | None) -> int:
    """Register a Hugging Face audio model folder (config.json and model.safetensors, an
    AST's preprocessor_config.json; MERT: config.json, preprocessor_config.json and
    model.safetensors or pytorch_model.bin) in the user's lock file as a
    ``transformers-audio`` (or ``mert``) model, pinned by the sha256 of these files, and copy
    them into the model cache. Compare the printed sha256 with the oid on the hub's file page
    before trusting the files."""
    import shutil

    from runner.models.hub_audio import UNPINNED

    architecture, kind, paths = _hub_entry(folder)
    model_id = name or folder.name
    files = [{"name": p.name, "url": p.as_uri(), "sha256": cache.sha256_of(p),
              "size": p.stat().st_size} for p in paths]
    known = UNPINNED.get(model_id)
    entry = {"description": f"{architecture} from {folder} (extractor models add)",
             "license": license_ or (known.license if known else
                                     "unknown: see the model's page"),
             "kind": kind, "groups": ["embeddings"], "files": files,
             "architecture": architecture}
    lock_path = lock.add_user_model(model_id, entry)
    target = cache.writable_root() / model_id
    target.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copyfile(path, target / path.name)
    state = cache.require(lock.get(model_id))
    print(f"{model_id}: {architecture} registered in {lock_path} ({paths[-1].name} sha256 "
          f"{files[-1]['sha256']}: compare it with the hub's file page), cached in "
          f"{state.folder}; use it with: music-embeddings IN --output-base DIR --models "
          f"{model_id}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list, fetch and verify models (models.lock.json)")
    inner = parser.add_subparsers(dest="models_command", required=True)
    p = inner.add_parser("list", help="each model with its state in the cache")
    p.add_argument("models", nargs="*", metavar="ID|GROUP")
    p.set_defaults(func=list_models)
    p = inner.add_parser("fetch", help="download (and convert) models, verified by sha256")
    p.add_argument("models", nargs="+", metavar="ID|GROUP",
                   help="model ids or groups (highlevel, default, clap)")
    p.add_argument("--force", action="store_true", help="fetch again even if present")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=fetch)
    p = inner.add_parser("verify", help="hash the cached models again")
    p.add_argument("models", nargs="*", metavar="ID|GROUP")
    p.set_defaults(func=verify)
    p = inner.add_parser("add", help="register a model trained with `extractor train`, or a "
                         "Hugging Face audio model folder (config.json + model.safetensors: "
                         "HuBERT, AST, EnCodec; MERT also from pytorch_model.bin), in your lock "
                         "file ($EXTRACTOR_MODELS_LOCK), pinned by sha256")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--name", default=None, help="the model id (default: the model's name, or "
                   "the folder's)")
    p.add_argument("--license", default=None, help="a hub model's licence, as its page states "
                   "it (recorded in the lock file)")
    p.set_defaults(func=_add)
    for p in inner.choices.values():
        p.add_argument("--debug", action="store_true")
