"""Helpers that turn frames and figures into Dagster metadata values."""

from __future__ import annotations

import base64
import io

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema


def md_table(df: pd.DataFrame, floatfmt: str = ".3f", max_rows: int = 25) -> MetadataValue:
    shown = df.head(max_rows)
    text = shown.to_markdown(index=False, floatfmt=floatfmt)
    if len(df) > max_rows:
        text += f"\n\n… {len(df) - max_rows:,} more rows"
    return MetadataValue.md(text)


def preview(df: pd.DataFrame, rows: int = 10, text_chars: int = 80) -> MetadataValue:
    shown = df.head(rows).copy()
    for col in shown.columns:
        if shown[col].dtype == object:
            shown[col] = shown[col].map(lambda v: v if not isinstance(v, str) or len(v) <= text_chars
                                        else v[: text_chars - 1] + "…")
    return md_table(shown, max_rows=rows)


def png_markdown(png: bytes, title: str) -> MetadataValue:
    encoded = base64.b64encode(png).decode()
    return MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})")


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def column_schema(df: pd.DataFrame) -> TableSchema:
    """The table's columns for the UI's schema view (what was written, as pandas saw it)."""
    return TableSchema(columns=[TableColumn(name=str(c), type=str(t)) for c, t in df.dtypes.items()])
