"""`extractor train`, `extractor evaluate` and `extractor models add`: from labelled files to a
model every profile can run.

Paths in a groundtruth point at results (``.json``/``.yaml``, any profile) or at audio, which
the named profile (default ``music``) analyses first through the batch engine into
``--analysis DIR`` (default ``MODEL_DIR/analysis``): a second run resumes, analysing only what
is not up to date.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import TrainingError
from runner.training import evaluate, export, features, groundtruth, search

RESULT_SUFFIXES = (".json", ".yaml", ".yml", ".npy")  # .npy: a vector (music-clap --dump)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def _say(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, file=sys.stderr)


def _analyse(audio: list[Path], profile: str, folder: Path, jobs: int | None,
             quiet: bool) -> dict[Path, Path]:
    """Audio -> its result, analysed by the batch engine (local workers; outputs up to date
    are kept, so a second run resumes). Files that failed are absent (and listed in
    ``folder/failures.jsonl``)."""
    import os

    from runner import batch, compile
    from runner import profile as load
    from runner.batch.extract_job import ExtractorWork
    from runner.models.stage import prepare
    from runner.output import prepare_folder

    plan = compile.compile_profile(load.load_profile(profile, []))
    prepare(plan, warn=False, load=False)  # the digest the workers write (models included)
    prepare_folder(folder)
    inputs = [p.resolve() for p in audio]
    root = Path(os.path.commonpath([str(p.parent) for p in inputs]))
    planned, _ = batch.plan_outputs([(p, root) for p in inputs], folder,
                                    "." + plan.output.format)
    digest = plan.digest
    workers = batch.LocalWorkers((ExtractorWork, (profile, [], "music")),
                                 lambda job: batch.up_to_date(job.output, digest), jobs=jobs)
    result = batch.process_batch(workers, planned, folder, folder / "failures.jsonl",
                                 quiet=quiet)
    batch.finish(result, f"{profile}: {batch.tally(result)} in {result.seconds:.1f} s", quiet,
                 workers.claims)
    failed = {str(outcome.job.input) for outcome in result.failures}
    return {job.input: job.output for job in planned
            if str(job.input) not in failed and job.output.is_file()}


def resolve(truth: groundtruth.Groundtruth, args: argparse.Namespace, folder: Path
            ) -> tuple[list[tuple[str, Path, str]], list[tuple[str, str]]]:
    """(id, result, label) for every usable track, and (id, why) for the others: missing
    files and audio that failed to analyse."""
    usable: list[tuple[str, Path, str]] = []
    absent: list[tuple[str, str]] = []
    audio = [t for t in truth.tracks if t.path.suffix.lower() not in RESULT_SUFFIXES]
    for track in truth.tracks:
        if not track.path.is_file():
            absent.append((track.id, f"{track.path}: no such file"))
    present_audio = [t.path for t in audio if t.path.is_file()]
    analysed = (_analyse(present_audio, args.profile, folder, args.jobs, args.quiet)
                if present_audio else {})
    for track in truth.tracks:
        if not track.path.is_file():
            continue
        if track in audio:
            result = analysed.get(track.path.resolve())
            if result is None:
                absent.append((track.id, f"{track.path}: failed to analyse (see "
                                         f"{folder / 'failures.jsonl'})"))
                continue
            usable.append((track.id, result, track.label))
        else:
            usable.append((track.id, track.path, track.label))
    return usable, absent


def _report_left_out(what: str, items: list[tuple[str, str]], total: int,
                     args: argparse.Namespace) -> None:
    if not items:
        return
    if getattr(args, "strict", False):
        raise TrainingError(f"{len(items)} of {total} tracks {what}: {items[0][0]} "
                            f"({items[0][1]}){' and more' if len(items) > 1 else ''}; "
                            "--strict stops here")
    names = ", ".join(i for i, _ in items[:5]) + (" ..." if len(items) > 5 else "")
    _say(f"warning: {len(items)} of {total} tracks left out, {what}: {names}"
         f"{'' if args.verbose else ' (--verbose lists why)'}")
    if args.verbose:
        for track_id, why in items:
            _say(f"  {track_id}: {why}")


def _progress(quiet: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("search", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=quiet or not sys.stderr.isatty(), transient=True)


def _need_extra() -> None:
    """One line naming the extra, rather than an ImportError's traceback."""
    import importlib.util

    absent = [name for name in ("sklearn", "skl2onnx", "onnxruntime")
              if importlib.util.find_spec(name) is None]
    if absent:
        raise TrainingError(f"extractor train needs {', '.join(absent)}: pip install "
                            "'extractor-profiles[train]'")


def train(args: argparse.Namespace) -> int:
    _need_extra()
    truth = groundtruth.read(Path(args.groundtruth),
                             Path(args.filelist) if args.filelist else None)
    args.profile = args.profile or "music"
    name = args.name or truth.name
    if not _NAME.match(name):
        raise TrainingError(f"'{name}' cannot name a model (letters, digits, _ and -, starting "
                            "with a letter): give --name")
    groundtruth.check_classes(truth)
    if any(t.path.suffix == ".npy" for t in truth.tracks) and not args.embeddings:
        raise TrainingError(f"{truth.source}: .npy vectors (music-clap --dump) need "
                            "--embeddings MODEL_ID, the model that computed them (e.g. the "
                            "CLAP model's lock-file id)")
    out = Path(args.output)
    usable, absent = resolve(truth, args, Path(args.analysis or out / "analysis"))
    _report_left_out("missing or failed to analyse", absent, len(truth.tracks), args)
    feats = features.build(usable, args.descriptors, args.embeddings,
                           use_descriptors=not (args.embeddings and not args.descriptors))
    _report_left_out("with missing or non-finite features", feats.left_out, len(usable), args)
    kept = groundtruth.Groundtruth(name, tuple(groundtruth.Track(i, Path(), label) for i, label
                                               in zip(feats.ids, feats.labels, strict=True)),
                                   truth.source)
    groundtruth.check_classes(kept, f"{truth.source} (the usable tracks)")
    x, y = feats.matrix, np.asarray(feats.labels)
    configs = search.candidates(args.search == "full", bool(args.embeddings))
    _say(f"{name}: {len(y)} tracks x {x.shape[1]} values, {len(kept.counts)} classes; "
         f"{len(configs)} configurations x {args.folds} folds", args.quiet)
    with _progress(args.quiet) as bars:
        task = bars.add_task("search", total=len(configs) * args.folds)
        outcome = search.run(x, y, configs, args.folds, args.test_fraction, args.jobs or 1,
                             args.seed, lambda done, _: bars.update(task, completed=done))
    report = _scores(outcome, x, y, args)
    final = search.fit(outcome.best, x, y, probability=True)
    classes = [str(c) for c in final.classes_]
    with warnings.catch_warnings():  # sklearn 1.9 deprecates SVC's probabilities: ours to fix
        warnings.simplefilter("ignore", FutureWarning)
        onnx_bytes = export.to_onnx(final, x.shape[1])
        _check_export(final, onnx_bytes, x[:16])
    meta = export.metadata(name, classes, feats, onnx_bytes, report, args.profile,
                           Path(args.groundtruth).name)
    paths = export.write(out, name, onnx_bytes, meta, report)
    _print_report(name, report, args.quiet)
    held = report["metrics"].get("held_out_balanced_accuracy")
    print(f"{name}: {outcome.best.label()}; cross-validation balanced accuracy "
          f"{outcome.cv_score:.3f}" + (f", held-out {held:.3f}" if held is not None else "")
          + f" -> {paths[0]}")
    return 0


def _scores(outcome: search.Outcome, x: np.ndarray, y: np.ndarray,
            args: argparse.Namespace) -> dict[str, Any]:
    """report.json: the search, cross-validated and held-out scores of the best."""
    classes = sorted(set(y.tolist()))
    train, test = outcome.train_index, outcome.test_index
    cv_pred = search.cross_predict(outcome.best, x[train], y[train], args.folds, args.seed)
    report: dict[str, Any] = {
        "training": {"configuration": outcome.best.label(), "folds": args.folds,
                     "test_fraction": args.test_fraction, "seed": args.seed,
                     "search": args.search, "tracks": int(len(y))},
        "cross_validation": evaluate.metrics(y[train], cv_pred, classes),
        "search": outcome.cv_scores,
    }
    metrics = {"cross_validation_balanced_accuracy": outcome.cv_score}
    if len(test):
        held = search.fit(outcome.best, x[train], y[train])
        report["held_out"] = evaluate.metrics(y[test], held.predict(x[test]), classes)
        metrics["held_out_accuracy"] = report["held_out"]["accuracy"]
        metrics["held_out_balanced_accuracy"] = report["held_out"]["balanced_accuracy"]
    report["metrics"] = metrics
    return report


def _check_export(model: Any, onnx_bytes: bytes, sample: np.ndarray) -> None:
    """The ONNX file gives scikit-learn's probabilities (else it is not written)."""
    from runner.models.onnx_classifier_family import Classifier

    meta = {"schema": {"inputs": [{"name": export.INPUT}], "outputs": [{"name": export.OUTPUT}]},
            "inference": {}}
    got = Classifier(onnx_bytes, meta).probabilities(sample)
    if not np.allclose(got, model.predict_proba(sample), atol=1e-3):
        raise TrainingError("the ONNX export does not reproduce the fitted model's "
                            "probabilities; not written")


def _print_report(name: str, report: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return
    from rich.console import Console

    console = Console(stderr=True)
    console.print(evaluate.table(f"{name}, cross-validation", report["cross_validation"]))
    if "held_out" in report:
        console.print(evaluate.table(f"{name}, held out", report["held_out"]))


def evaluate_command(args: argparse.Namespace) -> int:
    """A model (folder or registered id) scored on new labelled files."""
    from runner.models.onnx_classifier_family import Classifier

    meta, data = _model(args.model)
    truth = groundtruth.read(Path(args.groundtruth),
                             Path(args.filelist) if args.filelist else None)
    args.profile = args.profile or meta["inference"].get("profile", "music")
    args.strict = False
    usable, absent = resolve(truth, args, Path(args.analysis or Path(args.groundtruth).parent
                                                / "analysis"))
    _report_left_out("missing or failed to analyse", absent, len(truth.tracks), args)
    columns = [features.Column(d["name"], int(d["size"]))
               for d in meta["inference"].get("descriptors", [])]
    embedding = (meta["inference"].get("embedding_model") or {}).get("model_name")
    rows, ids, labels, gaps = [], [], [], []
    for track_id, path, label in usable:
        try:
            values, why = features.row(features.load_result(path), columns)
        except (OSError, ValueError) as exc:
            values, why = None, f"{path}: not a readable result ({exc})"
        vector = None if values is None else np.asarray(values, dtype=np.float32)
        if vector is not None and embedding:
            emb, why = features._embedding(path, embedding)
            vector = None if emb is None else np.concatenate([vector, emb])
        if vector is None:
            gaps.append((track_id, why))
            continue
        rows.append(vector)
        ids.append(track_id)
        labels.append(label)
    _report_left_out("with missing or non-finite features", gaps, len(usable), args)
    if not rows:
        raise TrainingError(f"{args.groundtruth}: no track can be scored")
    probs = Classifier(data, meta).probabilities(np.vstack(rows))
    classes = list(meta["classes"])
    predicted = [classes[i] for i in probs.argmax(axis=1)]
    scores = evaluate.metrics(labels, predicted, sorted(set(classes) | set(labels)))
    if not args.quiet:
        from rich.console import Console

        Console(stderr=True).print(evaluate.table(f"{meta['name']} on {args.groundtruth}",
                                                  scores))
    if args.report:
        from runner.output import write_atomic

        write_atomic(args.report, json.dumps(scores, indent=2) + "\n")
    print(f"{meta['name']}: accuracy {scores['accuracy']:.3f}, balanced accuracy "
          f"{scores['balanced_accuracy']:.3f} on {len(ids)} tracks")
    return 0


def _model(where: str) -> tuple[dict[str, Any], bytes]:
    """(metadata, verified ONNX bytes) of a model folder or a registered model id."""
    from runner.models.supply import cache, lock
    from runner.models.supply.cache import verified_bytes

    if Path(where).is_dir():
        meta, path = export.read_model_dir(Path(where))
        return meta, verified_bytes(path, meta["model"]["sha256"])
    model = lock.get(where)
    state = cache.require(model)
    meta = json.loads(state.path(str(model.metadata)).read_text(encoding="utf-8"))
    pin = next(p.sha256 for p in model.files if p.name == model.graph)
    return meta, verified_bytes(state.path(str(model.graph)), pin)


def models_add(args: argparse.Namespace) -> int:
    """Register a trained model folder in the user's lock file, pinned by sha256, and copy it
    into the model cache (where runs find it, checked against those pins)."""
    from runner.models.supply import cache, lock

    folder = Path(args.model_dir).resolve()
    meta, onnx_path = export.read_model_dir(folder)
    model_id = args.name or str(meta["name"])
    meta_path = folder / f"{meta['name']}.json"
    files = []
    for path in (onnx_path, meta_path):
        files.append({"name": path.name, "url": path.as_uri(),
                      "sha256": cache.sha256_of(path), "size": path.stat().st_size})
    embedding = (meta["inference"].get("embedding_model") or {}).get("model_name")
    entry: dict[str, Any] = {
        "description": meta.get("description", ""), "license": "yours",
        "kind": export.KIND, "groups": ["trained"], "files": files,
        "graph": onnx_path.name, "metadata": meta_path.name,
    }
    if embedding:
        entry["embedding"] = embedding
    if meta["inference"].get("descriptors"):  # the profile whose results it reads
        entry["profile"] = str(meta["inference"].get("profile") or "music")
    lock_path = lock.add_user_model(model_id, entry)
    target = cache.writable_root() / model_id
    target.mkdir(parents=True, exist_ok=True)
    for path in (onnx_path, meta_path):
        shutil.copyfile(path, target / path.name)
    state = cache.require(lock.get(model_id))
    print(f"{model_id}: registered in {lock_path} (sha256 {files[0]['sha256'][:12]}...), "
          f"cached in {state.folder}; use it with: music-highlevel DIR --taxonomies "
          f"{model_id} (or models.outputs.{model_id}: {model_id} in a profile)")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`extractor train` and `extractor evaluate`."""
    p = sub.add_parser("train", help="train a classifier from labelled results or audio "
                       "(Gaia groundtruth + filelist, or a path,label CSV)")
    p.add_argument("groundtruth", help="Gaia groundtruth YAML, or a CSV of path,label")
    p.add_argument("--filelist", default=None, help="Gaia filelist YAML (id: path)")
    p.add_argument("--output", "-o", required=True, metavar="MODEL_DIR")
    p.add_argument("--name", default=None, help="the model's name (default: className, or "
                   "the CSV's file name)")
    p.add_argument("--descriptors", nargs="+", default=None, metavar="GLOB",
                   help="dotted globs, e.g. 'lowlevel.*.mean' (default: Gaia's basic set)")
    p.add_argument("--embeddings", default=None, metavar="MODEL_ID",
                   help="the mean of this model's embeddings (.npy beside each result, from "
                   "--keep-embeddings)")
    p.add_argument("--search", choices=["quick", "full"], default="quick",
                   help="quick (default) or Gaia's whole C/gamma grid")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="held out for an honest estimate (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true",
                   help="stop when any track is missing, failed to analyse or has gaps")
    _shared(p)
    p.set_defaults(func=train)
    p = sub.add_parser("evaluate", help="score a trained model on new labelled files")
    p.add_argument("model", help="a model folder (extractor train -o) or a registered id")
    p.add_argument("groundtruth")
    p.add_argument("--filelist", default=None)
    p.add_argument("--report", default=None, metavar="FILE", help="write the scores as JSON")
    _shared(p)
    p.set_defaults(func=evaluate_command)


def _shared(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None,
                   help="the profile that analyses audio paths (default: music)")
    p.add_argument("--analysis", default=None, metavar="DIR",
                   help="where analysed audio's results go (resumable)")
    p.add_argument("--jobs", "-j", type=int, default=None, help="processes (default: 1)")
    p.add_argument("--verbose", "-v", action="store_true", help="list every track left out")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--debug", action="store_true")

