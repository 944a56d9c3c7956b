"""Helpers that turn frames and figures into Dagster metadata values."""

from __future__ import annotations

import base64
import io

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema


def md_table(df: pd.DataFrame, floatfmt: str = ".3f", max_rows: int = 25) -> MetadataValue:
    """A table written for a reader: counts with thousands separators and no decimals, fractions at `floatfmt`,
    yes/no for booleans, "–" for missing values, run ids shortened as the UI shows them."""
    shown = df.head(max_rows)
    cells, align = {}, []
    for col in shown.columns:
        cells[col], numeric = _column_text(str(col), shown[col], floatfmt)
        align.append("right" if numeric else "left")
    text = (
        pd.DataFrame(cells).to_markdown(index=False, disable_numparse=True, colalign=align)
        if len(shown)
        else "(no rows)"
    )
    if len(df) > max_rows:
        text += f"\n\n… {len(df) - max_rows:,} more rows"
    return MetadataValue.md(text)


def _column_text(name: str, values: pd.Series, floatfmt: str) -> tuple[list[str], bool]:
    if name == "run_id" or name.endswith("_run_id"):
        return [str(v)[:8] if isinstance(v, str) else "–" for v in values], False
    if pd.api.types.is_datetime64_any_dtype(values):
        return [v.strftime("%Y-%m-%d %H:%M:%S") if not pd.isna(v) else "–" for v in values], False
    if pd.api.types.is_bool_dtype(values):
        return ["–" if pd.isna(v) else "yes" if v else "no" for v in values], False  # NA: not judged
    if pd.api.types.is_numeric_dtype(values):
        finite = values.dropna()
        is_id = name == "id" or name.endswith("_id")
        integral = pd.api.types.is_integer_dtype(values) or bool(
            len(finite) and (finite == finite.round()).all() and finite.abs().max() >= 100
        )
        large = bool(len(finite) and finite.abs().min() >= 1000)  # rates and sizes: whole numbers read better

        def one(v):
            if pd.isna(v):
                return "–"
            if integral:
                return str(int(v)) if is_id else f"{int(v):,}"
            return f"{float(v):,.0f}" if large else format(float(v), floatfmt)

        return [one(v) for v in values], True
    return ["–" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v) for v in values], False


def preview(df: pd.DataFrame, rows: int = 10, text_chars: int = 80) -> MetadataValue:
    shown = df.head(rows).copy()
    for col in shown.columns:
        if shown[col].dtype == object:
            shown[col] = shown[col].map(
                lambda v: v if not isinstance(v, str) or len(v) <= text_chars else v[: text_chars - 1] + "…"
            )
    return md_table(shown, max_rows=rows)


def png_markdown(png: bytes, title: str) -> MetadataValue:
    encoded = base64.b64encode(png).decode()
    return MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})")


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # large enough to read in the UI's dialog
    return buf.getvalue()


# What each column the project writes means, for the UI's schema view. Corpus columns the user brought are described
# by `column_schema`'s fallback.
COLUMN_DESCRIPTIONS = {
    "id": "The row's id in the corpus (the source's id column).",
    "text": "The row's text, as sent to the teacher and the embedder.",
    "text_hash": "Hash of the text the vector or prediction was made from; a changed text is recomputed.",
    "vector": "The row's L2-normalised embedding.",
    "embedding_version": "Which embedder (and, for LSA, which fit) made the vector; predictions on another "
    "version are redone.",
    "sample_rank": "Position in the sampling order: the first n rows are what a budget of n buys.",
    "teacher": "The teacher that answered: provider/model (a simulation says so).",
    "teacher_label": "The teacher's label, after normalising case, spaces and quotes; empty when invalid.",
    "raw_answer": "The teacher's answer as received, kept for audit.",
    "valid": "Whether the answer is one of the task's labels (only valid answers train students).",
    "from_cache": "Answered from the answer cache, at no cost.",
    "prompt_version": "Hash of the prompt template and task wording the answer was asked with.",
    "sampling": "How the sample was chosen (random, stratified-by-cluster, uncertainty).",
    "suspect": "A likely teacher mistake: a student trained without this row contradicts its label with confidence "
    "(cleanlab, out of fold).",
    "suspect_student_label": "What that student said instead (suspects only).",
    "suspect_student_score": "The student's score for its own label (suspects only).",
    "first_label": "The teacher's first answer; differs from teacher_label where a re-ask changed it.",
    "reasked": "Asked again, one row per request (suspect_labels: reask).",
    "train": "Used to train the students (false: invalid, or a suspect left out by suspect_labels: drop).",
    "drift_topup": "Added after failed drift audits, from the rows of the failing refreshes.",
    "candidate": "The student model (scikit-learn).",
    "sample_size": "Teacher labels the candidate was cross-validated on (the first n of the sample).",
    "classes_seen": "Distinct teacher labels among those n rows.",
    "cv_accuracy": "Cross-validated accuracy against the teacher's labels (agreement, not accuracy vs gold).",
    "cv_std": "Standard deviation of that accuracy over the folds.",
    "cv_fit_seconds": "Mean seconds to train on one cross-validation fold.",
    "train_seconds": "Seconds to train on all n labels (measured at the largest size only).",
    "predict_rows_per_second": "Inference speed on one core (measured at the largest size only).",
    "corpus_predict_seconds": "Seconds to predict every corpus row at that speed: the student's running cost.",
    "cost_adjusted_accuracy": "cv_accuracy less one point per `inference_seconds_per_point` seconds of "
    "corpus_predict_seconds: what the selection ranks (equal to cv_accuracy at 0).",
    "status": "ok, failed (see error) or pruned (clearly behind at a smaller size, not evaluated further).",
    "error": "Why the candidate failed or was pruned at this size.",
    "labels": "Teacher labels at the candidate's largest evaluated size.",
    "failures": "Sizes at which the candidate failed.",
    "pruned": "Whether the candidate was dropped before the largest size.",
    "curve_alpha": "Fitted learning-curve exponent: error ~ a * n^-alpha + floor.",
    "curve_floor_error": "Fitted error vs the teacher the curve levels off at (its floor), bounded below by the "
    "share of teacher labels flagged as likely mistakes (teacher_noise_estimate).",
    "curve_r2": "How well the learning curve fits the measured accuracies (R²).",
    "forecast_at_2x": "Forecast accuracy vs the teacher at twice the labels.",
    "forecast_at_4x": "Forecast accuracy vs the teacher at four times the labels.",
    "forecast_at_10x": "Forecast accuracy vs the teacher at ten times the labels.",
    "accuracy_vs_gold_heldout": "Accuracy against the gold column on up to 2,000 random rows the teacher never saw, "
    "trained on every teacher label (empty without a gold column).",
    "chosen": "The student chosen for the predictions.",
    "criterion": "The selection criterion (accuracy, or accuracy under a latency floor).",
    "reason": "Why the chosen student was chosen.",
    "recommended_budget": "Teacher labels the budget advice recommends (when a target is set).",
    "label": "The final label: the teacher's where it answered, the student's elsewhere.",
    "student_label": "The student's label, for every row (also where the teacher answered).",
    "confidence": "The student's raw confidence in its label, in [0, 1] (its top class probability or score, as "
    "`confidence_method` says); not calibrated: the cascade reads it by rank against held-out labels.",
    "source": "Where the final label came from: teacher-sample, teacher-cascade or student.",
    "model": "The student model that predicted.",
    "model_version": "Hash of the student kind, its seed and the teacher labels it was trained on.",
    "inputs_key": "Hash of the labels, vectors and settings the scores were computed from; a refresh with the same "
    "key reuses them.",
}


def column_schema(df: pd.DataFrame, described: dict[str, str] | None = None) -> TableSchema:
    """The table's columns for the UI's schema view (what was written, as pandas saw it), each described."""
    known = {**COLUMN_DESCRIPTIONS, **(described or {})}
    return TableSchema(
        columns=[
            TableColumn(name=str(c), type=str(t), description=known.get(str(c), "A column of the source file."))
            for c, t in df.dtypes.items()
        ]
    )


def embeddings_schema(id_type: str, dim: int) -> TableSchema:
    """The embeddings table's columns."""
    types = {"id": id_type, "text_hash": "VARCHAR", "embedding_version": "VARCHAR", "vector": f"FLOAT[{dim}]"}
    return TableSchema(
        columns=[TableColumn(name=c, type=t, description=COLUMN_DESCRIPTIONS[c]) for c, t in types.items()]
    )


def kept_write_metadata(context, run_id: str) -> dict:
    """For a step that found nothing changed and wrote nothing: the metadata of the materialization whose write
    still stands (run `run_id`), so the asset's page keeps showing what the table holds. {} when the instance's
    latest materialization is not that write's (another warehouse, or events deleted)."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None or event.asset_materialization is None:
        return {}
    metadata = dict(event.asset_materialization.metadata)
    written_by = metadata.get("written_by_run")
    if event.run_id != run_id and (written_by is None or written_by.value != run_id):
        return {}
    return metadata
