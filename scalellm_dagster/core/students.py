"""Student candidates: cheap scikit-learn classifiers trained on embeddings -> teacher labels."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import parallel_config
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import KFold, cross_validate
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC, LinearSVC
from threadpoolctl import threadpool_limits

_FACTORIES: dict[str, Callable[[int], ClassifierMixin]] = {
    "logistic_regression": lambda seed: LogisticRegression(C=10.0, max_iter=2000),
    "linear_svm": lambda seed: LinearSVC(C=1.0, random_state=seed),
    # Pairwise ("ovo") decision values: `class_scores` turns them into scikit-learn's one-vs-rest shape itself, faster
    "rbf_svm": lambda seed: SVC(kernel="rbf", C=10.0, gamma="scale", decision_function_shape="ovo", random_state=seed),
    "ridge": lambda seed: RidgeClassifier(alpha=1.0),
    "random_forest": lambda seed: RandomForestClassifier(n_estimators=150, random_state=seed, n_jobs=-1),
    "knn": lambda seed: KNeighborsClassifier(n_neighbors=10, weights="distance", metric="cosine"),
}
KNOWN_CANDIDATES = frozenset(_FACTORIES)
DEFAULT_CANDIDATES = ("logistic_regression", "linear_svm", "rbf_svm", "ridge", "random_forest")
THROUGHPUT_ROWS = 2000  # enough for a stable rate, and quick even for the slowest student
PARALLEL_PREDICT_ROWS = 4096


def make_student(name: str, seed: int = 0) -> ClassifierMixin:
    try:
        return _FACTORIES[name](seed)
    except KeyError:
        raise ValueError(f"unknown student {name!r}; choose from {sorted(KNOWN_CANDIDATES)}") from None


def default_sample_sizes(n_labels: int, steps: int = 4, smallest: int = 20) -> list[int]:
    """Geometric sizes ending at the labels in hand (halving), as the paper's accuracy-vs-budget curve.

    Small budgets go below `smallest` (down to 8) so that a learning curve still gets three points.
    """
    smallest = max(8, min(smallest, n_labels // 4))
    sizes = {n_labels}
    size = n_labels
    for _ in range(steps - 1):
        size //= 2
        if size < smallest:
            break
        sizes.add(size)
    return sorted(sizes)


@dataclass
class Prediction:
    labels: np.ndarray
    confidence: np.ndarray
    method: str


def predict_with_confidence(model: ClassifierMixin, X: np.ndarray, workers: int | None = None) -> Prediction:
    """Labels plus a confidence in [0, 1] for every row, on every core for large inputs.

    Models with `predict_proba` give its maximum; margin models (SVMs, ridge) give the maximum of a softmax over
    their decision scores, which ranks rows by certainty but is not a calibrated probability.
    """
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(X) >= PARALLEL_PREDICT_ROWS:
        # libsvm and the forests' trees predict one row at a time with the GIL released: threads over row blocks
        # use every core (it pays for an RBF SVM on many classes); for linear students it changes nothing.
        with ThreadPoolExecutor(workers) as pool, one_blas_thread_each(workers):
            parts = list(
                pool.map(lambda block: predict_with_confidence(model, block, workers=1), np.array_split(X, workers * 2))
            )
        return Prediction(
            np.concatenate([p.labels for p in parts]), np.concatenate([p.confidence for p in parts]), parts[0].method
        )
    classes = np.asarray(model.classes_)
    scores, method = class_scores(model, X)
    best = scores.argmax(axis=1)
    return Prediction(classes[best], scores[np.arange(len(best)), best].astype(np.float32), method)


def confidence_method(model: ClassifierMixin) -> str:
    return "predict_proba" if hasattr(model, "predict_proba") else "softmax(decision)"


def class_scores(model: ClassifierMixin, X: np.ndarray) -> tuple[np.ndarray, str]:
    """(rows x model.classes_ scores summing to 1, how they were made): `predict_proba`, or a softmax over the
    decision scores of margin models."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X), confidence_method(model)
    scores = np.asarray(model.decision_function(X), dtype=np.float64)
    if isinstance(model, SVC) and model.decision_function_shape == "ovo" and len(model.classes_) > 2:
        scores = ovr_from_pairwise(scores, len(model.classes_))
    if scores.ndim == 1:
        scores = np.column_stack([-scores, scores])
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores, confidence_method(model)


def ovr_from_pairwise(decision: np.ndarray, n_classes: int) -> np.ndarray:
    """One score per class from an SVM's pairwise decision values, as scikit-learn's `decision_function_shape="ovr"`
    makes them (`sklearn.utils.multiclass._ovr_decision_function`: each class's votes plus its summed confidence
    squashed below 1/3), as two matrix products. scikit-learn loops over the pairs in Python: on 77 classes (2,926
    pairs) that loop took longer than libsvm's own prediction (BENCHMARKS.md, issue #28)."""
    first, second = np.triu_indices(n_classes, k=1)  # libsvm's pair order: (0, 1), (0, 2), ..., (1, 2), ...
    pairs = np.arange(len(first))
    to_first = np.zeros((len(first), n_classes))
    to_first[pairs, first] = 1.0
    to_second = np.zeros_like(to_first)
    to_second[pairs, second] = 1.0
    confidence = decision @ (to_first - to_second)  # a pair's decision counts for its first class, against its second
    first_wins = decision >= 0
    votes = first_wins @ to_first + ~first_wins @ to_second
    return votes + confidence / (3 * (np.abs(confidence) + 1))


EVALUATION_VERSION = 2  # bump when the candidates' settings or how they are scored change: stored scores expire
# The score columns of a candidate not evaluated at a size (failed or pruned)
UNSCORED = dict(
    cv_accuracy=np.nan, cv_std=np.nan, cv_fit_seconds=np.nan, train_seconds=np.nan, predict_rows_per_second=np.nan
)
PRUNE_MIN_MARGIN = 0.02  # below two points, a candidate is not "clearly behind" whatever its folds say


def evaluate_candidates(
    X: np.ndarray,
    y: np.ndarray,
    candidates: Sequence[str],
    sample_sizes: Sequence[int],
    cv_folds: int = 5,
    seed: int = 0,
    *,
    throughput_X: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
    prune: bool = True,
    n_jobs: int = -1,
) -> pd.DataFrame:
    """Cross-validated accuracy against the teacher's labels at each sample size; train time and inference
    throughput at the largest.

    `X, y` are in sampling order, so the first `n` rows are the sample a budget of `n` would have bought.
    A candidate that fails at a size (e.g. one class only) is recorded with its reason, not dropped. With `prune`,
    sizes are raced smallest first and a candidate clearly behind the best at one size is not evaluated at the
    larger ones (recorded as `pruned`, with the gap): the large sizes are where the time goes.
    """
    throughput_X = X if throughput_X is None else throughput_X
    throughput_X = np.ascontiguousarray(throughput_X[:THROUGHPUT_ROWS])
    rows, pruned = [], {}
    sizes = sorted(sample_sizes)
    for step, size in enumerate(sizes):
        largest = step == len(sizes) - 1
        Xs, ys = X[:size], y[:size]
        n_classes = len(np.unique(ys))
        for name in candidates:
            row = {"candidate": name, "sample_size": int(size), "classes_seen": int(n_classes)}
            if name in pruned:
                row.update(UNSCORED, status="pruned", error=pruned[name])
                rows.append(row)
                continue
            try:
                row.update(
                    _score_one(
                        make_student(name, seed),
                        Xs,
                        ys,
                        cv_folds,
                        seed,
                        throughput_X if largest else None,
                        n_jobs=n_jobs,
                    )
                )
                row["status"], row["error"] = "ok", None
            except Exception as exc:  # noqa: BLE001 - any estimator failure is recorded, the others go on
                row.update(UNSCORED)
                row["status"], row["error"] = "failed", f"{type(exc).__name__}: {exc}"[:500]
            rows.append(row)
            if progress:
                progress(f"{name} @ {size} labels: {row['status']} acc={row['cv_accuracy']:.3f}")
        if prune and not largest:
            for name, reason in clearly_behind([r for r in rows if r["sample_size"] == size], cv_folds).items():
                pruned[name] = reason
                if progress:
                    progress(f"{name}: not evaluated above {size} labels ({reason})")
    return pd.DataFrame(rows)


def clearly_behind(results: list[dict], folds: int, keep: int = 2) -> dict[str, str]:
    """{candidate: reason} for the candidates at one size whose accuracy is below the best's by more than two
    standard errors of the difference (from the folds' spread) and at least PRUNE_MIN_MARGIN.

    Not scikit-learn's HalvingGridSearchCV: keeping a fixed share by rank drops candidates that are level at a
    small size and ahead later (an RBF SVM ranked fourth at 187 banking77 labels wins at 1,500), its resampling
    breaks the nested samples that mean "what a budget of n bought", and it keeps no learning curve per
    candidate. The best `keep` always go on, so the report has the chosen student's and the runner-up's curves.
    Failed candidates go on too: a failure at a small size (one class only) says nothing about a larger one.
    """
    ok = sorted((r for r in results if r["status"] == "ok"), key=lambda r: -r["cv_accuracy"])
    if len(ok) <= keep:
        return {}
    best = ok[0]
    behind = {}
    for r in ok[keep:]:
        se = np.sqrt(best["cv_std"] ** 2 + r["cv_std"] ** 2) / np.sqrt(max(folds, 1))
        margin = max(PRUNE_MIN_MARGIN, 2 * se)
        gap = best["cv_accuracy"] - r["cv_accuracy"]
        if gap > margin:
            behind[r["candidate"]] = (
                f"{gap:.3f} behind {best['candidate']} at {r['sample_size']} labels, "
                f"more than the {margin:.3f} the folds' spread allows"
            )
    return behind


def _score_one(model, Xs, ys, cv_folds, seed, throughput_X, *, n_jobs: int) -> dict:
    if len(np.unique(ys)) < 2:
        raise ValueError(f"only one class among {len(ys)} teacher labels; a classifier needs at least two")
    folds = min(cv_folds, len(ys))
    # Folds run on both cores unless the model already uses them itself (a random forest's trees).
    fold_jobs = 1 if getattr(model, "n_jobs", None) not in (None, 1) else n_jobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The least populated class")
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        # Threads, not processes: liblinear and libsvm release the GIL, and a worker pool's start-up (seconds)
        # and copies would cost more than they save on samples this size.
        with parallel_config(backend="threading"), one_blas_thread_each(fold_jobs):
            cv = cross_validate(
                clone(model),
                Xs,
                ys,
                cv=KFold(folds, shuffle=True, random_state=seed),
                error_score="raise",
                n_jobs=fold_jobs,
            )
        scores = cv["test_score"]
        result = {
            "cv_accuracy": float(scores.mean()),
            "cv_std": float(scores.std()),
            "cv_fit_seconds": float(cv["fit_time"].mean()),
            "train_seconds": np.nan,
            "predict_rows_per_second": np.nan,
        }
        if throughput_X is None:  # speed decides only among the largest size's students
            return result
        start = time.perf_counter()
        fitted = clone(model).fit(Xs, ys)
        result["train_seconds"] = float(time.perf_counter() - start)
    result["predict_rows_per_second"] = predict_rate(fitted, throughput_X)
    return result


def predict_rate(model, X: np.ndarray, repeats: int = 3) -> float:
    """Rows a second `model` predicts, timed on `repeats` blocks of `X` and taken from the fastest, as `timeit`
    does: other work on the machine only ever slows a block down, and the selection weighs this speed."""
    best = float("inf")
    for block in np.array_split(X, repeats):
        start = time.perf_counter()
        model.predict(block)
        best = min(best, (time.perf_counter() - start) / max(len(block), 1))
    return float(1 / max(best, 1e-12))


def fit_student(name: str, X: np.ndarray, y: np.ndarray, seed: int = 0) -> ClassifierMixin:
    with _quiet_fits():
        return _fit(name, X, y, seed)


def fit_students(names: Sequence[str], X: np.ndarray, y: np.ndarray, seed: int = 0) -> list[ClassifierMixin]:
    """`fit_student` for each name, on every core (threads: the fits release the GIL)."""
    threads = max(1, min(len(names), os.cpu_count() or 1))
    with _quiet_fits(), ThreadPoolExecutor(threads) as pool, one_blas_thread_each(threads):
        return list(pool.map(lambda name: _fit(name, X, y, seed), names))


def one_blas_thread_each(threads: int):
    """While `threads` of ours fit or predict at once (`threads` -1: every core), each one's matrix products run on
    one core. Otherwise every BLAS call starts threads of its own on cores ours already fill: oversubscribed, the
    demo's logistic regressions on 77 classes trained 4-5x slower (BENCHMARKS.md, issue #28). Process-wide, as
    BLAS's thread count is: entered around a parallel section, never inside its threads."""
    return threadpool_limits(limits=1, user_api="blas") if threads != 1 else nullcontext()


@contextmanager
def _quiet_fits():
    """Silences what is this technique's normal case: few labels, many classes (not a regression target), an
    unconverged fold. Entered once around a group of fits, never inside threads: the filters are process-wide."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        yield


def _fit(name: str, X: np.ndarray, y: np.ndarray, seed: int) -> ClassifierMixin:
    model = make_student(name, seed).fit(X, y)
    if X.dtype == np.float32 and getattr(model, "coef_", None) is not None and model.coef_.dtype == np.float64:
        # liblinear returns float64 weights, which would make every prediction upcast a float64 copy of the
        # float32 embeddings: an order of magnitude slower on a million rows (BENCHMARKS.md). float32 weights
        # change no label in practice.
        model.coef_ = model.coef_.astype(np.float32)
        model.intercept_ = np.asarray(model.intercept_, dtype=np.float32)
    return model


def out_of_fold_confidence(name: str, X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0):
    """Held-out (confidence, agrees-with-teacher) for every labelled row: the material for calibration."""
    oof = out_of_fold(name, X, y, folds, seed)
    return oof.confidence, oof.correct


def held_out_agreement(
    name: str, X: np.ndarray, fit_labels: np.ndarray, fits, target_labels: np.ndarray, folds: int = 5, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, agrees with `target_labels`) for every row, each scored by a student that did not see it and was
    fitted as the final student is: on the other folds' rows where `fits`, with `fit_labels` (see `out_of_fold`)."""
    oof = out_of_fold(name, X, fit_labels, folds, seed, fits=fits, targets=target_labels)
    return oof.confidence, oof.correct


@dataclass(frozen=True)
class OutOfFold:
    """Every labelled row scored by a student that did not see it."""

    confidence: np.ndarray
    correct: np.ndarray  # the student's label equals the teacher's
    scores: np.ndarray  # rows x classes, columns in the order of `classes`; 0 for a class a fold never saw
    classes: np.ndarray


def out_of_fold(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    folds: int = 5,
    seed: int = 0,
    fits=None,
    *,
    targets: np.ndarray | None = None,
) -> OutOfFold:
    """Each fold's student trained on the other folds' labels `y`. `fits` keeps only some of those rows: a mask, or
    a function of a fold's training positions giving the mask over them (when which rows train is itself decided
    from the labels, it must be decided without the held-out fold's). `correct` compares with `targets` (default
    `y`). A fold whose training rows hold one class has no student: its rows count as wrong, confidence 0."""
    targets = y if targets is None else targets
    classes = np.unique(y)
    confidence = np.zeros(len(y), dtype=np.float32)
    correct = np.zeros(len(y), dtype=bool)
    scores = np.zeros((len(y), len(classes)), dtype=np.float64)

    splits = []
    for train, test in KFold(min(folds, len(y)), shuffle=True, random_state=seed).split(X):
        if fits is not None:  # here, not in the threads below: `fits` may itself train students
            train = train[fits(train) if callable(fits) else np.asarray(fits, bool)[train]]
        if len(np.unique(y[train])) >= 2:
            splits.append((train, test))

    def fold(train: np.ndarray, test: np.ndarray):
        model = _fit(name, X[train], y[train], seed)
        return test, model.classes_, class_scores(model, X[test])[0]

    # Folds on every core, as threads: liblinear, libsvm and numpy release the GIL, and each fold is deterministic.
    threads = max(1, min(len(splits), os.cpu_count() or 1))
    with _quiet_fits(), ThreadPoolExecutor(threads) as pool, one_blas_thread_each(threads):
        done = list(pool.map(lambda s: fold(*s), splits))
    for test, model_classes, fold_scores in done:
        scores[np.ix_(test, np.searchsorted(classes, model_classes))] = fold_scores
        best = fold_scores.argmax(axis=1)
        confidence[test] = fold_scores[np.arange(len(best)), best]
        correct[test] = np.asarray(model_classes)[best] == targets[test]
    return OutOfFold(confidence, correct, scores, classes)
