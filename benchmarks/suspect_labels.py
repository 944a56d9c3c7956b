"""What each `suspect_labels` policy (keep, drop, reask) does to accuracy vs gold, through the real flow.

    .venv/bin/python -m benchmarks.suspect_labels [--datasets ../shared/datasets/banking77 ...] [--seeds 3]
        [--budgets 500,2000] [--teacher simulated|local] [--out benchmarks/results/suspect_labels.json]

Per dataset (`data.parquet`: id, text, label; the bundled banking77 demo when none is given), embedded once (LSA,
the default embedder). Per seed, budget and policy, `run_flow` runs the steps the assets run: sample, label,
flag suspects (cleanlab on a logistic regression's out-of-fold scores), keep / drop / re-ask them, evaluate the
candidates, select, predict. Accuracy vs gold is measured on every row outside the sample.

Teachers:
- `simulated` at two settings: 90 % accurate with errors to the nearest other class (the default simulation), and
  80 % accurate with half of its errors given to one favoured label (like SmolLM2: BENCHMARKS.md, "A real teacher").
  A simulation answers a text the same way however it is asked, so `reask` would change nothing: it is not run.
- `local`: SmolLM2-135M in-process (llm extra), asked in batches of `--batch-size` rows; `reask` asks each suspect
  again alone. Slow: use small budgets and one seed.

The candidates are the three fast linear students, to keep the run affordable on 2 cores; the assets default to five.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scalellm_dagster.embedders.lsa import LsaEmbedder
from scalellm_dagster.flow import MemoryCache
from scalellm_dagster.flow.in_memory import run_flow
from scalellm_dagster.settings import DEMO_CORPUS
from scalellm_dagster.tasks_config import load_tasks, parse_task
from scalellm_dagster.teachers.simulated import SimulatedTeacher

CANDIDATES = ["logistic_regression", "linear_svm", "ridge"]
SIMULATIONS = {"sim-acc0.90": {"accuracy": 0.9, "bias": 0.0}, "sim-acc0.80-bias0.5": {"accuracy": 0.8, "bias": 0.5}}


def load(path: str, max_rows: int | None, seed: int) -> tuple[str, pd.DataFrame]:
    if path == "demo":
        df = pd.read_parquet(DEMO_CORPUS).rename(columns={"intent": "label"})
        name = "banking77 (bundled demo)"
    else:
        df, name = pd.read_parquet(Path(path) / "data.parquet"), Path(path).name
    df = df[["id", "text", "label"]].assign(label=lambda d: d["label"].astype(str))
    if max_rows and len(df) > max_rows:
        df = df.sample(n=max_rows, random_state=seed)
    return name, df.reset_index(drop=True)


def one_dataset(name: str, df: pd.DataFrame, args) -> list[dict]:
    X = LsaEmbedder(dim=384, seed=0).fit_embed(df["text"].tolist())
    gold = df["label"].to_numpy()
    labels = sorted(set(gold))
    if args.tasks_file:  # a real LLM needs the task's own instruction and label descriptions
        spec = load_tasks(args.tasks_file)[0]
        args.instruction, labels = spec.instruction, spec.labels
    rows = []
    teachers = SIMULATIONS if args.teacher == "simulated" else {"smollm2-135m-local": None}
    policies = ["keep", "drop"] if args.teacher == "simulated" else ["keep", "reask", "drop"]
    real = None
    if args.teacher == "local":
        from scalellm_dagster.teachers.local import local_teacher

        real = local_teacher(
            parse_task({"name": "bench", "instruction": args.instruction, "labels": labels, "budget": 10}), None, 1
        )
    for teacher_name, sim in teachers.items():
        for seed in range(args.seeds):
            cache = MemoryCache()  # one teacher's answers shared by the policies: they differ only after labelling
            for budget in [int(b) for b in args.budgets.split(",")]:
                for policy in policies:
                    task = parse_task(
                        {
                            "name": "bench",
                            "instruction": args.instruction,
                            "labels": labels,
                            "budget": budget,
                            "seed": seed,
                            "candidates": CANDIDATES,
                            "suspect_labels": policy,
                        }
                    )
                    teacher = (
                        real
                        if real is not None
                        else SimulatedTeacher.from_corpus(task, df["id"], df["label"], X, seed=seed, **sim)
                    )
                    start = time.perf_counter()
                    run, t = run_flow(
                        task=task,
                        df=df,
                        X=X,
                        teacher=teacher,
                        is_eval=np.zeros(len(df), bool),
                        batch_size=args.batch_size,
                        concurrency=4,
                        cache=cache,
                    )
                    unseen = ~df["id"].isin(run.sample.ids).to_numpy()
                    answers = run.review.answers
                    valid = answers[answers["valid"]].merge(df[["id", "label"]], on="id")
                    flagged = valid[valid["suspect"]]
                    rows.append(
                        {
                            "dataset": name,
                            "teacher": teacher_name,
                            "seed": seed,
                            "budget": budget,
                            "policy": policy,
                            "chosen": run.choice,
                            "accuracy_vs_gold": float((run.labels[unseen] == gold[unseen]).mean()),
                            "teacher_accuracy_in_sample": float((valid["first_label"] == valid["label"]).mean()),
                            "training_labels_accuracy": float(
                                (
                                    valid.loc[valid["train"], "teacher_label"] == valid.loc[valid["train"], "label"]
                                ).mean()
                            ),
                            "flagged": len(flagged),
                            "flagged_that_were_wrong": float((flagged["first_label"] != flagged["label"]).mean())
                            if len(flagged)
                            else None,
                            "reask_changed": run.review.changed_by_reask,
                            "reask_fixed": int(
                                (
                                    (flagged["first_label"] != flagged["label"])
                                    & (flagged["teacher_label"] == flagged["label"])
                                ).sum()
                            ),
                            "reask_broke": int(
                                (
                                    (flagged["first_label"] == flagged["label"])
                                    & (flagged["teacher_label"] != flagged["label"])
                                ).sum()
                            ),
                            "seconds": round(time.perf_counter() - start, 1),
                        }
                    )
                    r = rows[-1]
                    print(
                        f"{name} {teacher_name} seed {seed} budget {budget} {policy}: acc vs gold "
                        f"{r['accuracy_vs_gold']:.4f}, flagged {r['flagged']} "
                        f"({r['flagged_that_were_wrong'] or 0:.0%} wrong), {r['seconds']}s",
                        flush=True,
                    )
    return rows


def summarise(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    keys = ["dataset", "teacher", "budget"]
    out = (
        table.groupby(keys + ["policy"])
        .agg(
            seeds=("seed", "nunique"),
            accuracy_vs_gold=("accuracy_vs_gold", "mean"),
            teacher_accuracy=("teacher_accuracy_in_sample", "mean"),
            training_labels_accuracy=("training_labels_accuracy", "mean"),
            flagged=("flagged", "mean"),
            flagged_wrong_share=("flagged_that_were_wrong", "mean"),
            reask_fixed=("reask_fixed", "mean"),
            reask_broke=("reask_broke", "mean"),
        )
        .reset_index()
    )
    keep = out[out["policy"] == "keep"].set_index(keys)["accuracy_vs_gold"]
    out["vs_keep_points"] = [
        100 * (a - keep.get(tuple(k), np.nan))
        for a, k in zip(out["accuracy_vs_gold"], out[keys].itertuples(index=False))
    ]
    return out.round(4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["demo"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", default="500,2000")
    parser.add_argument("--teacher", choices=["simulated", "local"], default="simulated")
    parser.add_argument("--batch-size", type=int, default=10, help="rows per request for the first question")
    parser.add_argument("--max-rows", type=int, help="random subsample of each dataset (seeded)")
    parser.add_argument("--instruction", default="Label the text.")
    parser.add_argument("--tasks-file", help="take the instruction and labels (with descriptions) of its first task")
    parser.add_argument("--out", default="benchmarks/results/suspect_labels.json")
    args = parser.parse_args()
    rows = [row for path in args.datasets for row in one_dataset(*load(path, args.max_rows, 0), args)]
    summary = summarise(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {"settings": vars(args), "candidates": CANDIDATES, "summary": summary.to_dict("records"), "runs": rows},
            indent=1,
        )
    )
    print(summary.to_markdown(index=False))


if __name__ == "__main__":
    main()
