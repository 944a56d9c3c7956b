"""Does the guaranteed cascade hold? Realised agreement with the teacher over many seeds, against the target.

    .venv/bin/python -m benchmarks.cascade_guarantee [--seeds 50] [--budget 1000] [--targets 0.9,0.95]
        [--delta 0.05] [--datasets ../shared/datasets/banking77 ...] [--out benchmarks/results/cascade_guarantee.json]

Per dataset (`data.parquet`: id, text, label; the bundled banking77 demo when none is given), embedded once with the
static embedder. Per seed: the simulated teacher (the project's: 90 % accurate, wrong answers go to the nearest other
class, whether a text is answered wrongly depends on (seed, text)) labels a random sample of `--budget` rows; a
logistic-regression student gives out-of-fold confidences on the sample (the calibration) and, trained on the whole
sample, confidences for every other row; `plan_guaranteed_cascade` picks the threshold for each target with no cap
on teacher rows. Reported per target: how often the realised agreement with the teacher on the rows outside the
sample fell below the target (must be <= delta), the mean realised and certified agreement, and the teacher calls
saved against labelling every row. The student is fixed (logistic regression) to keep 50 seeds affordable; the
assets use the chosen student, whose out-of-fold scores feed the same function.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scalellm_dagster.core.cascade import plan_guaranteed_cascade
from scalellm_dagster.core.students import fit_student, out_of_fold, predict_with_confidence
from scalellm_dagster.embedders.static import StaticEmbedder
from scalellm_dagster.settings import DEMO_CORPUS
from scalellm_dagster.teachers.simulated import error_draw, nearest_other_class

STUDENT = "logistic_regression"


def load(path: str) -> tuple[str, pd.DataFrame]:
    if path == "demo":
        df = pd.read_parquet(DEMO_CORPUS).rename(columns={"intent": "label"})
        return "banking77 (bundled demo)", df[["id", "text", "label"]]
    df = pd.read_parquet(Path(path) / "data.parquet")
    return Path(path).name, df[["id", "text", "label"]]


def one_dataset(name: str, df: pd.DataFrame, args, targets: list[float]) -> dict:
    texts, gold = df["text"].tolist(), df["label"].astype(str).to_numpy()
    X = StaticEmbedder().embed(texts)
    labels = sorted(set(gold))
    confusion = nearest_other_class(X, gold.astype(object), labels)
    rows = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        draws = np.array([error_draw(t, seed) for t in texts])
        teacher = np.where(draws < 0.9, gold, confusion.astype(str))
        rng = np.random.default_rng(seed)
        sample = rng.choice(len(df), size=min(args.budget, len(df) // 2), replace=False)
        unseen = np.setdiff1d(np.arange(len(df)), sample)
        Xs, ys = X[sample], teacher[sample]
        oof = out_of_fold(STUDENT, Xs, ys, 5, seed)
        predicted = predict_with_confidence(fit_student(STUDENT, Xs, ys, seed), X[unseen])
        student_agrees = predicted.labels == teacher[unseen]
        for target in targets:
            plan = plan_guaranteed_cascade(
                oof.confidence, oof.correct, predicted.confidence, target, args.delta, max_teacher_rows=len(unseen)
            )
            sent = np.zeros(len(unseen), bool)
            sent[np.argsort(predicted.confidence, kind="stable")[: plan.teacher_rows]] = True
            realised = float((sent | student_agrees).mean())
            rows.append(
                {
                    "seed": seed,
                    "target": target,
                    "reached": plan.reached,
                    "realised": realised,
                    "certified": plan.guaranteed_agreement,
                    "teacher_rows_sent": int(sent.sum()),
                    "student_alone": float(student_agrees.mean()),
                    "calls_saved": 1 - (len(sample) + int(sent.sum())) / len(df),
                }
            )
        if (seed + 1) % 10 == 0:
            print(f"{name}: {seed + 1}/{args.seeds} seeds ({time.perf_counter() - start:.0f}s)", flush=True)
    table = pd.DataFrame(rows)
    summary = []
    for target, group in table.groupby("target"):
        summary.append(
            {
                "dataset": name,
                "rows": len(df),
                "classes": len(labels),
                "budget": args.budget,
                "target": target,
                "delta": args.delta,
                "seeds": len(group),
                "misses": int((group["realised"] < target).sum()),
                "miss_rate": round(float((group["realised"] < target).mean()), 3),
                "realised_mean": round(float(group["realised"].mean()), 4),
                "realised_min": round(float(group["realised"].min()), 4),
                "certified_mean": round(float(group["certified"].mean()), 4),
                "student_alone_mean": round(float(group["student_alone"].mean()), 4),
                "teacher_rows_sent_mean": round(float(group["teacher_rows_sent"].mean()), 1),
                "calls_saved_vs_all_rows": round(float(group["calls_saved"].mean()), 4),
            }
        )
    return {"summary": summary, "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["demo"])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--targets", default="0.9,0.95")
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--out", default="benchmarks/results/cascade_guarantee.json")
    args = parser.parse_args()
    targets = [float(t) for t in args.targets.split(",")]
    results = [one_dataset(*load(path), args, targets) for path in args.datasets]
    summary = [row for r in results for row in r["summary"]]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "settings": vars(args),
                "student": STUDENT,
                "teacher": "simulated (gold, 90 % accurate, errors to the nearest other class)",
                "summary": summary,
            },
            indent=2,
        )
    )
    print(pd.DataFrame(summary).to_markdown(index=False))


if __name__ == "__main__":
    main()
