"""The model search Gaia's ``train_model`` does, with scikit-learn: preprocessing x classifier
configurations scored by stratified k-fold cross-validation on balanced accuracy, the best
refit on the training part and scored on a held-out part (an honest estimate: the search
never saw it), then refit on every track for export.

Each configuration is one Pipeline (preprocessing inside it, so nothing leaks between folds):
``standardise`` (StandardScaler: Gaia's ``normalize``) or ``gaussianise`` (Gaia's
``gaussianize``: each descriptor through its quantiles onto a normal distribution, as
QuantileTransformer(output_distribution='normal') does, in a form skl2onnx can export:
runner.training.gaussianise), then SVC (RBF and linear, C and gamma on Gaia's log2 grid),
LogisticRegression, and for embeddings a small MLP.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.errors import TrainingError

# Gaia's classification project template: log2 C in -5..11 and log2 gamma in 3..-11, by 2.
GAIA_C = [2.0 ** e for e in range(-5, 12, 2)]
GAIA_GAMMA = [2.0 ** e for e in range(3, -12, -2)]
# The default search: a coarser walk over the same ranges (1,000 x 2,000 in 2 minutes).
QUICK_C = [2.0 ** e for e in (-3, 1, 5, 9)]
QUICK_GAMMA = [2.0 ** e for e in (-11, -7, -3)]
PREPROCESSINGS = ("standardise", "gaussianise")


@dataclass(frozen=True)
class Config:
    preprocessing: str
    classifier: str  # "svm-rbf", "svm-linear", "logistic", "mlp"
    params: tuple[tuple[str, float], ...] = ()

    def label(self) -> str:
        shown = ", ".join(f"{k}=2^{np.log2(v):g}" if float(np.log2(v)).is_integer()
                          else f"{k}={v:g}" for k, v in self.params)
        return f"{self.preprocessing} + {self.classifier}" + (f" ({shown})" if shown else "")


def candidates(full: bool, embeddings: bool) -> list[Config]:
    """Every configuration the search tries (``full``: Gaia's whole grid)."""
    cs, gammas = (GAIA_C, GAIA_GAMMA) if full else (QUICK_C, QUICK_GAMMA)
    out: list[Config] = []
    for prep in PREPROCESSINGS:
        out += [Config(prep, "svm-rbf", (("C", c), ("gamma", g))) for c in cs for g in gammas]
        out += [Config(prep, "svm-linear", (("C", c),)) for c in cs[::2 if not full else 1]]
        out += [Config(prep, "logistic", (("C", c),)) for c in (0.01, 1.0, 100.0)]
        if embeddings:
            out += [Config(prep, "mlp", (("alpha", a),)) for a in (1e-4, 1e-2)]
    return out


def pipeline(config: Config, probability: bool = False, seed: int = 0) -> Any:
    """The scikit-learn Pipeline of one configuration (``probability``: the exported one)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from runner.training.gaussianise import Gaussianise

    params = dict(config.params)
    prep = StandardScaler() if config.preprocessing == "standardise" else Gaussianise()
    # scikit-learn 1.9 deprecates SVC(probability=...) (named at all): only the exported
    # model asks for it (skl2onnx 1.20 exports an SVC's probabilities, not a calibrated one's)
    platt: dict[str, Any] = {"probability": True} if probability else {}
    if config.classifier == "svm-rbf":
        clf: Any = SVC(kernel="rbf", C=params["C"], gamma=params["gamma"],
                       class_weight="balanced", random_state=seed, **platt)
    elif config.classifier == "svm-linear":
        clf = SVC(kernel="linear", C=params["C"], class_weight="balanced", random_state=seed,
                  **platt)
    elif config.classifier == "logistic":
        clf = LogisticRegression(C=params["C"], class_weight="balanced", max_iter=2000)
    else:
        clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=params["alpha"], max_iter=500,
                            early_stopping=False, random_state=seed)
    return Pipeline([("preprocessing", prep), ("classifier", clf)])


def fit(config: Config, x: np.ndarray, y: np.ndarray, probability: bool = False) -> Any:
    """A fitted pipeline, quiet: sklearn's warnings (SVC's probability deprecation in 1.9,
    convergence) are about our choices, not the user's data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipeline(config, probability).fit(x, y)


def cross_predict(config: Config, x: np.ndarray, y: np.ndarray, folds: int,
                  seed: int) -> np.ndarray:
    """Each track's class predicted by the configuration fitted on the other folds."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cross_val_predict(pipeline(config), x, y,
                                 cv=StratifiedKFold(folds, shuffle=True, random_state=seed))


def _score(config: Config, index: int, x: np.ndarray, y: np.ndarray, train: np.ndarray,
           test: np.ndarray) -> tuple[int, float]:
    from sklearn.metrics import balanced_accuracy_score

    model = fit(config, x[train], y[train])
    return index, float(balanced_accuracy_score(y[test], model.predict(x[test])))


@dataclass
class Outcome:
    best: Config
    cv_score: float  # mean balanced accuracy over the folds, on the training part
    cv_scores: dict[str, float]  # every configuration's mean
    train_index: np.ndarray
    test_index: np.ndarray  # the held-out part (empty with --test-fraction 0)


def split(y: np.ndarray, folds: int, test_fraction: float, seed: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """(search part, held-out part), stratified; every class keeps at least ``folds`` tracks
    in the search part, or one line says which class is short."""
    everything = np.arange(len(y))
    counts = dict(zip(*np.unique(y, return_counts=True), strict=True))
    if test_fraction > 0:
        from sklearn.model_selection import train_test_split

        if min(counts.values()) < 2:
            short = min(counts, key=lambda c: counts[c])
            raise TrainingError(f"class '{short}' has 1 track: a held-out split needs 2 "
                                "(add tracks, or --test-fraction 0)")
        train, test = train_test_split(everything, test_size=test_fraction, stratify=y,
                                       random_state=seed)
    else:
        train, test = everything, everything[:0]
    kept = dict(zip(*np.unique(y[train], return_counts=True), strict=True))
    for label in sorted(counts):
        if kept.get(label, 0) < folds:
            held = f" ({counts[label]} before the held-out {test_fraction:.0%})" if len(
                test) else ""
            raise TrainingError(f"class '{label}' has {kept.get(label, 0)} tracks for the "
                                f"search{held}, fewer than the {folds} cross-validation folds "
                                "(add tracks, or lower --folds or --test-fraction)")
    return np.sort(train), np.sort(test)


def run(x: np.ndarray, y: np.ndarray, configs: list[Config], folds: int = 5,
        test_fraction: float = 0.2, jobs: int = 1, seed: int = 0,
        progress: Callable[[int, int], None] | None = None) -> Outcome:
    """Score every configuration by stratified k-fold on the search part; pick the best.

    Ties (common on small, well separated sets) go to the steadier score across folds, then
    to the larger C: a heavily regularised SVM that classifies every fold right still gives
    near-uniform probabilities, and the exported model's ``value`` is its most probable
    class."""
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    train, test = split(y, folds, test_fraction, seed)
    xs, ys = x[train], y[train]
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(xs, ys))
    tasks = [(i, c, tr, te) for i, c in enumerate(configs) for tr, te in splits]
    scores: dict[int, list[float]] = {i: [] for i in range(len(configs))}
    done = 0
    results: Iterator[tuple[int, float]] = Parallel(
        n_jobs=jobs, return_as="generator_unordered")(
        delayed(_score)(c, i, xs, ys, tr, te) for i, c, tr, te in tasks)
    for index, score in results:
        scores[index].append(score)
        done += 1
        if progress is not None:
            progress(done, len(tasks))
    means = {i: float(np.mean(s)) for i, s in scores.items()}
    spread = {i: float(np.std(s)) for i, s in scores.items()}
    best = max(means, key=lambda i: (round(means[i], 9), -round(spread[i], 9),
                                     dict(configs[i].params).get("C", 1.0), -i))
    return Outcome(configs[best], means[best], {configs[i].label(): m for i, m in means.items()},
                   train, test)
