"""The UI's view of a task's `labeled_sample`: the sample, its teacher's spend, the suspect review."""

from __future__ import annotations

import pandas as pd
from dagster import MetadataValue

from scalellm_dagster.assets.metadata import column_schema, md_table, preview
from scalellm_dagster.flow import TeacherSession
from scalellm_dagster.flow.suspects import REFERENCE_STUDENT, SuspectReview
from scalellm_dagster.tasks_config import TaskSpec


def sample_metadata(
    task: TaskSpec,
    sample: pd.DataFrame,
    written: int,
    session: TeacherSession,
    simulated: bool,
    budget: int,
    *,
    budget_note: str,
    estimate: pd.DataFrame,
) -> dict:
    stats = session.stats
    valid = sample[sample["valid"]]
    coverage = valid["teacher_label"].value_counts()
    return {
        "dagster/row_count": written,
        "dagster/column_schema": column_schema(sample),
        "teacher": session.name + (" (simulation, not an LLM)" if simulated else ""),
        "sampling": task.sampling,
        "budget": budget,
        "budget_source": budget_note,
        "prompt_version": session.teacher.prompt_version,
        "structured_output": ", ".join(sorted(stats.response_formats))
        or ("none (simulation)" if simulated else "none (every answer from the cache)"),
        "valid_labels": int(len(valid)),
        "invalid_answers": int((~sample["valid"] & sample["raw_answer"].notna()).sum()),
        "unanswered_rows": int(sample["raw_answer"].isna().sum()),
        "answers_normalised": stats.normalised,
        "failed_requests": stats.failed_requests,
        "cache_hits": stats.cache_hits,
        "cache_misses": stats.asked,
        "teacher_requests": stats.requests,
        # Three times, each named for what it measures; the third is the one the baseline is compared with.
        "labelling_step_wall_seconds": MetadataValue.float(round(stats.wall_seconds, 3)),
        "teacher_request_seconds_summed": MetadataValue.float(round(stats.request_seconds, 3)),
        "teacher_seconds_at_concurrency": MetadataValue.float(
            round(stats.request_seconds / max(session.concurrency, 1), 3)
        ),
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "tokens_estimated": stats.tokens_estimated,
        "cost_usd": MetadataValue.float(round(stats.cost_usd, 6)),
        "classes_covered": f"{len(coverage)} of {len(task.labels)}",
        "label_counts": md_table(coverage.rename_axis("label").reset_index(name="rows"), max_rows=15),
        "preview": preview(sample[["id", "text", "teacher_label", "raw_answer", "valid", "from_cache"]]),
        # `limited_by` only says something when a rate limit, not latency, sets a time
        "estimate_before_calls": md_table(
            estimate.drop(columns="limited_by") if (estimate["limited_by"] == "latency").all() else estimate,
            floatfmt=".4f",
        ),
        # the same arithmetic as the report's baseline: one row per request, instructions sent with each
        "baseline_cost_usd_estimate": MetadataValue.float(round(float(estimate["cost_usd"].iloc[-1]), 6)),
        "notes": "; ".join(stats.notes) or "none",
        **batch_metadata(stats),
    }


def batch_metadata(stats) -> dict:
    """What the Batch API did for a step that used it: its batches, how they ended, the wait."""
    report = stats.batch
    if report is None:
        return {"teacher_mode": "sync"}
    endings = ", ".join(f"{n} {status}" for status, n in sorted(report.endings.items())) or "none"
    return {
        "teacher_mode": "batch" + (f" (fell back to sync: {report.fell_back})" if report.fell_back else ""),
        "teacher_batches": ", ".join(report.batch_ids) or "none (every answer from the cache)",
        "batch_endings": endings,
        "batch_requests_submitted": report.submitted_requests,
        "batches_resumed": report.resumed,
        "batch_lines_without_answer": report.failed_lines + report.invalid_lines,
        "batch_wait_seconds": MetadataValue.float(round(report.wait_seconds, 1)),
    }


def kept_sample_metadata(decision, drawn, sample_rows: int, corpus_rows: int) -> dict:
    """A materialization that keeps the deployed model: what it kept and why, nothing asked of the teacher."""
    return {
        "model": "kept: the sample is the one drawn for the deployed model",
        "model_decision": decision.reason,
        "dagster/row_count": sample_rows,
        "drawn_at": f"{drawn.at:%Y-%m-%d %H:%M:%S} UTC" if drawn else "unknown",
        "corpus_rows_at_draw": drawn.corpus_rows if drawn else 0,
        "drawn_by_run": drawn.run_id if drawn else "",
        "corpus_rows_now": corpus_rows,
        "teacher_requests": 0,
        "to_replace_it": "launch the retrain_models job (tag scalellm/retrain=<task> for one task), or run "
        "`scalellm run --retrain <task>`",
    }


def suspect_metadata(review: SuspectReview, sample: pd.DataFrame, shown: int = 20) -> dict:
    """The sample's suspect teacher labels (most confident disagreement first) and the task's policy for them."""
    rows = sample[sample["suspect"]].sort_values("suspect_student_score", ascending=False)
    table = pd.DataFrame(
        {
            "id": rows["id"],
            "text": rows["text"].str.slice(0, 100),
            "teacher_label": rows["first_label"],
            "student_label": rows["suspect_student_label"],
            "student_score": rows["suspect_student_score"],
            **({"second_answer": rows["teacher_label"].where(rows["reasked"])} if review.policy == "reask" else {}),
            "used_for_training": rows["train"],
        }
    )
    return {
        "suspect_labels_policy": review.policy,
        "suspect_teacher_labels": review.flagged,
        "suspect_share": MetadataValue.float(round(review.noise.rate, 4)),
        "suspect_method": f"{review.noise.method}, reference student {REFERENCE_STUDENT}",
        "suspects_reasked": review.reasked,
        "suspect_answers_changed_by_reask": review.changed_by_reask,
        "suspects_left_out_of_training": review.dropped,
        "suspect_note": review.note or "flagged only; every valid label trains the students",
        "suspect_teacher_label_examples": md_table(table, max_rows=shown) if len(table) else "none",
    }
