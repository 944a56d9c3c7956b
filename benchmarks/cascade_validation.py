"""Validation of the guaranteed cascade (issue #27), separate from its development set.

Pre-registered before the first run (2026-11-30), not tuned afterwards: the seeds are `SEEDS` below; the cells are
every suspect-label policy x every share of teacher requests failing, on each shared dataset; the settings are
`SETTINGS`. Each run takes a fresh corpus of `rows` rows drawn from the dataset (by the run's seed), and goes the
real path `scalellm bench` goes (`run_flow`): random sample of `budget` rows labelled by a simulated teacher
(accuracy 0.9; an LLM simulation, not an LLM: `--teacher simulated` errs on rows drawn by a hash, `simulated_hard`,
answers decided on the whole dataset, on the rows a model finds hard), the suspect review, every candidate scored
and the selection made, the final student, its predictions, and the guaranteed cascade at `target` with delta 0.1
(`cascade_step`, the step `run_flow` ends with; both in `flow/in_memory.py`). A failing share f: that share of
the rows outside the sample (drawn per run) gets an invalid answer every time the cascade asks (the worst case:
asking again never helps); the three shares share the run's sample, selection and student.

A run *claims* when it prints the target as certified; it *misses* when it claims and the realised agreement with
the teacher on the rows outside the sample is below the target. Also counted: runs whose printed bound (whatever it
is, target reached or not) the realised agreement falls below. The guarantee holds in a cell when the 95 % upper
bound of the miss rate (Clopper-Pearson over the runs) is at most delta. Sampling strategies other than random are
refused with cascade_delta (the task does not parse), so they have no cell.

    .venv/bin/python -m benchmarks.cascade_validation ../shared/datasets --runs 300 --processes 2 \
        --out benchmarks/results/cascade_validation.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.parallel import run_jobs
from benchmarks.simulated_teachers import KINDS

SEEDS = list(range(20_261_130, 20_261_130 + 300))  # pre-registered; the development set was 0..149
DATASETS = ["tweet_eval_offensive", "ag_news", "banking77"]
POLICIES = ["keep", "reask", "drop"]
FAILING = [0.0, 0.05, 0.15]
SETTINGS = {
    "rows": 2_000,
    "budget": 300,
    "target": 0.90,
    "delta": 0.1,
    "teacher_accuracy": 0.9,
    "candidates": ["logistic_regression", "ridge", "linear_svm"],
    "batch_size": 10,
}


class FailingTeacher:
    """The simulated teacher, except that rows in `failing` always get an invalid answer."""

    def __init__(self, inner, failing: set[str]):
        self.inner, self.failing = inner, failing
        self.provider, self.model, self.prompt_version = inner.provider, inner.model, inner.prompt_version

    def label_batch(self, rows):
        from scalellm_dagster.teachers.base import Answer

        result = self.inner.label_batch(rows)
        for key in self.failing & set(result.answers):
            result.answers[key] = Answer(None, "(failed)")
        return result

    def cost_usd(self, prompt_tokens, completion_tokens):
        return 0.0


_DATA: dict = {}


def _dataset(root: str, name: str):
    if name not in _DATA:
        from scalellm_dagster.embedders.static import StaticEmbedder

        df = pd.read_parquet(Path(root) / name / "data.parquet")
        df = df.assign(id=np.arange(len(df)), label=df["label"].astype(str))
        _DATA[name] = (df, StaticEmbedder().fit_embed(df["text"].tolist()))
    return _DATA[name]


def one_run(
    root: str, name: str, seed: int, policies: tuple = tuple(POLICIES), teacher_kind: str = "simulated"
) -> list[dict]:
    """Every (policy, failing share) cell of one seed on one dataset."""
    from scalellm_dagster.flow import MemoryCache, TeacherSession
    from scalellm_dagster.flow.in_memory import cascade_step, run_flow
    from scalellm_dagster.tasks_config import parse_task
    from scalellm_dagster.teachers.simulated import SimulatedTeacher

    full, X_full = _dataset(root, name)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(full), SETTINGS["rows"], replace=False))
    df, X = full.iloc[pick].reset_index(drop=True), X_full[pick]
    df["id"] = np.arange(len(df))
    labels = sorted(full["label"].unique())
    keys = df["id"].astype(str).tolist()
    if teacher_kind != "simulated":  # answers decided on the whole dataset, so a row's does not depend on the draw
        from benchmarks.simulated_teachers import answers_for

        whole = answers_for(
            teacher_kind,
            full["text"].tolist(),
            full["label"],
            labels,
            X_full,
            seed % 100_000,
            SETTINGS["teacher_accuracy"],
        )
        answers = whole[pick]
    out = []
    for policy in policies:
        task = parse_task(
            {
                "name": "v",
                "instruction": "classify",
                "labels": labels,
                "budget": SETTINGS["budget"],
                "seed": seed % 100_000,
                "candidates": SETTINGS["candidates"],
                "suspect_labels": policy,
                "cascade_budget": SETTINGS["rows"],
                "cascade_target_agreement": SETTINGS["target"],
                "cascade_delta": SETTINGS["delta"],
            }
        )
        if teacher_kind == "simulated":
            simulated = SimulatedTeacher.from_corpus(
                task,
                df["id"],
                df["label"],
                X,
                accuracy=SETTINGS["teacher_accuracy"],
                latency_ms=0.0,
                seed=seed % 100_000,
            )
        else:
            from benchmarks.simulated_teachers import table_teacher

            simulated = table_teacher(
                teacher_kind, task, df["id"], answers, SETTINGS["teacher_accuracy"], seed % 100_000
            )
        says = simulated.label_batch(list(zip(keys, df["text"]))).answers
        teacher_says = np.array([says[k].label for k in keys], dtype=object)
        # the failing rows are drawn once for the largest share; a smaller share takes a prefix of the same draw
        order = rng.permutation(len(keys))
        run, timings = run_flow(
            task=replace(task, cascade_budget=0),
            df=df,
            X=X,
            teacher=simulated,
            is_eval=np.zeros(len(df), bool),
            batch_size=SETTINGS["batch_size"],
            concurrency=8,
        )
        outside = ~np.isin(df["id"].to_numpy(), run.sample.ids)
        for share in FAILING:
            failing = {keys[i] for i in order[: int(round(share * len(keys)))]} - {str(i) for i in run.sample.ids}
            session = TeacherSession(
                FailingTeacher(simulated, failing), MemoryCache(), df.set_index("id")["text"], SETTINGS["batch_size"], 8
            )
            final, calls, g = cascade_step(
                task=task,
                **timings["cascade_inputs"],
                final=run.labels,
                ids=df["id"].to_numpy(),
                session_factory=lambda session=session: session,
            )
            realised = float((final[outside] == teacher_says[outside]).mean())
            out.append(
                {
                    "dataset": name,
                    "teacher": teacher_kind,
                    "policy": policy,
                    "failing": share,
                    "seed": seed,
                    "claimed": bool(g.reached),
                    "stated": float(g.guaranteed_agreement),
                    "realised": realised,
                    "unanswered": int(g.unanswered),
                    "chosen": run.choice,
                    "teacher_calls": int(len(run.sample.ids) + calls + timings["reask_calls"]),
                }
            )
    return out


def summarise(rows: list[dict]) -> list[dict]:
    from scalellm_dagster.core.audit import clopper_pearson

    table = []
    frame = pd.DataFrame(rows)
    for (name, policy, share), cell in frame.groupby(["dataset", "policy", "failing"], sort=False):
        runs, claims = len(cell), int(cell["claimed"].sum())
        misses = int((cell["claimed"] & (cell["realised"] < SETTINGS["target"])).sum())
        below = int((cell["realised"] < cell["stated"]).sum())
        upper = clopper_pearson(misses, runs, confidence=0.90)[1]  # one-sided 95 %
        table.append(
            {
                "dataset": name,
                "policy": policy,
                "failing": share,
                "runs": runs,
                "claims": claims,
                "misses": misses,
                "miss_rate_upper95": round(upper, 4),
                "holds": upper <= SETTINGS["delta"],
                "below_stated_bound": below,
                "teacher_calls_saved": round(1 - cell["teacher_calls"].mean() / SETTINGS["rows"], 3),
                "realised_mean": round(float(cell["realised"].mean()), 4),
            }
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", help="the folder with <name>/data.parquet")
    parser.add_argument("--runs", type=int, default=len(SEEDS), help="N pre-registered seeds")
    parser.add_argument("--offset", type=int, default=0, help="from this position in the list")
    parser.add_argument("--only", nargs="*", default=DATASETS)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--policies", nargs="*", default=POLICIES)
    parser.add_argument(
        "--teacher",
        default="simulated",
        choices=KINDS,
        help="the simulation of the teacher: errors uniform over rows, or on the rows a model finds hard",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    seeds = SEEDS[args.offset : args.offset + args.runs]
    jobs = [(args.datasets, name, seed, tuple(args.policies), args.teacher) for name in args.only for seed in seeds]
    rows = run_jobs(one_run, jobs, args.processes, 25, "runs")
    report = {
        "teacher": args.teacher,
        "settings": SETTINGS,
        "seeds": f"{seeds[0]}..{seeds[-1]}",
        "cells": summarise(rows),
        "seconds": round(time.perf_counter() - start, 1),
        "runs": rows,
    }
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(json.dumps(report["cells"], indent=1))


if __name__ == "__main__":
    main()
