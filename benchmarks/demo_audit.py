"""The drift audit's false alarms on the demo (issue #36): how often does an audit fail when nothing drifted?

Per seed (pre-registered: `SEEDS`) and per demo task (`demo/tasks.yaml`: intent, 77 labels, 1,500 teacher labels;
topic, 6 labels, 400), with the task's own settings and the seed as its seed: the bundled banking77 corpus is split at
random into the first run's rows and a refresh of `--new-rows` rows from the same population (no drift). The real
flow `scalellm bench` runs (`run_flow`: random sample from the first run's rows, every candidate scored, the
selection, the final student, its predictions) with a simulated teacher at accuracy 0.9 (`--teacher`; answers decided
on the whole corpus per seed; a simulation of an LLM, not an LLM). The audit's expected agreement is what
`predictions` keeps for it (`audit_expectation`: the chosen student's held-out agreement on the sample). Then:

- `refresh`: the audit as it runs now, on the refresh's rows: `audit_rows` (30) of them, drawn as the asset draws
  them, judged alone (`judge_audit`). It fails when the upper end of its 95 % interval is below the expectation:
  a one-sided test at alpha = 2.5 % if the expectation were exact.
- `first_run`: the audit as it ran before issue #36 on a first run, over the first run's own student-labelled rows
  (what `make demo` printed as FAILED); a first run's audit is now a baseline that asks nothing.

Reported per task and case: audits, failures, the false-alarm rate with its exact 95 % interval, and the mean
expected and realised agreement (on every new row), i.e. how far the expectation is from the truth.

    .venv/bin/python -m benchmarks.demo_audit --teacher simulated_hard --seeds 200 --processes 2 \
        --out benchmarks/results/demo_audit_hard.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.parallel import run_jobs
from benchmarks.simulated_teachers import KINDS

SEEDS = list(range(36_000, 36_000 + 400))  # pre-registered for issue #36
ALPHA = 0.025

_DATA: dict = {}


def _demo():
    if "demo" not in _DATA:
        from scalellm_dagster.embedders.static import StaticEmbedder
        from scalellm_dagster.settings import DEMO_CORPUS, DEMO_TASKS
        from scalellm_dagster.tasks_config import load_tasks

        df = pd.read_parquet(DEMO_CORPUS)
        _DATA["demo"] = (df, StaticEmbedder(threads=1).embed(df["text"].tolist()), load_tasks(DEMO_TASKS))
    return _DATA["demo"]


def one_seed(seed: int, teacher_kind: str, new_rows: int) -> list[dict]:
    from benchmarks.simulated_teachers import answers_for, table_teacher
    from scalellm_dagster.core.audit import draw_audit, judge_audit
    from scalellm_dagster.core.cascade import agreement_of_most_confident
    from scalellm_dagster.flow.cascade_step import CalibrationSample, calibrate
    from scalellm_dagster.flow.in_memory import run_flow

    warnings.simplefilter("ignore")
    df, X, tasks = _demo()
    is_new = np.zeros(len(df), bool)
    is_new[np.random.default_rng(seed).choice(len(df), new_rows, replace=False)] = True
    out = []
    for task in tasks:
        task = replace(task, seed=seed)
        gold = df[task.gold_column].astype(str).to_numpy()
        answers = answers_for(teacher_kind, df["text"].tolist(), gold, task.label_names, X, seed, 0.9)
        teacher = table_teacher(teacher_kind, task, df["id"], answers, 0.9, seed)
        # the refresh's rows are "eval" rows to the flow: never sampled, predicted like every row
        run, timings = run_flow(
            task=task, df=df[["id", "text"]], X=X, teacher=teacher, is_eval=is_new, batch_size=10, concurrency=8
        )
        inputs = timings["cascade_inputs"]
        student, valid, X_valid = inputs["student"], inputs["valid"], inputs["X_valid"]
        calibrator = calibrate(student, CalibrationSample.from_answers(valid, X_valid), task)
        expected = agreement_of_most_confident(calibrator, 1.0)
        agrees = run.student_labels == answers
        by_student = run.labels == run.student_labels  # the rows whose deployed label is the student's
        sampled = np.isin(df["id"].to_numpy(), run.sample.ids)
        ids = df["id"].to_numpy()
        for case, rows in (("refresh", is_new), ("first_run", ~is_new & ~sampled & by_student)):
            position = pd.Series(np.arange(len(df)), index=ids)
            picked = position[draw_audit(ids[rows], task.audit_rows, task.seed)].to_numpy()
            verdict = judge_audit(agrees[picked], expected)
            out.append(
                {
                    "seed": seed,
                    "teacher": teacher_kind,
                    "task": task.name,
                    "case": case,
                    "chosen": run.choice,
                    "expected": expected,
                    "realised_all_rows": float(agrees[rows].mean()),
                    "audit_agreement": verdict.agreement,
                    "failed": not verdict.passed,
                }
            )
    return out


def summarise(rows: list[dict]) -> list[dict]:
    from scalellm_dagster.core.audit import clopper_pearson

    table = []
    for (teacher, task, case), cell in pd.DataFrame(rows).groupby(["teacher", "task", "case"], sort=False):
        fails = int(cell["failed"].sum())
        low, high = clopper_pearson(fails, len(cell))
        table.append(
            {
                "teacher": teacher,
                "task": task,
                "case": case,
                "audits": len(cell),
                "failed": fails,
                "false_alarm_rate": round(fails / len(cell), 4),
                "rate_ci95": [round(low, 4), round(high, 4)],
                "expected_mean": round(float(cell["expected"].mean()), 4),
                "realised_mean": round(float(cell["realised_all_rows"].mean()), 4),
                "expected_minus_realised_mean": round(float((cell["expected"] - cell["realised_all_rows"]).mean()), 4),
                "chosen": cell["chosen"].value_counts().to_dict(),
            }
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="simulated_hard", choices=KINDS)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--new-rows", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    seeds = SEEDS[: args.seeds]
    rows = run_jobs(one_seed, [(seed, args.teacher, args.new_rows) for seed in seeds], args.processes, 10, "seeds")
    report = {
        "teacher": args.teacher,
        "alpha": ALPHA,
        "seeds": f"{seeds[0]}..{seeds[-1]}",
        "new_rows": args.new_rows,
        "cells": summarise(rows),
        "seconds": round(time.perf_counter() - start, 1),
        "runs": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report["cells"], indent=1))


if __name__ == "__main__":
    main()
