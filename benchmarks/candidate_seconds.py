"""Seconds per candidate and sample size on the bundled demo, as `student_candidates` scores them, and the RBF SVM's
class scores timed both ways (issue #28).

    .venv/bin/python -m benchmarks.candidate_seconds [--task intent|topic] [--labels 1500] [--oversubscribed]

Labels are the demo's gold labels on a seeded sample of `--labels` rows (the simulated teacher's answers would only
add its noise), embedded with the static default. Every candidate is scored at every size, none pruned, with the
same cross-validation as the asset. `--oversubscribed` lets every BLAS call start its own threads inside our
threads, as before `one_blas_thread_each`.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from sklearn.utils.multiclass import _ovr_decision_function

from scalellm_dagster.core import students
from scalellm_dagster.embedders.static import StaticEmbedder

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="intent", choices=["intent", "topic"])
    p.add_argument("--labels", type=int, default=1500)
    p.add_argument("--oversubscribed", action="store_true")
    args = p.parse_args()
    demo = pd.read_parquet(ROOT / "scalellm_dagster/demo/banking77.parquet")
    X = StaticEmbedder().embed(demo["text"].tolist())
    pick = np.random.default_rng(0).permutation(len(demo))[: args.labels]
    Xs, ys = X[pick], demo[args.task].to_numpy()[pick]
    patch = (
        mock.patch.object(students, "one_blas_thread_each", lambda threads: nullcontext())
        if args.oversubscribed
        else nullcontext()
    )
    with patch:
        for name in students.DEFAULT_CANDIDATES:
            for size in students.default_sample_sizes(args.labels):
                start = time.perf_counter()
                probe = X[:2000] if size == args.labels else None
                scored = students._score_one(students.make_student(name), Xs[:size], ys[:size], 5, 0, probe, -1)
                print(
                    f"{name:20s} {size:5d} labels {time.perf_counter() - start:6.2f} s  "
                    f"cv accuracy {scored['cv_accuracy']:.3f}  predict {scored['predict_rows_per_second']:,.0f} rows/s",
                    flush=True,
                )

    svm = students.make_student("rbf_svm").fit(Xs, ys)
    start = time.perf_counter()
    pairwise = svm.decision_function(X)
    decision_seconds = time.perf_counter() - start
    classes = len(svm.classes_)
    start = time.perf_counter()
    theirs = _ovr_decision_function(pairwise < 0, -pairwise, classes)  # what decision_function_shape="ovr" adds
    their_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ours = students.ovr_from_pairwise(pairwise, classes)
    our_seconds = time.perf_counter() - start
    same = bool((theirs.argmax(1) == ours.argmax(1)).all())
    print(
        f"RBF SVM on {len(X):,} rows, {classes} classes: pairwise decision values {decision_seconds:.2f} s; "
        f"one-vs-rest scores: scikit-learn's loop {their_seconds:.2f} s, ours {our_seconds:.2f} s; "
        f"largest difference {np.abs(theirs - ours).max():.1e}, same argmax: {same}"
    )


if __name__ == "__main__":
    main()
