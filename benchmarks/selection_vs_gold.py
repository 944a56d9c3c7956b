"""Does the selection pick the student that is best against gold? Each candidate's accuracy vs gold beside the
rule's choice, on the static embedder.

    .venv/bin/python -m benchmarks.selection_vs_gold ../shared/datasets [--budgets 500,1000,2000] [--seeds 0,1,2]
        [--out benchmarks/results/selection_vs_gold.json]

Per dataset, teacher accuracy (0.90, and 0.72 on tweet_eval, where 0.72 is the majority class's share) and seed:
the simulated teacher's answers on a random sample of the training split (`budget` rows); every candidate
cross-validated against them at the flow's sample sizes (pruning on) and the student chosen by the selection rule
(`choose_student`, corpus_rows = the dataset's rows, the default price of a point); then every candidate trained on
all of the sample and scored against gold on the test split, which the teacher never saw (ag_news, a training
subset, holds out a seeded quarter of its rows instead).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from scalellm_dagster.core.selection import choose_student
from scalellm_dagster.core.students import DEFAULT_CANDIDATES, default_sample_sizes, evaluate_candidates, fit_student
from scalellm_dagster.embedders.static import StaticEmbedder
from scalellm_dagster.tasks_config import parse_task
from scalellm_dagster.teachers.simulated import SimulatedTeacher

TEACHERS = {"tweet_eval_offensive": (0.72, 0.90), "banking77": (0.90,), "ag_news": (0.90,)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets")
    p.add_argument("--budgets", default="500,1000,2000")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--only", help="comma-separated dataset names (default: all three)")
    p.add_argument("--out")
    args = p.parse_args()
    results = []
    for name, accuracies in TEACHERS.items():
        if args.only and name not in args.only.split(","):
            continue
        df = pd.read_parquet(Path(args.datasets) / name / "data.parquet")
        X = StaticEmbedder().embed(df["text"])
        labels = sorted(df["label"].astype(str).unique())
        gold = df["label"].astype(str).to_numpy()
        test = (df["split"] == "test").to_numpy()
        if not test.any():  # a training subset only (ag_news): a seeded quarter of the rows is held out instead
            test = np.random.default_rng(12345).random(len(df)) < 0.25
        task = parse_task(
            {"name": "bench", "instruction": "Label the text.", "labels": labels, "budget": 10, "gold_column": "label"}
        )
        for accuracy in accuracies:
            for seed in [int(s) for s in args.seeds.split(",")]:
                teacher = SimulatedTeacher.from_corpus(
                    task, df["id"], df["label"].astype(str), X, accuracy=accuracy, seed=seed
                )
                keys = df["id"].astype(str).tolist()
                said = teacher.label_batch(list(zip(keys, df["text"]))).answers
                says = np.array([said[k].label for k in keys], dtype=object)
                pool = np.random.default_rng(seed).permutation(np.flatnonzero(~test))
                for budget in [int(b) for b in args.budgets.split(",")]:
                    rows = pool[:budget]
                    rows = rows[pd.notna(says[rows])]
                    scores = evaluate_candidates(
                        X[rows], says[rows], DEFAULT_CANDIDATES, default_sample_sizes(len(rows)), seed=seed
                    )
                    choice = choose_student(scores, corpus_rows=len(df), seconds_per_point=10.0)
                    vs_gold = {
                        c: float((fit_student(c, X[rows], says[rows], seed).predict(X[test]) == gold[test]).mean())
                        for c in DEFAULT_CANDIDATES
                    }
                    best = max(vs_gold, key=vs_gold.get)
                    at_max = scores[scores["sample_size"] == scores["sample_size"].max()].set_index("candidate")
                    results.append(
                        {
                            "dataset": name,
                            "teacher_accuracy": accuracy,
                            "seed": seed,
                            "budget": budget,
                            "chosen": choice.candidate,
                            "chosen_vs_gold": round(vs_gold[choice.candidate], 4),
                            "best_vs_gold": best,
                            "best_vs_gold_accuracy": round(vs_gold[best], 4),
                            "vs_gold": {k: round(v, 4) for k, v in vs_gold.items()},
                            "cv_vs_teacher": {k: round(float(v), 4) for k, v in at_max["cv_accuracy"].dropna().items()},
                        }
                    )
                    r = results[-1]
                    print(
                        f"{name} teacher {accuracy} seed {seed} budget {budget}: chose {r['chosen']} "
                        f"{r['chosen_vs_gold']:.3f} vs gold; best {best} {r['best_vs_gold_accuracy']:.3f}",
                        flush=True,
                    )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
