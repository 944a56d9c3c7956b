"""Validating a frame against a list of Great Expectations 1.x expectations, for a Dagster asset check.

An ephemeral GX context with a pandas data source: no GX project folder. The outcome lists every expectation
with its observed value, unexpected count and, when few rows fail, their ids. The expectations are validated as one
suite: validated one by one, GX fingerprints the whole frame again for each (see BENCHMARKS.md, issue #25).

`validate` runs anywhere (a Dask worker too: nothing here imports Dagster until `metadata()`); `merge` combines the
outcomes of the same row-by-row expectations validated part by part into the outcome of the whole table.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import pandas as pd

from scalellm_dagster.core.heartbeat import phase

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
        from dagster import MetadataValue

        from scalellm_dagster.assets.metadata import md_table

        table = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in self.rows])
        failed_text = "; ".join(f"{r['expectation']}({r['column'] or ''}): {r['details']}" for r in self.failed)
        return {
            "expectations": md_table(table.assign(column=table["column"].fillna("(whole table)")), max_rows=50)
            if len(table)
            else MetadataValue.md("(none)"),
            "expectations_evaluated": len(self.rows),
            "expectations_failed": len(self.failed),
            "failures": failed_text or "none",
            # one entry per failed expectation: what `scalellm run` prints when the check fails
            "failed_expectations": MetadataValue.json(
                [
                    f"{r['expectation']}({r['column'] or 'whole table'}): expected {r['expected']}; {r['details']}"
                    for r in self.failed
                ]
            ),
        }


def validate(df: pd.DataFrame, expectations: list, name: str, id_column: str | None = "id") -> Outcome:
    """Run `expectations` on `df`; failing row ids come from `id_column` when the frame has it."""
    import great_expectations as gx

    phase(f"validating {len(df):,} rows against {len(expectations)} expectations (Great Expectations)")

    context = _gx_context()
    with _lock:  # GX's context registry is not thread-safe; a check validates in one go anyway
        unique = f"scalellm_{name}_{next(_counter)}"
        source = context.data_sources.add_or_update_pandas(unique)
        asset = source.add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df})
        suite = gx.ExpectationSuite(name=unique, expectations=[e.copy() for e in expectations])
        results = batch.validate(suite, result_format="SUMMARY").results
        context.data_sources.delete(source.name)
    rows = [_row(result, df, id_column) for result in results]
    return Outcome(passed=all(r["passed"] for r in rows), rows=rows)


def merge(outcomes: list[Outcome]) -> Outcome:
    """The outcome over the whole table of row-by-row expectations (map expectations: each row passes or fails on
    its own) validated part by part: counts add up, the first examples and ids are kept."""
    if not outcomes:
        return Outcome(passed=True, rows=[])
    rows = []
    for parts in zip(*(o.rows for o in outcomes)):
        counts = [p["_counts"] for p in parts]
        merged = {key: sum(c[key] for c in counts) for key in ("unexpected", "elements")}
        merged["examples"] = [e for c in counts for e in c["examples"]][:20]
        merged["ids"] = [i for c in counts for i in c["ids"]][:10]
        merged["errors"] = [e for c in counts for e in c["errors"]][:1]
        row = {**parts[0], "passed": all(p["passed"] for p in parts), "_counts": merged}
        row["details"] = _details(merged, observed=None, missing=[])
        rows.append(row)
    return Outcome(passed=all(r["passed"] for r in rows), rows=rows)


def _row(result, df: pd.DataFrame, id_column: str | None) -> dict:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "column")}
    res = result.result or {}
    index = res.get("partial_unexpected_index_list") or []
    with_ids = index and id_column and id_column in df.columns and config.kwargs.get("column") != id_column
    errored = result.exception_info and result.exception_info.get("raised_exception")
    counts = {  # what `merge` adds up over parts
        "unexpected": int(res.get("unexpected_count") or 0),
        "elements": int(res.get("element_count", len(df)) or 0),
        "examples": list(res.get("partial_unexpected_list") or []),
        "ids": df[id_column].loc[list(index)[:10]].tolist() if with_ids else [],  # index labels
        "errors": [result.exception_info.get("exception_message")] if errored else [],
    }
    return {
        "expectation": config.type,
        "column": config.kwargs.get("column"),
        "passed": bool(result.success),
        "expected": _expected(config.type, kwargs),
        "details": _details(counts, res.get("observed_value"), res.get("partial_missing_list") or []),
        "_counts": counts,
    }


def _details(counts: dict, observed, missing: list) -> str:
    details = []
    if observed is not None:
        details.append(f"observed {_short([observed]) if isinstance(observed, bool) else observed}")
    if counts["unexpected"]:
        details.append(f"{counts['unexpected']:,} unexpected of {counts['elements']:,}")
        if counts["examples"]:
            details.append(f"e.g. {_short(counts['examples'])}")
        if counts["ids"]:
            details.append(f"ids {_short(counts['ids'])}")
    if missing:
        details.append(f"missing {_short(missing)}")
    details.extend(f"error: {message}" for message in counts["errors"])
    return "; ".join(details) or "-"


def _expected(kind: str, kwargs: dict) -> str:
    """The expectation's parameters as a sentence a reader checks against the details."""
    parts = []
    if "value_set" in kwargs:
        parts.append(("one of " if len(kwargs["value_set"]) > 1 else "") + _short(kwargs["value_set"], 6, 40))
    if kwargs.get("min_value") is not None or kwargs.get("max_value") is not None:
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        parts.append(
            f"between {lo} and {hi}"
            if lo is not None and hi is not None
            else f"at least {lo}"
            if lo is not None
            else f"at most {hi}"
        )
    if "value" in kwargs:
        parts.append(f"exactly {kwargs['value']:,}" if isinstance(kwargs["value"], int) else f"{kwargs['value']}")
    if "column_list" in kwargs:
        parts.append("unique over " + ", ".join(kwargs["column_list"]))
    if kwargs.get("mostly") not in (None, 1, 1.0):
        parts.append(f"for at least {kwargs['mostly']:.0%} of rows")
    rest = {
        k: v
        for k, v in kwargs.items()
        if k not in ("value_set", "min_value", "max_value", "value", "column_list", "mostly", "result_format")
    }
    parts.extend(f"{k}={v}" for k, v in rest.items())
    return "; ".join(parts) or "-"


def _short(values, n: int = 5, width: int = 40) -> str:
    values = list(values)
    shown = ", ".join(("yes" if v else "no") if isinstance(v, bool) else str(v)[:width] for v in values[:n])
    return shown + (f" (+{len(values) - n})" if len(values) > n else "")
