"""Model analysis on a labelled dataset with the simulated teacher: forecasts, sampling strategies, the cascade.

    .venv/bin/python -m benchmarks.model_analysis --data ../shared/datasets/tweet_eval_offensive/data.parquet
    .venv/bin/python -m benchmarks.model_analysis --data ../shared/datasets/banking77/data.parquet

Uses the engine directly (the same functions the Dagster assets call). The teacher is `simulated` (gold labels,
right with probability --teacher-accuracy, plausible confusions); accuracy vs gold is measured on rows the teacher
never saw.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from scalellm_dagster.core.cascade import Calibrator, plan_cascade
from scalellm_dagster.core.learning_curve import fit_learning_curve
from scalellm_dagster.core.sampling import (
    cluster_stratified_sample,
    random_sample,
    uncertainty_sample,
)
from scalellm_dagster.core.students import (
    default_sample_sizes,
    evaluate_candidates,
    fit_student,
    out_of_fold_confidence,
    predict_with_confidence,
)
from scalellm_dagster.embedders.lsa import LsaEmbedder
from scalellm_dagster.tasks_config import parse_task
from scalellm_dagster.teachers.simulated import SimulatedTeacher

STUDENT = "logistic_regression"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--heldback", type=int, default=4000, help="larger budget to forecast and then measure")
    p.add_argument("--teacher-accuracy", type=float, default=0.9)
    p.add_argument("--cascade-fraction", type=float, default=0.05)
    p.add_argument("--cascade-target", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    df = pd.read_parquet(args.data).reset_index(drop=True)
    labels = sorted(df["label"].unique())
    task = parse_task(
        {
            "name": "bench",
            "instruction": "Label the text.",
            "budget": args.budget,
            "labels": labels,
            "gold_column": "label",
        }
    )
    start = time.perf_counter()
    X = LsaEmbedder(dim=384, seed=args.seed).fit_embed(df["text"].tolist())
    embed_seconds = time.perf_counter() - start
    ids = df["id"].to_numpy()
    pos = pd.Series(np.arange(len(df)), index=ids)
    teacher = SimulatedTeacher.from_corpus(
        task, df["id"], df["label"], X, accuracy=args.teacher_accuracy, seed=args.seed
    )

    def ask(chosen):
        answers = teacher.label_batch([(str(i), df["text"].iat[pos[i]]) for i in chosen]).answers
        return [answers[str(i)].label for i in chosen]

    gold = df["label"].to_numpy()
    out = {
        "data": args.data,
        "rows": len(df),
        "classes": len(labels),
        "embed_seconds": round(embed_seconds, 1),
        "teacher_accuracy": args.teacher_accuracy,
        "budget": args.budget,
    }

    # 1. forecast vs measured: fit on sizes up to budget/4... budget, forecast the held-back size
    order = random_sample(ids, args.heldback, args.seed)
    y_order = np.array(ask(order), dtype=object)
    sizes = [s for s in default_sample_sizes(args.budget, steps=5)] + [args.heldback]
    scores = evaluate_candidates(X[pos[order].to_numpy()], y_order, [STUDENT], sizes, cv_folds=5, seed=args.seed)
    fit_part = scores[scores["sample_size"] <= args.budget]
    curve = fit_learning_curve(fit_part["sample_size"], fit_part["cv_accuracy"])
    measured = float(scores.loc[scores["sample_size"] == args.heldback, "cv_accuracy"].iloc[0])
    out["forecast"] = {
        "fit_sizes": [int(s) for s in fit_part["sample_size"]],
        "heldback": args.heldback,
        "alpha": round(curve.alpha, 3),
        "c": round(curve.c, 3),
        "r2": round(curve.r2, 3),
        "forecast_vs_teacher": round(float(curve.accuracy_at(args.heldback)), 4),
        "measured_vs_teacher": round(measured, 4),
    }

    # 2. sampling strategies at equal budget
    strategies = {
        "random": lambda: random_sample(ids, args.budget, args.seed),
        "stratified-by-cluster": lambda: cluster_stratified_sample(ids, X, args.budget, args.seed),
        "uncertainty": lambda: uncertainty_sample(ids, X, args.budget, ask, seed=args.seed, rounds=4),
    }
    out["sampling"] = []
    for name, pick in strategies.items():
        chosen = pick()
        y = np.array(ask(chosen), dtype=object)
        ok = np.array([v is not None for v in y])
        model = fit_student(STUDENT, X[pos[chosen].to_numpy()][ok], y[ok], args.seed)
        unseen = np.setdiff1d(np.arange(len(df)), pos[chosen].to_numpy())
        pred = predict_with_confidence(model, X[unseen])
        out["sampling"].append(
            {
                "strategy": name,
                "teacher_calls": len(chosen),
                "student_accuracy_vs_gold_unseen": round(float((pred.labels == gold[unseen]).mean()), 4),
                "teacher_accuracy_vs_gold_on_sample": round(float((y == gold[pos[chosen]]).mean()), 4),
            }
        )

    # 3. the cascade on top of the random sample
    chosen = random_sample(ids, args.budget, args.seed)
    y = np.array(ask(chosen), dtype=object)
    Xs = X[pos[chosen].to_numpy()]
    model = fit_student(STUDENT, Xs, y, args.seed)
    unseen = np.setdiff1d(np.arange(len(df)), pos[chosen].to_numpy())
    pred = predict_with_confidence(model, X[unseen])
    oof_conf, oof_correct = out_of_fold_confidence(STUDENT, Xs, y, 5, args.seed)
    agreement = Calibrator(oof_conf, oof_correct)(pred.confidence)
    cap = int(args.cascade_fraction * len(df))
    plan = plan_cascade(agreement, args.cascade_target, max_fraction=cap / len(unseen))
    pick = np.flatnonzero(agreement <= plan.threshold)
    pick = pick[np.argsort(agreement[pick], kind="stable")][:cap]
    final = pred.labels.astype(object).copy()
    final[pick] = ask(ids[unseen[pick]])
    out["cascade"] = {
        "without": {
            "teacher_calls": len(chosen),
            "accuracy_vs_gold_unseen": round(float((pred.labels == gold[unseen]).mean()), 4),
            "expected_agreement_with_teacher": round(plan.expected_agreement_without, 4),
        },
        "with": {
            "teacher_calls": len(chosen) + len(pick),
            "accuracy_vs_gold_unseen": round(float((final == gold[unseen]).mean()), 4),
            "expected_agreement_with_teacher": round(plan.expected_agreement_with, 4),
            "threshold": round(plan.threshold, 4),
            "target": args.cascade_target,
            "reached": plan.reached,
        },
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
