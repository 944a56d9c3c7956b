"""How often does the drift audit fail without drift (false alarms), and how often with it (detection)?

    .venv/bin/python -m benchmarks.drift_audit [--datasets ../shared/datasets/ag_news ...] [--seeds 50]
        [--budget 1000] [--audit-rows 30,100] [--out benchmarks/results/drift_audit.json]

Per dataset (`data.parquet`: id, text, label; the bundled banking77 demo when none is given), embedded once with the
static embedder. Per seed, a quarter of the classes (at least one; picked by the seed) is held out of the "old"
rows; a two-class dataset is skipped (holding one out leaves nothing to learn). The simulated teacher
(90 % accurate; `--teacher simulated`: errors on rows drawn by a hash, to the nearest other class; `simulated_hard`:
errors on the rows a model finds hard) labels `--budget` random old rows; the chosen student is the
best of logistic regression, linear SVM and ridge by 5-fold cross-validated agreement with the teacher, which is
the report's estimate. A refresh brings 2,000 new rows of which a share comes from the held-out class (0 %: no
drift) and the rest are unseen old rows; the audit (`core.audit`: seeded draw, exact 95 % interval, fails when its
upper end is below the estimate) asks the teacher about `audit_rows` of them. Reported: the share of seeds whose
audit failed, per drift share and audit size, and the mean realised agreement on all new rows.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import cross_val_score

from benchmarks.simulated_teachers import KINDS, answers_for
from scalellm_dagster.core.audit import draw_audit, judge_audit
from scalellm_dagster.core.students import fit_student, make_student
from scalellm_dagster.embedders.static import StaticEmbedder
from scalellm_dagster.settings import DEMO_CORPUS

STUDENTS = ["logistic_regression", "linear_svm", "ridge"]
DRIFT_SHARES = [0.0, 0.1, 0.25, 0.5, 1.0]
NEW_ROWS = 2000


def load(path: str) -> tuple[str, pd.DataFrame]:
    if path == "demo":
        df = pd.read_parquet(DEMO_CORPUS).rename(columns={"intent": "label"})
        return "banking77 (bundled demo)", df[["id", "text", "label"]]
    return Path(path).name, pd.read_parquet(Path(path) / "data.parquet")[["id", "text", "label"]]


def one_dataset(name: str, df: pd.DataFrame, args) -> list[dict]:
    texts, gold = df["text"].tolist(), df["label"].astype(str).to_numpy()
    X = StaticEmbedder().embed(texts)
    classes = sorted(set(gold))
    if len(classes) < 3:
        print(f"{name}: {len(classes)} classes, skipped (holding one out leaves nothing to learn)")
        return []
    audit_sizes = [int(a) for a in args.audit_rows.split(",")]
    rows = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        held_out = rng.choice(classes, max(1, len(classes) // 4), replace=False)
        teacher = answers_for(args.teacher, texts, gold, classes, X, seed, 0.9).astype(str)
        old = np.flatnonzero(~np.isin(gold, held_out))
        novel = np.flatnonzero(np.isin(gold, held_out))
        sample = rng.choice(old, size=min(args.budget, len(old) // 2), replace=False)
        unseen_old = np.setdiff1d(old, sample)
        y = teacher[sample]
        cv = {s: cross_val_score(make_student(s, seed), X[sample], y, cv=5).mean() for s in STUDENTS}
        chosen = max(cv, key=cv.get)
        estimate = float(cv[chosen])
        student = fit_student(chosen, X[sample], y, seed)
        for share in DRIFT_SHARES:
            n_novel = min(int(round(share * NEW_ROWS)), len(novel))
            new = np.concatenate(
                [rng.choice(novel, n_novel, replace=False), rng.choice(unseen_old, NEW_ROWS - n_novel, replace=False)]
            )
            agrees = student.predict(X[new]) == teacher[new]
            for size in audit_sizes:
                picked = draw_audit(np.arange(len(new)), size, seed)
                verdict = judge_audit(agrees[picked], estimate)
                rows.append(
                    {
                        "dataset": name,
                        "teacher": args.teacher,
                        "seed": seed,
                        "held_out_classes": len(held_out),
                        "drift_share": share,
                        "novel_rows": n_novel,
                        "audit_rows": size,
                        "estimate": estimate,
                        "agreement_all_new": float(agrees.mean()),
                        "audit_agreement": verdict.agreement,
                        "failed": not verdict.passed,
                    }
                )
        if (seed + 1) % 10 == 0:
            print(f"{name}: {seed + 1}/{args.seeds} seeds ({time.perf_counter() - start:.0f}s)", flush=True)
    return rows


def summarise(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    return (
        table.groupby(["dataset", "teacher", "drift_share", "audit_rows"])
        .agg(
            seeds=("seed", "nunique"),
            estimate_mean=("estimate", "mean"),
            agreement_on_all_new_rows=("agreement_all_new", "mean"),
            audit_fail_rate=("failed", "mean"),
        )
        .reset_index()
        .round(4)
    )


def main() -> None:
    warnings.simplefilter("ignore")  # small classes in cross-validation folds
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["demo"])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--audit-rows", default="30,100")
    parser.add_argument("--teacher", default="simulated", choices=KINDS, help="which simulation of the teacher")
    parser.add_argument("--out", default="benchmarks/results/drift_audit.json")
    args = parser.parse_args()
    rows = [row for path in args.datasets for row in one_dataset(*load(path), args)]
    summary = summarise(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"settings": vars(args), "students": STUDENTS, "summary": summary.to_dict("records")}, indent=1)
    )
    print(summary.to_markdown(index=False))


if __name__ == "__main__":
    main()
