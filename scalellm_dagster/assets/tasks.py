"""The asset factory: one branch of four assets per task in the tasks file, all hanging off `embeddings`."""


import time

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from scalellm_dagster.assets.metadata import figure_png, md_table, png_markdown, preview
from scalellm_dagster.assets.shared import CORPUS_TABLE, EMBEDDINGS_TABLE, embeddings
from scalellm_dagster.core import plots
from scalellm_dagster.core.report import TeacherSpend, candidate_table, summary_markdown
from scalellm_dagster.core.sampling import random_sample
from scalellm_dagster.core.selection import choose_student
from scalellm_dagster.core.students import default_sample_sizes, evaluate_candidates, fit_student, \
    predict_with_confidence
from scalellm_dagster.resources import TeacherResource, Warehouse
from scalellm_dagster.resources.warehouse import CACHE_SCHEMA
from scalellm_dagster.settings import default_data_dir
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.runner import label_with_cache

PREDICT_CHUNK = 200_000


def task_table(task: TaskSpec, name: str) -> str:
    return f"{task.name}.{name}"


def task_asset_key(task: TaskSpec, name: str) -> AssetKey:
    return AssetKey([task.name, name])


def build_task_assets(task: TaskSpec) -> list[AssetsDefinition]:
    common = {"key_prefix": [task.name], "group_name": task.name, "owners": ["team:scalellm"]}
    task_tags = {"task": task.name}

    @asset(
        name="labeled_sample",
        deps=[embeddings],
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
        chosen_ids = random_sample(corpus_df["id"], task.budget, seed=task.seed)
        matrix = None
        if teacher.kind == "simulated":  # the simulation errs towards nearby classes, so it needs the vectors
            _, matrix = warehouse.read_embeddings(EMBEDDINGS_TABLE, ids=corpus_df["id"].to_numpy())
        model = teacher.build(task, corpus_df, matrix)
        warehouse.ensure_cache_tables()
        key = {"provider": model.provider, "model": model.model, "prompt_version": model.prompt_version,
               "task": task.name, "run_id": context.run.run_id}
        rows = corpus_df.set_index("id").loc[chosen_ids, ["text"]].reset_index()
        estimate = teacher.estimate(task, rows["text"].tolist(), len(corpus_df))
        context.log.info("dry-run estimate before any request (tokens ~4 chars each):\n"
                         + estimate.to_string(index=False))
        answers, stats = label_with_cache(
            model, rows,
            lookup=lambda hashes: warehouse.cached_answers(key["provider"], key["model"], key["prompt_version"], hashes),
            store=lambda answered, ledger: warehouse.store_answers(key, answered, ledger),
            batch_size=teacher.batch_size, concurrency=teacher.concurrency, log=context.log.info,
        )
        sample = rows.merge(answers, on="id", how="left", validate="one_to_one")
        sample.insert(0, "sample_rank", np.arange(len(sample)))
        sample["teacher"] = f"{model.provider}:{model.model}"
        sample["prompt_version"] = model.prompt_version
        written = warehouse.write_table(task_table(task, "labeled_sample"), sample)
        valid = sample[sample["valid"]]
        coverage = valid["teacher_label"].value_counts()
        return MaterializeResult(
            metadata={
                "dagster/row_count": written,
                "teacher": f"{model.provider}:{model.model}" + (" (simulation, not an LLM)"
                                                                if model.provider == "simulated" else ""),
                "prompt_version": model.prompt_version,
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
        deps=[labeled_sample],
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
                "sample_sizes": str(sizes),
                "failed": int((scores["status"] != "ok").sum()),
                "seconds": MetadataValue.float(round(time.perf_counter() - start, 2)),
                "accuracy_vs_teacher": md_table(pivot.reset_index()),
                "candidates": md_table(scores.drop(columns=["error"])),
            }
        )

    @asset(
        name="model_selection_report",
        deps=[student_candidates],
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
        teacher_label = _teacher_label(warehouse, task)
        summary = summary_markdown(task.name, choice, table, spend, corpus_rows, teacher_label)
        written = warehouse.write_table(task_table(task, "model_selection_report"),
                                        table.assign(criterion=choice.criterion, reason=choice.reason))
        fig = plots.learning_curves_figure(scores, choice.candidate, f"{task.name}: accuracy vs teacher labels")
        png = figure_png(fig)
        plots.close(fig)
        plot_path = default_data_dir() / "reports" / f"{task.name}_learning_curves.png"
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot_path.write_bytes(png)
        base = spend.baseline(corpus_rows)
        per_run = warehouse.read_df(
            f"""SELECT run_id, min(requested_at) AS started, count(*) AS requests, sum(rows_answered) AS rows,
                       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
                       sum(cost_usd) AS cost_usd, sum(seconds) AS request_seconds
                FROM {CACHE_SCHEMA}.teacher_ledger WHERE task = ? GROUP BY run_id ORDER BY started""",
            [task.name])
        context.log.info(f"chosen student for {task.name}: {choice.candidate} ({choice.cv_accuracy:.3f})")
        return MaterializeResult(
            metadata={
                "dagster/row_count": written,
                "chosen_model": choice.candidate,
                "chosen_cv_accuracy_vs_teacher": MetadataValue.float(round(choice.cv_accuracy, 4)),
                "selection_criterion": choice.criterion,
                "teacher_rows": spend.rows_answered,
                "teacher_requests": spend.requests,
                "teacher_cost_usd": MetadataValue.float(round(spend.cost_usd, 6)),
                "baseline_requests": base["teacher_calls"],
                "baseline_cost_usd_extrapolated": MetadataValue.float(round(base["cost_usd"], 6)),
                "summary": MetadataValue.md(summary),
                "teacher_cost_by_run": md_table(per_run, floatfmt=".4f"),
                "candidates": md_table(table),
                "learning_curves": png_markdown(png, f"{task.name}: accuracy vs teacher labels"),
                "learning_curves_png": MetadataValue.path(str(plot_path)),
            }
        )

    @asset(
        name="predictions",
        deps=[model_selection_report],
        kinds={"duckdb", "sklearn"},
        tags={**task_tags, "layer": "predictions"},
        description="Every corpus row with its label, the student's confidence, and where the label came from "
        "(`teacher` for sampled rows, which keep the teacher's label, `student` otherwise).",
        **common,
    )
    def predictions(context: AssetExecutionContext, warehouse: Warehouse):
        chosen = warehouse.read_df(
            f"SELECT candidate FROM {task_table(task, 'model_selection_report')} WHERE chosen"
        )["candidate"].iloc[0]
        sample = _valid_sample(warehouse, task)
        _, X_train = warehouse.read_embeddings(EMBEDDINGS_TABLE, ids=sample["id"].to_numpy())
        start = time.perf_counter()
        model = fit_student(chosen, X_train, sample["teacher_label"].to_numpy(), seed=task.seed)
        train_seconds = time.perf_counter() - start
        ids, X = warehouse.read_embeddings(EMBEDDINGS_TABLE)
        labels, confidence = [], []
        start = time.perf_counter()
        for begin in range(0, len(ids), PREDICT_CHUNK):
            pred = predict_with_confidence(model, X[begin : begin + PREDICT_CHUNK])
            labels.append(pred.labels)
            confidence.append(pred.confidence)
            context.log.info(f"predicted {min(begin + PREDICT_CHUNK, len(ids)):,}/{len(ids):,} rows")
        predict_seconds = time.perf_counter() - start
        out = pd.DataFrame({"id": ids, "student_label": np.concatenate(labels).astype(str),
                            "confidence": np.concatenate(confidence)})
        teacher_labels = sample.set_index("id")["teacher_label"]
        from_teacher = out["id"].isin(teacher_labels.index)
        out["label"] = out["student_label"]
        out.loc[from_teacher, "label"] = out.loc[from_teacher, "id"].map(teacher_labels)
        out["source"] = np.where(from_teacher, "teacher", "student")
        out["model"] = chosen
        out = out[["id", "label", "source", "confidence", "student_label", "model"]]
        written = warehouse.write_table(task_table(task, "predictions"), out)
        metadata = {
            "dagster/row_count": written,
            "model": chosen,
            "confidence_method": pred.method,
            "rows_from_teacher": int(from_teacher.sum()),
            "rows_from_student": int((~from_teacher).sum()),
            "train_seconds": MetadataValue.float(round(train_seconds, 3)),
            "predict_rows_per_second": MetadataValue.float(round(len(ids) / max(predict_seconds, 1e-9), 1)),
            "mean_confidence": MetadataValue.float(round(float(out["confidence"].mean()), 4)),
            "label_counts": md_table(out["label"].value_counts().rename_axis("label").reset_index(name="rows"),
                                     max_rows=15),
            "preview": preview(out),
        }
        metadata.update(_gold_metrics(warehouse, task, out, from_teacher))
        return MaterializeResult(metadata=metadata)

    return [labeled_sample, student_candidates, model_selection_report, predictions]


def _valid_sample(warehouse: Warehouse, task: TaskSpec) -> pd.DataFrame:
    return warehouse.read_df(
        f"SELECT id, teacher_label FROM {task_table(task, 'labeled_sample')} WHERE valid ORDER BY sample_rank"
    )


def _teacher_label(warehouse: Warehouse, task: TaskSpec) -> str:
    teacher = warehouse.read_df(f"SELECT any_value(teacher) AS t FROM {task_table(task, 'labeled_sample')}")["t"][0]
    return f"`{teacher}`" + (" — a simulation answering from gold labels, not an LLM"
                             if str(teacher).startswith("simulated") else "")


def _teacher_spend(warehouse: Warehouse, task: TaskSpec, concurrency: int) -> TeacherSpend:
    row = warehouse.read_df(
        f"""SELECT coalesce(sum(rows_answered), 0) AS rows, count(*) AS requests,
                   coalesce(sum(seconds), 0) AS seconds, coalesce(sum(cost_usd), 0) AS cost,
                   coalesce(sum(prompt_tokens), 0) AS pt, coalesce(sum(completion_tokens), 0) AS ct,
                   coalesce(bool_or(tokens_estimated), false) AS est
            FROM {CACHE_SCHEMA}.teacher_ledger WHERE task = ?""",
        [task.name],
    ).iloc[0]
    return TeacherSpend(int(row.rows), int(row.requests), float(row.seconds), float(row.cost), int(row.pt),
                        int(row.ct), bool(row.est), concurrency)


def _gold_metrics(warehouse: Warehouse, task: TaskSpec, out: pd.DataFrame, from_teacher: pd.Series) -> dict:
    """Accuracy against the gold column, when the task has one, on rows the teacher never saw."""
    if not task.gold_column:
        return {}
    gold = warehouse.read_df(f'SELECT id, "{task.gold_column}" AS gold FROM {CORPUS_TABLE}')
    merged = out.merge(gold, on="id", how="left")
    unseen = merged[~from_teacher.to_numpy()]
    seen = merged[from_teacher.to_numpy()]
    return {
        "accuracy_vs_gold_student_rows": MetadataValue.float(round(float((unseen["label"] == unseen["gold"]).mean()), 4)),
        "accuracy_vs_gold_teacher_rows": MetadataValue.float(round(float((seen["label"] == seen["gold"]).mean()), 4)),
        "accuracy_vs_gold_all_rows": MetadataValue.float(round(float((merged["label"] == merged["gold"]).mean()), 4)),
    }
