"""The end-of-run summary printed by the CLI: per task, what the teacher labelled and how good the student is."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from scalellm_dagster.names import (
    AUDIT_LOG,
    CORPUS,
    EMBEDDINGS,
    LABELED_SAMPLE,
    MODEL_SELECTION_REPORT,
    PREDICTIONS,
    task_table,
)
from scalellm_dagster.settings import Settings
from scalellm_dagster.tasks_config import load_tasks


def task_summary(conn: duckdb.DuckDBPyConnection, task) -> dict:
    sample = conn.execute(
        f"SELECT count(*) FILTER (WHERE valid), count(*) FROM {task_table(task, LABELED_SAMPLE)}"
    ).fetchone()
    chosen = conn.execute(
        f"SELECT candidate, cv_accuracy FROM {task_table(task, MODEL_SELECTION_REPORT)} WHERE chosen"
    ).fetchone()
    preds, version = conn.execute(
        f"SELECT count(*), string_agg(DISTINCT model_version, ',') FROM {task_table(task, PREDICTIONS)}"
    ).fetchone()
    out = {
        "task": task.name,
        "teacher_labels": sample[0],
        "sampled": sample[1],
        "chosen": chosen[0],
        "cv_accuracy_vs_teacher": chosen[1],
        "predictions": preds,
        "model_version": version,
        "accuracy_vs_gold_unseen": None,
        "last_audit": None,
    }
    audits = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [task.name, AUDIT_LOG],
    ).fetchone()[0]
    if audits:
        out["last_audit"] = (
            conn.execute(
                f"SELECT agreement, passed FROM {task_table(task, AUDIT_LOG)} WHERE audited > 0 "
                "ORDER BY audited_at DESC LIMIT 1"
            ).fetchone()
            or "baseline"
        )  # the first audit asks nothing: its rows are those the sample came from
    if task.gold_column:
        out["accuracy_vs_gold_unseen"] = conn.execute(
            f"""SELECT avg(CASE WHEN p.label = c."{task.gold_column}" THEN 1.0 ELSE 0.0 END)
                FROM {task_table(task, PREDICTIONS)} p JOIN {CORPUS} c USING (id) WHERE p.source = 'student'"""
        ).fetchone()[0]
    return out


def print_summary(settings: Settings, what: str, seconds: float) -> None:
    """`what` names the run, e.g. "run 1a2b3c"."""
    tasks = load_tasks(settings.tasks)
    with duckdb.connect(settings.duckdb_path, read_only=True) as conn:
        corpus_rows = conn.execute(f"SELECT count(*) FROM {CORPUS}").fetchone()[0]
        print(f"\nscalellm: {what} succeeded in {seconds:.0f}s; {corpus_rows:,} corpus rows.")
        print(f"results in {settings.duckdb_path} (tables: {CORPUS}, {EMBEDDINGS}, <task>.{PREDICTIONS}, ...)\n")
        print(
            f"{'task':<12} {'teacher labels':>15} {'chosen student':<22} {'acc vs teacher (CV)':>20} "
            f"{'acc vs gold (unseen rows)':>26} {'predictions':>12} {'model':>13} {'last drift audit':>17}"
        )
        for task in tasks:
            s = task_summary(conn, task)
            gold = f"{s['accuracy_vs_gold_unseen']:.3f}" if s["accuracy_vs_gold_unseen"] is not None else "n/a"
            audit = s["last_audit"]
            if audit and audit != "baseline":
                audit = f"{audit[0]:.3f} {'passed' if audit[1] else 'FAILED'}"
            audit = audit or "none"
            print(
                f"{s['task']:<12} {s['teacher_labels']:>15,} {s['chosen']:<22} {s['cv_accuracy_vs_teacher']:>20.3f} "
                f"{gold:>26} {s['predictions']:>12,} {s['model_version']:>13} {audit:>17}"
            )
    gx = (Path(settings.gx_dir) if settings.gx_dir else Path(settings.duckdb_path).resolve().parent) / "gx"
    index = gx / "uncommitted" / "data_docs" / "local_site" / "index.html"
    if (gx / "expectations").is_dir():
        print(f"\nChecks: suites to edit in {gx / 'expectations'}/ (docs/data.md#the-suites-are-files-you-edit)")
        if index.is_file():
            print(f"Data Docs: {index.as_uri()}")
    home = os.environ.get("DAGSTER_HOME") or "$PWD/data/dagster_home"
    print(f"\nBrowse: DAGSTER_HOME={home} .venv/bin/dagster dev   (then open http://127.0.0.1:3000)")
