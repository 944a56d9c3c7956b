"""The `drift_audit` asset (one per task) and the warehouse state it keeps: each refresh's new rows audited by the
teacher, and the drift top-ups the sample takes after two failed audits in a row (`core.audit` decides; this module
reads and writes the tables).

Tables, per task schema, all append-only:
- `audit_log`      one row per audit: new rows, rows audited, agreement and its 95 % interval, the estimate, verdict
- `audit_answers`  the audited rows: the teacher's answer and the deployed label (never used for training)
- `audit_scope`    every id an audit has counted as new, so the next refresh's new rows are the rest
- `drift_topups`   rows added to the sample after failed audits, and the audit that called for them
"""

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue

from scalellm_dagster.assets.metadata import figure_png, md_table, png_markdown
from scalellm_dagster.assets.task_branch import task_asset
from scalellm_dagster.assets.task_io import simulation_vectors
from scalellm_dagster.assets.teacher_session import warehouse_session
from scalellm_dagster.core import plots
from scalellm_dagster.core.audit import (
    FAILURES_BEFORE_TOPUP,
    AuditVerdict,
    draw_audit,
    judge_audit,
)
from scalellm_dagster.names import (
    AUDIT_ANSWERS,
    AUDIT_LOG,
    AUDIT_SCOPE,
    CORPUS,
    DRIFT_AUDIT,
    EMBEDDINGS,
    PREDICTIONS,
    task_table,
)
from scalellm_dagster.resources import TaskStore, TeacherResource, Warehouse
from scalellm_dagster.resources.duckdb_sql import utc_now
from scalellm_dagster.resources.task_store import failing_streak
from scalellm_dagster.tasks_config import TaskSpec


def drift_audit_asset(task: TaskSpec, predictions: AssetsDefinition, kinds: set[str]) -> AssetsDefinition:
    @task_asset(
        task,
        DRIFT_AUDIT,
        [predictions],
        "audit",
        (
            f"Each refresh's new rows audited: {task.audit_rows} of those the student labelled, asked of the "
            "teacher (never trained on), their agreement with the deployed labels and its 95 % interval against "
            "the report's estimate. Two failed audits in a row call for a drift top-up of "
            f"{task.drift_topup:,} sample rows from the failing refreshes (model_policy_sensor reruns the task)."
        ),
        kinds=kinds,
    )
    def drift_audit(context: AssetExecutionContext, task_store: TaskStore, teacher: TeacherResource):
        if task.audit_rows == 0:
            return MaterializeResult(metadata={"audit": "off (audit_rows: 0)"})
        return materialize_audit(context, task, task_store, teacher)

    return drift_audit


def materialize_audit(
    context: AssetExecutionContext, task: TaskSpec, store: TaskStore, teacher: TeacherResource
) -> MaterializeResult:
    warehouse = store.warehouse
    predictions, scope = task_table(task, PREDICTIONS), task_table(task, AUDIT_SCOPE)
    new = warehouse.read_df(
        f"SELECT p.id, p.label, p.source, e.text_hash FROM {predictions} p "
        f"JOIN {EMBEDDINGS} e USING (id){_unaudited(warehouse, scope)}"
    )
    history, topups = store.audit_history(task), store.granted_topups(task)
    estimate, population = store.audit_estimate(task)
    run_id = context.run.run_id
    if not len(new):
        context.log.info("no rows new since the last audit: nothing to audit")
        return MaterializeResult(
            metadata={
                **_metadata(task, history, topups, None, 0, estimate, run_id=run_id, answers=None),
                "estimate_population": population,
            }
        )
    student_rows = new.loc[new["source"] == "student", "id"].to_numpy()
    if not warehouse.table_exists(scope):
        return _baseline(context, task, store, new, student_rows, topups, estimate=estimate, population=population)
    picked = draw_audit(student_rows, task.audit_rows, task.seed)
    context.log.info(
        f"{len(new):,} rows new since the last audit ({len(student_rows):,} labelled by the "
        f"student); asking the teacher about {len(picked):,} of them"
    )
    answers, invalid = _audit_answers(context, task, warehouse, teacher, picked, new.set_index("id")["label"])
    model = store.predicting_model(task)
    verdict = judge_audit(
        answers["agrees"].to_numpy(), estimate, _poolable(history, topups, model, estimate), task.audit_pool_rows
    )
    log_row = _log_row(warehouse, run_id, new, student_rows, verdict, estimate, model=model)
    warehouse.append_tables(
        {
            task_table(task, AUDIT_LOG): log_row,
            task_table(task, AUDIT_ANSWERS): answers.assign(audit_run_id=run_id),
            scope: pd.DataFrame({"id": new["id"], "text_hash": new["text_hash"], "audit_run_id": run_id}),
        }
    )
    history = pd.concat([history, log_row], ignore_index=True) if len(history) else log_row
    if not verdict.audited:
        context.log.info("not audited: none of the new rows was labelled by the student")
    return MaterializeResult(
        metadata={
            **_metadata(
                task,
                history,
                topups,
                verdict,
                len(new),
                estimate,
                run_id=run_id,
                answers=answers,
                reports_dir=store.reports_dir(),
            ),
            "estimate_population": population,
            "audit_invalid_answers": invalid,
        }
    )


BASELINE = (
    "baseline, not a drift test: these rows are the population the sample was drawn from, and the report's "
    "cross-validated estimate already measures the student on them; audits start with the rows new after this run"
)


def _baseline(
    context: AssetExecutionContext,
    task: TaskSpec,
    store: TaskStore,
    new: pd.DataFrame,
    student_rows: np.ndarray,
    topups: pd.DataFrame,
    *,
    estimate: float,
    population: str,
) -> MaterializeResult:
    """The task's first audit: every row is in its scope, none goes to the teacher. Auditing the rows the sample came
    from can only re-measure the report's estimate, and at 30 rows one run in fifty or so would read as drift."""
    run_id, warehouse = context.run.run_id, store.warehouse
    unjudged = AuditVerdict(0, 0, None, None, None, estimate, None)
    log_row = _log_row(warehouse, run_id, new, student_rows, unjudged, estimate, model=store.predicting_model(task))
    warehouse.append_tables(
        {
            task_table(task, AUDIT_LOG): log_row,
            task_table(task, AUDIT_SCOPE): pd.DataFrame(
                {"id": new["id"], "text_hash": new["text_hash"], "audit_run_id": run_id}
            ),
        }
    )
    context.log.info(f"first audit of {task.name}: {len(new):,} rows recorded as the {BASELINE}")
    return MaterializeResult(
        metadata={
            **_metadata(task, log_row, topups, None, len(new), estimate, run_id=run_id, answers=None),
            "audit_passed": BASELINE,
            "estimate_population": population,
        }
    )


def _audit_answers(
    context: AssetExecutionContext,
    task: TaskSpec,
    warehouse: Warehouse,
    teacher: TeacherResource,
    picked: np.ndarray,
    deployed: pd.Series,
) -> tuple[pd.DataFrame, int]:
    """(the teacher's answer, the deployed label and whether they agree, per audited row; invalid answers)."""
    answers = pd.DataFrame({"id": picked[:0], "teacher_label": pd.Series([], dtype=object)})
    if len(picked):
        corpus_df = warehouse.read_df(f"SELECT * FROM {CORPUS}")
        session = warehouse_session(
            task,
            teacher,
            warehouse,
            corpus_df,
            simulation_vectors(warehouse, teacher, None),
            context.run.run_id,
            log=context.log.info,
        )
        answers = session.ask(picked)[["id", "teacher_label", "valid"]]
        # an invalid answer counts as a disagreement: dropping it would shrink the audit without a trace
        answers.loc[~answers["valid"], "teacher_label"] = None
    answers = answers.assign(deployed_label=deployed.loc[answers["id"]].to_numpy())
    answers["agrees"] = (answers["teacher_label"] == answers["deployed_label"]).fillna(False).astype(bool)
    invalid = int((~answers["valid"].astype(bool)).sum()) if len(answers) else 0
    return answers.drop(columns="valid"), invalid


def _log_row(
    warehouse: Warehouse,
    run_id: str,
    new: pd.DataFrame,
    student_rows: np.ndarray,
    verdict: AuditVerdict,
    estimate: float,
    *,
    model: str,
) -> pd.DataFrame:
    now = utc_now()
    log_row = pd.DataFrame(
        [
            {
                "audit_run_id": run_id,
                "audited_at": now,
                "corpus_rows": warehouse.row_count(CORPUS),
                "new_rows": len(new),
                "student_rows": len(student_rows),
                "audited": verdict.audited,
                "agreed": verdict.agreed,
                "agreement": verdict.agreement,
                "ci_low": verdict.ci_low,
                "ci_high": verdict.ci_high,
                "estimate": estimate,
                "passed": verdict.passed,
                "model": model,
            }
        ]
    )
    # typed, so that a baseline's empty verdict does not make the table's first columns text
    return log_row.astype({"agreement": "Float64", "ci_low": "Float64", "ci_high": "Float64", "passed": "boolean"})


def _poolable(history: pd.DataFrame, topups: pd.DataFrame, model: str, estimate: float) -> list[tuple]:
    """(audited, agreed, estimate) of the consecutive latest audits of the same student (same model, same expected
    agreement) since the last drift top-up, oldest first: what this audit may be pooled with."""
    if not len(history):
        return []
    if len(topups):
        after = np.flatnonzero(history["audit_run_id"].to_numpy() == topups["after_audit_run_id"].iloc[-1])
        history = history.iloc[after[-1] + 1 :] if len(after) else history
    pool = []
    for row in history.iloc[::-1].itertuples():
        if row.model != model or abs(float(row.estimate) - estimate) > 1e-9:
            break
        if row.audited > 0:
            pool.append((int(row.audited), int(row.agreed), float(row.estimate)))
    return pool[::-1]


def _unaudited(warehouse: Warehouse, scope: str) -> str:
    """The join that keeps rows no audit has counted: a row is known by its id and the hash of its text, so a row
    whose text changed, or a deleted id back with a new text, is new to the audit. A scope kept before the text
    hash was recorded gets the column, empty: its rows are counted as new once more."""
    if not warehouse.table_exists(scope):
        return ""
    if "text_hash" not in warehouse.columns(scope):
        warehouse.execute(f"ALTER TABLE {scope} ADD COLUMN text_hash VARCHAR")
    return f" ANTI JOIN {scope} s ON p.id = s.id AND e.text_hash = s.text_hash"


def _pooled_metadata(verdict: AuditVerdict | None) -> dict:
    if verdict is None or verdict.pooled_passed is None:
        return {"pooled_audit": "none (no earlier audit of this student to pool with)"}
    return {
        "pooled_audit": f"{verdict.pooled_audits} audits, {verdict.pooled_audited:,} rows: agreement "
        f"{verdict.pooled_agreement:.3f}, 95 % interval up to {verdict.pooled_ci_high:.3f}, "
        f"expected {verdict.pooled_estimate:.3f}",
        "pooled_audit_passed": verdict.pooled_passed,
    }


def _metadata(
    task: TaskSpec,
    history: pd.DataFrame,
    topups: pd.DataFrame,
    verdict: AuditVerdict | None,
    new_rows: int,
    estimate: float,
    *,
    run_id: str,
    answers: pd.DataFrame | None,
    reports_dir=None,
) -> dict:
    streak = failing_streak(history, topups)
    due = len(streak) >= FAILURES_BEFORE_TOPUP
    shown = (
        history.tail(20).assign(run=lambda d: d["audit_run_id"].str.slice(0, 8))[
            ["run", "audited_at", "new_rows", "audited", "agreement", "ci_low", "ci_high", "estimate", "passed"]
        ]
        if len(history)
        else None
    )
    meta = {
        "new_rows": new_rows,
        **_pooled_metadata(verdict),
        "audited_rows": verdict.audited if verdict else 0,
        "audit_agreement": MetadataValue.float(round(verdict.agreement, 4)) if verdict and verdict.audited else "none",
        "audit_interval_95": (
            f"[{verdict.ci_low:.3f}, {verdict.ci_high:.3f}] (Clopper-Pearson)"
            if verdict and verdict.audited
            else "none"
        ),
        "expected_agreement": MetadataValue.float(round(estimate, 4)),  # of the audited rows
        "audit_passed": "not audited this run" if verdict is None or verdict.passed is None else verdict.passed,
        "failed_audits_in_a_row": len(streak),
        "drift_topup_due": due,
        # the sensor keys its run request on this: one top-up per failing streak
        "last_failed_audit_run_id": str(streak["audit_run_id"].iloc[-1]) if len(streak) else "none",
        "drift_topups_granted_rows": len(topups),
        "audits": md_table(shown, floatfmt=".3f") if shown is not None else "no audit yet",
        "audit_rule": f"{task.audit_rows} rows a refresh, pooled with the same student's latest audits up to "
        f"{task.audit_pool_rows} rows; fails when either 95 % interval's upper end is below its expected agreement; "
        f"{FAILURES_BEFORE_TOPUP} failures in a row call for a top-up of {task.drift_topup:,} rows",
    }
    if shown is not None and (history["audited"] > 0).any():
        fig = plots.audit_figure(history.tail(20), f"{task.name}: drift audits")
        png = figure_png(fig)
        plots.close(fig)
        meta["audit_plot"] = png_markdown(png, "agreement on each refresh's new rows")
        if reports_dir is not None:
            path = reports_dir / f"{task.name}_drift_audits.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
            meta["audit_plot_png"] = MetadataValue.path(str(path))
    if answers is not None and len(answers):
        disagreements = answers[~answers["agrees"]].head(10)
        meta["disagreements"] = (
            md_table(disagreements[["id", "teacher_label", "deployed_label"]]) if len(disagreements) else "none"
        )
    if run_id:
        meta["audit_run_id"] = run_id
    return meta
