"""Validating a source table before anything is computed from it."""

from __future__ import annotations

import pandas as pd


class CorpusError(ValueError):
    """The source table cannot be used as a corpus; the message names the column, rows and expected form."""


class TaskDataError(ValueError):
    """A task's data does not fit its definition (say, gold labels outside its label set): that task stops, the
    others go on. The message names the task, the column, the values and a few ids."""


def few(values, n: int = 5) -> str:
    values = pd.Series(list(values)).tolist()  # plain Python values: 2, not np.int64(2)
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (f" and {len(values) - n:,} more" if len(values) > n else "")


def normalise_corpus(df: pd.DataFrame, id_column: str, text_column: str, source: str) -> pd.DataFrame:
    """`id`, `text` first, other columns kept; raises CorpusError on anything that would break row identity."""
    missing = [c for c in (id_column, text_column) if c not in df.columns]
    if missing:
        raise CorpusError(
            f"{source}: column(s) {missing} not found; columns present: {list(df.columns)}. "
            "Set SCALELLM_ID_COLUMN / SCALELLM_TEXT_COLUMN to the names in your table."
        )
    if len(df) == 0:
        raise CorpusError(f"{source}: the table has no rows")
    df = df.rename(columns={id_column: "id", text_column: "text"})
    others = [c for c in df.columns if c not in ("id", "text")]
    df = df[["id", "text", *others]]

    null_ids = df.index[df["id"].isna()]
    if len(null_ids):
        raise CorpusError(
            f"{source}: column {id_column!r} has {len(null_ids):,} null id(s) at row position(s) {few(null_ids)}; "
            "every row needs a unique, non-null id"
        )
    blank_ids = df.index[df["id"].astype(str) == ""] if pd.api.types.is_string_dtype(df["id"]) else []
    if len(blank_ids):
        raise CorpusError(
            f"{source}: column {id_column!r} has {len(blank_ids):,} empty id(s) at row position(s) {few(blank_ids)}; "
            "every row needs a unique, non-empty id"
        )
    if not (pd.api.types.is_integer_dtype(df["id"]) or pd.api.types.is_string_dtype(df["id"])):
        raise CorpusError(f"{source}: column {id_column!r} has type {df['id'].dtype}; expected integer or string ids")
    dupes = df.loc[df["id"].duplicated(keep=False), "id"].unique()
    if len(dupes):
        raise CorpusError(
            f"{source}: column {id_column!r} has {len(dupes):,} duplicated id(s): {few(dupes)}; ids must be unique"
        )
    text = df["text"]
    bad_text = df.loc[text.isna() | (text.astype(str).str.strip() == ""), "id"]
    if len(bad_text):
        raise CorpusError(
            f"{source}: column {text_column!r} is null or blank for {len(bad_text):,} row(s), ids {few(bad_text)}; "
            "expected non-empty text in every row"
        )
    if not pd.api.types.is_string_dtype(text):
        raise CorpusError(f"{source}: column {text_column!r} has type {text.dtype}; expected text")
    return df.reset_index(drop=True)


def check_gold_column(df: pd.DataFrame, task: str, gold_column: str, labels: list[str]) -> None:
    """Raises TaskDataError when the task's gold column is missing or holds a value outside its label set (nulls
    are allowed: those rows are simply not evaluated)."""
    if gold_column not in df.columns:
        raise TaskDataError(
            f"task {task!r}: gold_column {gold_column!r} is not a corpus column; columns: {list(df.columns)}"
        )
    gold = df[gold_column]
    outside = gold.notna() & ~gold.astype(str).isin(labels)
    if outside.any():
        values = gold[outside].astype(str).value_counts()
        raise TaskDataError(
            f"task {task!r}: gold column {gold_column!r} holds {int(outside.sum()):,} value(s) outside the task's "
            f"labels: {few([f'{v} ({n:,} rows)' for v, n in values.items()])}; ids {few(df.loc[outside, 'id'])}. "
            f"Expected one of {few(labels, 10)} or null: fix the column or the task's labels"
        )
