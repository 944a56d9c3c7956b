"""Validating a frame against a list of Great Expectations 1.x expectations, for a Dagster asset check.

An ephemeral GX context with a pandas data source: no GX project folder. The outcome lists every expectation
with its observed value, unexpected count and, when few rows fail, their ids.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import pandas as pd
from dagster import MetadataValue

_lock = threading.Lock()
_context = None
_counter = itertools.count()


def _gx_context():
    global _context
    with _lock:
        if _context is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            _context = gx.get_context(mode="ephemeral")
            _context.variables.progress_bars = ProgressBarsConfig(globally=False)
        return _context


@dataclass
class Outcome:
    passed: bool
    rows: list[dict]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if not r["passed"]]

    def metadata(self) -> dict:
        from scalellm_dagster.assets.metadata import md_table

        table = pd.DataFrame(self.rows)
        failed_text = "; ".join(f"{r['expectation']}({r['column'] or ''}): {r['details']}" for r in self.failed)
        return {
            "expectations": md_table(table.assign(column=table["column"].fillna("(whole table)")), max_rows=50)
            if len(table) else MetadataValue.md("(none)"),
            "expectations_evaluated": len(self.rows),
            "expectations_failed": len(self.failed),
            "failures": failed_text or "none",
            # one entry per failed expectation: what `scalellm run` prints when the check fails
            "failed_expectations": MetadataValue.json(
                [f"{r['expectation']}({r['column'] or 'whole table'}): expected {r['expected']}; {r['details']}"
                 for r in self.failed]),
        }


def validate(df: pd.DataFrame, expectations: list, name: str, id_column: str | None = "id") -> Outcome:
    """Run `expectations` on `df`; failing row ids come from `id_column` when the frame has it."""
    context = _gx_context()
    with _lock:  # GX's context registry is not thread-safe; a check validates in one go anyway
        source = context.data_sources.add_or_update_pandas(f"scalellm_{name}_{next(_counter)}")
        asset = source.add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df})
        rows = [_row(batch.validate(exp, result_format="SUMMARY"), df, id_column) for exp in expectations]
        context.data_sources.delete(source.name)
    return Outcome(passed=all(r["passed"] for r in rows), rows=rows)


def _row(result, df: pd.DataFrame, id_column: str | None) -> dict:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "column")}
    res = result.result or {}
    details = []
    if "observed_value" in res and res["observed_value"] is not None:
        observed = res["observed_value"]
        details.append(f"observed {_short([observed]) if isinstance(observed, bool) else observed}")
    if res.get("unexpected_count"):
        details.append(f"{res['unexpected_count']:,} unexpected of {res.get('element_count', len(df)):,}")
        examples = res.get("partial_unexpected_list") or []
        if examples:
            details.append(f"e.g. {_short(examples)}")
        index = res.get("partial_unexpected_index_list") or []
        if index and id_column and id_column in df.columns and config.kwargs.get("column") != id_column:
            details.append(f"ids {_short(df[id_column].iloc[list(index)[:10]].tolist())}")
    if res.get("partial_missing_list"):
        details.append(f"missing {_short(res['partial_missing_list'])}")
    if result.exception_info and result.exception_info.get("raised_exception"):
        details.append(f"error: {result.exception_info.get('exception_message')}")
    return {
        "expectation": config.type,
        "column": config.kwargs.get("column"),
        "passed": bool(result.success),
        "expected": _expected(config.type, kwargs),
        "details": "; ".join(details) or "-",
    }


def _expected(kind: str, kwargs: dict) -> str:
    """The expectation's parameters as a sentence a reader checks against the details."""
    parts = []
    if "value_set" in kwargs:
        parts.append(("one of " if len(kwargs["value_set"]) > 1 else "") + _short(kwargs["value_set"], 6, 40))
    if kwargs.get("min_value") is not None or kwargs.get("max_value") is not None:
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        parts.append(f"between {lo} and {hi}" if lo is not None and hi is not None
                     else f"at least {lo}" if lo is not None else f"at most {hi}")
    if "value" in kwargs:
        parts.append(f"exactly {kwargs['value']:,}" if isinstance(kwargs["value"], int) else f"{kwargs['value']}")
    if "column_list" in kwargs:
        parts.append("unique over " + ", ".join(kwargs["column_list"]))
    if kwargs.get("mostly") not in (None, 1, 1.0):
        parts.append(f"for at least {kwargs['mostly']:.0%} of rows")
    rest = {k: v for k, v in kwargs.items()
            if k not in ("value_set", "min_value", "max_value", "value", "column_list", "mostly", "result_format")}
    parts.extend(f"{k}={v}" for k, v in rest.items())
    return "; ".join(parts) or "-"


def _short(values, n: int = 5, width: int = 40) -> str:
    values = list(values)
    shown = ", ".join(("yes" if v else "no") if isinstance(v, bool) else str(v)[:width] for v in values[:n])
    return shown + (f" (+{len(values) - n})" if len(values) > n else "")
