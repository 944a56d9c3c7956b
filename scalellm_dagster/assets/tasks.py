"""The asset factory: one branch of four assets per task in the tasks file, all hanging off `embeddings`."""


import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from scalellm_dagster.assets.metadata import column_schema, figure_png, md_table, png_markdown, preview
from scalellm_dagster.assets.shared import CORPUS_TABLE, EMBEDDINGS_TABLE, embeddings
from scalellm_dagster.core import plots
from scalellm_dagster.core.budget import advise_budget
from scalellm_dagster.core.cascade import Calibrator, cascade_tradeoff, plan_cascade
from scalellm_dagster.core.learning_curve import fit_learning_curve
from scalellm_dagster.core.report import TeacherSpend, candidate_table, summary_markdown
from scalellm_dagster.assets.sharded import embedding_casts, shard_partitions
from scalellm_dagster.assets.teaching import TeacherSession
from scalellm_dagster.automation import task_fingerprint
from scalellm_dagster.core.sampling import cluster_stratified_sample, random_sample, uncertainty_sample
from scalellm_dagster.core.selection import choose_student
from scalellm_dagster.core.sharding import share_of_budget
from scalellm_dagster.core.students import (
    default_sample_sizes,
    evaluate_candidates,
    fit_student,
    out_of_fold_confidence,
    predict_with_confidence,
)
from scalellm_dagster.resources import TeacherResource, Warehouse
from scalellm_dagster.settings import default_data_dir
from scalellm_dagster.tasks_config import TaskSpec

PREDICT_CHUNK = 200_000


def task_table(task: TaskSpec, name: str) -> str:
    return f"{task.name}.{name}"


def task_asset_key(task: TaskSpec, name: str) -> AssetKey:
    return AssetKey([task.name, name])


def build_task_assets(task: TaskSpec, shards: int = 0, embeddings_asset: AssetsDefinition = embeddings
                      ) -> list[AssetsDefinition]:
    """The task's four assets; with `shards`, `predictions` is partitioned like the sharded `embeddings`."""
    # The code version is the task's fingerprint: the UI marks a task's assets as changed when its definition does.
    common = {"key_prefix": [task.name], "group_name": task.name, "owners": ["team:scalellm"],
              "code_version": task_fingerprint(task)}
    task_tags = {"task": task.name}

    @asset(
        name="labeled_sample",
        deps=[embeddings_asset],
        kinds={"duckdb", "openai"},
        tags={**task_tags, "layer": "teacher"},
        description=(
            f"Rows chosen for the teacher ({task.sampling} sampling, budget {task.budget:,}) and the teacher's "
            f"label for each, raw answer kept. Task: {task.description or task.instruction}"
        ),
        **common,
    )
    def labeled_sample(context: AssetExecutionContext, warehouse: Warehouse, teacher: TeacherResource):
        corpus_df = warehouse.read_df(f"SELECT * FROM {CORPUS_TABLE}")
        budget, budget_note = _effective_budget(warehouse, task)
        matrix = None
        if task.sampling != "random":  # clustering and the student's uncertainty need every vector at once
            _, matrix = warehouse.read_embeddings(EMBEDDINGS_TABLE, ids=corpus_df["id"].to_numpy())
        session = TeacherSession(task, teacher, warehouse, corpus_df, _for_simulation(warehouse, teacher, matrix, shards),
                                 context.run.run_id, context.log.info)
        ids = corpus_df["id"].to_numpy()
        if task.sampling == "stratified-by-cluster":
            first = cluster_stratified_sample(ids, matrix, budget, seed=task.seed)
        else:  # uncertainty sampling's rows are not known yet: its estimate uses a random sample of the budget
            first = random_sample(ids, budget, seed=task.seed)
        estimate = teacher.estimate(task, corpus_df.set_index("id").loc[first, "text"].tolist(), len(corpus_df))
        context.log.info(f"{task.sampling} sampling, budget {budget:,} ({budget_note}); dry-run estimate before "
                         "any request (tokens ~4 chars each):\n" + estimate.to_string(index=False))
        if task.sampling == "uncertainty":
            chosen = uncertainty_sample(ids, matrix, budget, session.ask_labels, seed=task.seed,
                                        rounds=task.uncertainty_rounds, log=context.log.info)
        else:
            chosen = first
            session.ask(chosen)
        answers = pd.concat(session.answers).drop_duplicates("id").set_index("id").loc[chosen].reset_index()
        stats = session.stats
        sample = corpus_df.set_index("id").loc[chosen, ["text"]].reset_index().merge(
            answers, on="id", how="left", validate="one_to_one")
        sample.insert(0, "sample_rank", np.arange(len(sample)))
        sample["teacher"] = session.name
        sample["prompt_version"] = session.key["prompt_version"]
        sample["sampling"] = task.sampling
        written = warehouse.write_table(task_table(task, "labeled_sample"), sample)
        valid = sample[sample["valid"]]
        coverage = valid["teacher_label"].value_counts()
        return MaterializeResult(
            metadata={
                "dagster/row_count": written,
                "dagster/column_schema": column_schema(sample),
                "teacher": session.name + (" (simulation, not an LLM)" if teacher.kind == "simulated" else ""),
                "sampling": task.sampling,
                "budget": budget,
                "budget_source": budget_note,
                "prompt_version": session.key["prompt_version"],
                "valid_labels": int(len(valid)),
                "invalid_answers": int(len(sample) - len(valid)),
                "cache_hits": stats.cache_hits,
                "cache_misses": stats.asked,
                "teacher_requests": stats.requests,
                "teacher_wall_seconds": MetadataValue.float(round(stats.wall_seconds, 3)),
                "prompt_tokens": stats.prompt_tokens,
                "completion_tokens": stats.completion_tokens,
                "tokens_estimated": stats.tokens_estimated,
                "cost_usd": MetadataValue.float(round(stats.cost_usd, 6)),
                "classes_covered": f"{len(coverage)} of {len(task.labels)}",
                "label_counts": md_table(coverage.rename_axis("label").reset_index(name="rows"), max_rows=15),
                "preview": preview(sample[["id", "text", "teacher_label", "raw_answer", "valid", "from_cache"]]),
                "estimate_before_calls": md_table(estimate, floatfmt=".4f"),
                "notes": "; ".join(stats.notes) or "none",
            }
        )

    @asset(
        name="student_candidates",
        deps=[labeled_sample, embeddings],  # reads the vectors directly: refreshes must order after them
        kinds={"duckdb", "sklearn"},
        tags={**task_tags, "layer": "students"},
        description="Every candidate student at several sample sizes: cross-validated accuracy against the "
        "teacher's labels, train time, inference throughput; failures recorded with their reason.",
        **common,
    )
    def student_candidates(context: AssetExecutionContext, warehouse: Warehouse):
        sample = _valid_sample(warehouse, task)
        ids, X = warehouse.read_embeddings(EMBEDDINGS_TABLE, ids=sample["id"].to_numpy())
        y = sample["teacher_label"].to_numpy()
        sizes = list(task.sample_sizes) or default_sample_sizes(len(sample))
        sizes = [s for s in sizes if s <= len(sample)] or [len(sample)]
        context.log.info(f"training {len(task.candidates)} candidates at sizes {sizes} on {len(sample):,} labels")
        start = time.perf_counter()
        scores = evaluate_candidates(X, y, task.candidates, sizes, task.cv_folds, task.seed,
                                     progress=context.log.info)
        written = warehouse.write_table(task_table(task, "student_candidates"), scores)
        pivot = scores.pivot_table(index="candidate", columns="sample_size", values="cv_accuracy")
        pivot.columns = [f"acc@{c}" for c in pivot.columns]
        return MaterializeResult(
            metadata={
                "dagster/row_count": written,
                "dagster/column_schema": column_schema(scores),
                "sample_sizes": str(sizes),
                "failed": int((scores["status"] != "ok").sum()),
                "seconds": MetadataValue.float(round(time.perf_counter() - start, 2)),
                "accuracy_vs_teacher": md_table(pivot.reset_index()),
                "candidates": md_table(scores.drop(columns=["error"])),
            }
        )

    @asset(
        name="model_selection_report",
        deps=[student_candidates, embeddings],
        kinds={"duckdb", "sklearn"},
        tags={**task_tags, "layer": "selection"},
        description="The cost / accuracy / latency trade-off: accuracy vs teacher labels per candidate with a "
        "fitted learning curve and forecasts, teacher cost and time vs a row-by-row baseline, the chosen student.",
        **common,
    )
    def model_selection_report(context: AssetExecutionContext, warehouse: Warehouse, teacher: TeacherResource):
        scores = warehouse.read_df(f"SELECT * FROM {task_table(task, 'student_candidates')}")
        choice = choose_student(scores, task.selection, task.min_rows_per_second)
        table = candidate_table(scores, choice, task.budget)
        spend = _teacher_spend(warehouse, task, teacher.concurrency)
        corpus_rows = warehouse.row_count(CORPUS_TABLE)
        sample = _valid_sample(warehouse, task)
        _, X = warehouse.read_embeddings(EMBEDDINGS_TABLE, ids=sample["id"].to_numpy())
        y = sample["teacher_label"].to_numpy()
        oof_conf, oof_correct = out_of_fold_confidence(choice.candidate, X, y, task.cv_folds, task.seed)
        calibrated = Calibrator(oof_conf, oof_correct)(oof_conf)
        cascade = pd.DataFrame(cascade_tradeoff(calibrated, len(sample), corpus_rows))
        chosen_scores = scores[(scores["candidate"] == choice.candidate) & (scores["status"] == "ok")]
        advice = advise_budget(
            fit_learning_curve(chosen_scores["sample_size"], chosen_scores["cv_accuracy"]), len(sample),
            corpus_rows, cost_per_row=spend.cost_usd / max(spend.rows_answered, 1),
            seconds_per_row=spend.request_seconds / max(spend.rows_answered, 1) / max(teacher.concurrency, 1),
            target_accuracy=task.target_accuracy, max_cost_usd=task.max_teacher_cost_usd)
        teacher_label = _teacher_label(warehouse, task)
        summary = summary_markdown(task.name, choice, spend, corpus_rows, teacher_label)
        if advice:
            summary += (f"\n**Budget advice** ({advice.reason}): **{advice.recommended_budget:,}** teacher labels, "
                        f"forecast accuracy vs teacher {advice.forecast_accuracy:.3f}, teacher cost "
                        f"${advice.teacher_cost_usd:,.4f}, teacher time {advice.teacher_seconds:,.1f} s"
                        + (" — the next materialization tops the sample up to it (cached answers reused)."
                           if task.follow_budget_advice else " — set it as the task's budget, or follow_budget_advice: true."))
        report_table = table.assign(criterion=choice.criterion, reason=choice.reason,
                                    recommended_budget=advice.recommended_budget if advice else None)
        written = warehouse.write_table(task_table(task, "model_selection_report"), report_table)
        base = spend.baseline(corpus_rows)
        plots_md, plot_paths = {}, {}
        for key, fig in (
            ("learning_curves", plots.learning_curves_figure(scores, choice.candidate,
                                                             f"{task.name}: accuracy vs teacher labels")),
            ("accuracy_vs_time", plots.tradeoff_figure(table, spend.request_seconds / max(teacher.concurrency, 1),
                                                        corpus_rows, base["seconds"],
                                                        f"{task.name}: accuracy vs time to label every row")),
        ):
            png = figure_png(fig)
            plots.close(fig)
            path = _reports_dir(warehouse) / f"{task.name}_{key}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
            plots_md[key] = png_markdown(png, key.replace("_", " "))
            plot_paths[f"{key}_png"] = MetadataValue.path(str(path))
        per_run = warehouse.ledger_by_run(task.name)
        context.log.info(f"chosen student for {task.name}: {choice.candidate} ({choice.cv_accuracy:.3f})")
        return MaterializeResult(
            metadata={
                "dagster/row_count": written,
                "dagster/column_schema": column_schema(report_table),
                "chosen_model": choice.candidate,
                "chosen_cv_accuracy_vs_teacher": MetadataValue.float(round(choice.cv_accuracy, 4)),
                "selection_criterion": choice.criterion,
                "teacher_rows": spend.rows_answered,
                "teacher_requests": spend.requests,
                "teacher_cost_usd": MetadataValue.float(round(spend.cost_usd, 6)),
                "baseline_requests": base["teacher_calls"],
                "baseline_cost_usd_extrapolated": MetadataValue.float(round(base["cost_usd"], 6)),
                "recommended_budget": advice.recommended_budget if advice else "no target set",
                "summary": MetadataValue.md(summary),
                "candidates": md_table(table),
                "cascade_tradeoff": md_table(cascade, floatfmt=".4f"),
                "teacher_cost_by_run": md_table(per_run, floatfmt=".4f"),
                **plots_md,
                **plot_paths,
            }
        )

    @asset(
        name="predictions",
        deps=[model_selection_report, embeddings_asset],
        partitions_def=shard_partitions(shards) if shards else None,
        kinds={"duckdb", "sklearn"},
        tags={**task_tags, "layer": "predictions"},
        description="Every corpus row with its label, the student's confidence, and where the label came from: "
        "`teacher-sample` (sampled rows keep the teacher's label), `teacher-cascade` (rows the student was least "
        "sure of, sent back to the teacher when the task sets cascade_budget) or `student`."
        + (f" In {shards} shards, one Parquet file each, read as one view." if shards else ""),
        **common,
    )
    def predictions(context: AssetExecutionContext, warehouse: Warehouse, teacher: TeacherResource):
        chosen = warehouse.read_df(
            f"SELECT candidate FROM {task_table(task, 'model_selection_report')} WHERE chosen"
        )["candidate"].iloc[0]
        sample = _valid_sample(warehouse, task)
        _, X_train = warehouse.read_embeddings(EMBEDDINGS_TABLE, ids=sample["id"].to_numpy())
        y_train = sample["teacher_label"].to_numpy()
        start = time.perf_counter()
        model = fit_student(chosen, X_train, y_train, seed=task.seed)
        train_seconds = time.perf_counter() - start
        shard = int(context.partition_key) if shards else None
        table = task_table(task, "predictions")
        # A shard's run reads only its own files: the shard's vectors and its previous predictions.
        if shard is None:
            embedding_source = EMBEDDINGS_TABLE
            predictions_source = table if warehouse.table_exists(table) else None
        else:
            dim = int(warehouse.read_df(f"SELECT array_length(vector) AS d FROM {EMBEDDINGS_TABLE} LIMIT 1")["d"][0])
            embedding_source = warehouse.shard_relation(EMBEDDINGS_TABLE, shard, shards, embedding_casts(dim))
            predictions_source = (warehouse.shard_relation(table, shard, shards)
                                  if warehouse.shard_path(table, shard, shards).exists() else None)
        current = warehouse.read_df(f"SELECT id, text_hash, embedding_version FROM {embedding_source}")
        if shard is not None:
            context.log.info(f"shard {shard + 1}/{shards}: {len(current):,} rows")
        version = _model_version(chosen, sample, task)
        reuse, compute = _reusable_predictions(warehouse, current, version, embedding_source, predictions_source)
        context.log.info(f"predicting {len(compute):,} rows ({len(reuse):,} unchanged predictions reused)")
        out = current.assign(model_version=version, student_label=None, confidence=np.float32(np.nan))
        if len(reuse):
            out = out.set_index("id")
            out.loc[reuse.index, ["student_label", "confidence"]] = reuse[["student_label", "confidence"]]
            out = out.reset_index()
        todo_ids = out["id"].to_numpy()[compute]
        start = time.perf_counter()
        method = "predict_proba"
        for begin in range(0, len(todo_ids), PREDICT_CHUNK):
            chunk_ids = todo_ids[begin : begin + PREDICT_CHUNK]
            _, X_chunk = warehouse.read_embeddings(ids=chunk_ids, relation_sql=embedding_source)
            pred = predict_with_confidence(model, X_chunk)
            method = pred.method
            out.loc[compute[begin : begin + PREDICT_CHUNK], "student_label"] = pred.labels.astype(str)
            out.loc[compute[begin : begin + PREDICT_CHUNK], "confidence"] = pred.confidence
            context.log.info(f"predicted {min(begin + PREDICT_CHUNK, len(todo_ids)):,}/{len(todo_ids):,} rows "
                             f"({(begin + len(chunk_ids)) / max(time.perf_counter() - start, 1e-9):,.0f} rows/s)")
        predict_seconds = time.perf_counter() - start
        out["confidence"] = out["confidence"].astype(np.float32)
        teacher_labels = sample.set_index("id")["teacher_label"]
        from_teacher = out["id"].isin(teacher_labels.index).to_numpy()
        out["label"] = out["student_label"]
        out.loc[from_teacher, "label"] = out.loc[from_teacher, "id"].map(teacher_labels)
        out["source"] = np.where(from_teacher, "teacher-sample", "student")
        cascade_meta = {}
        cascade_budget = task.cascade_budget if shard is None else share_of_budget(task.cascade_budget, shard, shards)
        if cascade_budget > 0:
            cascade_meta = _cascade(context, task, warehouse, teacher, out, chosen, X_train, y_train, cascade_budget,
                                   shards)
        out["model"] = chosen
        out = out[["id", "label", "source", "confidence", "student_label", "model", "text_hash",
                   "embedding_version", "model_version"]]
        if shard is None:
            written = warehouse.write_table(table, out)
            shard_meta = {}
        else:
            data = pa.Table.from_pandas(out, preserve_index=False)
            written = warehouse.write_shard(table, shard, shards, data.schema, data.to_batches())
            published = warehouse.publish_shards(table, shards)
            shard_meta = {"shard": f"{shard + 1} of {shards}", "view_published": published,
                          "file": str(warehouse.shard_path(table, shard, shards))}
        metadata = {
            **shard_meta,
            "dagster/row_count": written,
            "dagster/column_schema": column_schema(out),
            "model": chosen,
            "confidence_method": method,
            "rows_predicted": int(len(compute)),
            "rows_reused": int(len(reuse)),
            "rows_from_teacher_sample": int((out["source"] == "teacher-sample").sum()),
            "rows_from_teacher_cascade": int((out["source"] == "teacher-cascade").sum()),
            "rows_from_student": int((out["source"] == "student").sum()),
            "train_seconds": MetadataValue.float(round(train_seconds, 3)),
            "predict_rows_per_second": MetadataValue.float(round(len(compute) / max(predict_seconds, 1e-9), 1)),
            "mean_confidence": MetadataValue.float(round(float(out["confidence"].mean()), 4)),
            **cascade_meta,
            "label_counts": md_table(out["label"].value_counts().rename_axis("label").reset_index(name="rows"),
                                     max_rows=15),
            "preview": preview(out),
        }
        metadata.update(_gold_metrics(warehouse, task, out, from_teacher))
        return MaterializeResult(metadata=metadata)

    return [labeled_sample, student_candidates, model_selection_report, predictions]


def _reports_dir(warehouse: Warehouse) -> Path:
    """Plots go beside the warehouse file, so each warehouse (a test's, a user's) keeps its own."""
    base = default_data_dir() if warehouse.database == ":memory:" else Path(warehouse.database).parent
    return base / "reports"


def _effective_budget(warehouse: Warehouse, task: TaskSpec) -> tuple[int, str]:
    """The task's budget, or the last report's advice when the task follows it (capped by max_budget)."""
    if not task.follow_budget_advice:
        return task.budget, "task budget"
    table = task_table(task, "model_selection_report")
    if not warehouse.table_exists(table):
        return task.budget, "task budget (no report yet to take advice from)"
    advice = warehouse.read_df(f"SELECT max(recommended_budget) AS n FROM {table}")["n"].iloc[0]
    if pd.isna(advice):
        return task.budget, "task budget (the last report gave no advice)"
    cap = task.max_budget or task.budget
    return int(min(max(advice, 2), cap)), f"advice of the last report ({int(advice):,}), capped at {cap:,}"


def _cascade(context, task: TaskSpec, warehouse: Warehouse, teacher: TeacherResource, out: pd.DataFrame,
             chosen: str, X_train, y_train, budget: int, shards: int = 0) -> dict:
    """Send the rows the student is least sure of back to the teacher, as far as the target needs and the
    cascade budget allows; updates `out` in place and returns metadata."""
    oof_conf, oof_correct = out_of_fold_confidence(chosen, X_train, y_train, task.cv_folds, task.seed)
    agreement = Calibrator(oof_conf, oof_correct)(out["confidence"].to_numpy())
    student = (out["source"] == "student").to_numpy()
    plan = plan_cascade(agreement[student], task.cascade_target_agreement,
                        max_fraction=budget / max(int(student.sum()), 1))
    pick = np.flatnonzero(student & (agreement <= plan.threshold))
    pick = pick[np.argsort(agreement[pick], kind="stable")[:budget]]
    context.log.info(f"cascade: {len(pick):,} least confident rows to the teacher (threshold {plan.threshold:.3f}, "
                     f"expected agreement {plan.expected_agreement_without:.3f} -> {plan.expected_agreement_with:.3f})")
    asked = 0
    if len(pick):
        corpus_df = warehouse.read_df(f"SELECT * FROM {CORPUS_TABLE}")
        session = TeacherSession(task, teacher, warehouse, corpus_df, _for_simulation(warehouse, teacher, None, shards),
                                 context.run.run_id, context.log.info)
        answers = session.ask(out["id"].to_numpy()[pick])
        ok = answers["valid"].to_numpy()
        rows = pick[ok]
        out.loc[out.index[rows], "label"] = answers["teacher_label"].to_numpy()[ok]
        out.loc[out.index[rows], "source"] = "teacher-cascade"
        asked = session.stats.requests
    sample_calls = int((out["source"] == "teacher-sample").sum())
    return {
        "cascade_threshold": MetadataValue.float(round(plan.threshold, 4)),
        "cascade_target_agreement": task.cascade_target_agreement,
        "cascade_target_reached": plan.reached,
        "expected_agreement_without_cascade": MetadataValue.float(round(plan.expected_agreement_without, 4)),
        "expected_agreement_with_cascade": MetadataValue.float(round(plan.expected_agreement_with, 4)),
        "teacher_rows_without_cascade": sample_calls,
        "teacher_rows_with_cascade": sample_calls + int((out["source"] == "teacher-cascade").sum()),
        "cascade_requests": asked,
    }


def _for_simulation(warehouse: Warehouse, teacher: TeacherResource, matrix, shards: int):
    """What the simulated teacher needs to err plausibly: the row-aligned matrix when one is in memory anyway,
    otherwise blocks streamed from the warehouse or the shard files (a million vectors are never loaded at once)."""
    if teacher.kind != "simulated" or matrix is not None:
        return matrix
    if shards:
        return lambda: warehouse.iter_shard_embeddings(EMBEDDINGS_TABLE, shards)
    return lambda: warehouse.iter_embeddings(EMBEDDINGS_TABLE)


def _model_version(chosen: str, sample: pd.DataFrame, task: TaskSpec) -> str:
    """The student is a function of its kind, its seed and the teacher's labels: same inputs, same predictions."""
    labels = pd.util.hash_pandas_object(sample[["id", "teacher_label"]].astype(str), index=False).to_numpy()
    return hashlib.sha256(f"{chosen}|{task.seed}|".encode() + labels.tobytes()).hexdigest()[:12]


def _reusable_predictions(warehouse: Warehouse, current: pd.DataFrame, version: str, embedding_source: str,
                          predictions_source: str | None):
    """Stored student predictions still valid (same text, vectors and student), and positions to predict.
    The sources are the warehouse's relations, or a shard's own files; no stored predictions: nothing to reuse."""
    empty = pd.DataFrame(columns=["student_label", "confidence"])
    if predictions_source is None or "model_version" not in warehouse.read_df(
            f"SELECT * FROM {predictions_source} LIMIT 0").columns:
        return empty, np.arange(len(current))
    stored = warehouse.read_df(
        f"""SELECT p.id, p.student_label, p.confidence FROM {predictions_source} p
            JOIN {embedding_source} e
            ON p.id = e.id AND p.text_hash = e.text_hash AND p.embedding_version = e.embedding_version
            WHERE p.model_version = ?""", [version]).set_index("id")
    stored = stored[stored.index.isin(current["id"])]  # rows that left the corpus (or the shard) are not reused
    known = current["id"].isin(stored.index).to_numpy()
    return stored, np.flatnonzero(~known)


def _valid_sample(warehouse: Warehouse, task: TaskSpec) -> pd.DataFrame:
    return warehouse.read_df(
        f"SELECT id, teacher_label FROM {task_table(task, 'labeled_sample')} WHERE valid ORDER BY sample_rank"
    )


def _teacher_label(warehouse: Warehouse, task: TaskSpec) -> str:
    teacher = warehouse.read_df(f"SELECT any_value(teacher) AS t FROM {task_table(task, 'labeled_sample')}")["t"][0]
    return f"`{teacher}`" + (" — a simulation answering from gold labels, not an LLM"
                             if str(teacher).startswith("simulated") else "")


def _teacher_spend(warehouse: Warehouse, task: TaskSpec, concurrency: int) -> TeacherSpend:
    t = warehouse.ledger_totals(task.name)
    return TeacherSpend(int(t["rows_answered"]), int(t["requests"]), float(t["request_seconds"]),
                        float(t["cost_usd"]), int(t["prompt_tokens"]), int(t["completion_tokens"]),
                        bool(t["tokens_estimated"]), concurrency)


def _gold_metrics(warehouse: Warehouse, task: TaskSpec, out: pd.DataFrame, from_teacher: np.ndarray) -> dict:
    """Accuracy against the gold column, when the task has one, on rows the teacher never saw."""
    if not task.gold_column:
        return {}
    gold = warehouse.read_df(f'SELECT id, "{task.gold_column}" AS gold FROM {CORPUS_TABLE}')
    merged = out.merge(gold, on="id", how="left")
    unseen = merged[~from_teacher]
    seen = merged[from_teacher]
    return {
        "accuracy_vs_gold_student_only_unseen_rows": MetadataValue.float(
            round(float((unseen["student_label"] == unseen["gold"]).mean()), 4)),
        "accuracy_vs_gold_unseen_rows": MetadataValue.float(round(float((unseen["label"] == unseen["gold"]).mean()), 4)),
        "accuracy_vs_gold_teacher_rows": MetadataValue.float(round(float((seen["label"] == seen["gold"]).mean()), 4)),
        "accuracy_vs_gold_all_rows": MetadataValue.float(round(float((merged["label"] == merged["gold"]).mean()), 4)),
    }
