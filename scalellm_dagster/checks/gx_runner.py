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
from dataclasses import dataclass, field

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
    # set when the outcome is a checkpoint's in the file-backed project (gx_project.py)
    suite: str | None = None
    suite_file: str | None = None
    pages: list[str] = field(default_factory=list)  # the validation results' Data Docs pages
    index: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if not r["passed"]]

    def metadata(self) -> dict:
        from dagster import MetadataValue

        from scalellm_dagster.assets.metadata import md_table

        table = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in self.rows])
        project = {}
        if self.suite:
            project = {
                "suite": self.suite,
                "suite_file": MetadataValue.path(self.suite_file),
                "validation_result": MetadataValue.url(self.pages[0]),
                **({"invariants_validation_result": MetadataValue.url(self.pages[1])} if len(self.pages) > 1 else {}),
                **({"data_docs": MetadataValue.url(self.index)} if self.index else {}),
                **({"suite_notes": MetadataValue.json(self.notes)} if self.notes else {}),
            }
        failed_text = "; ".join(f"{r['expectation']}({r['column'] or ''}): {r['details']}" for r in self.failed)
        return {
            **project,
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


def validate(
    df: pd.DataFrame, expectations: list, name: str, id_column: str | None = "id", parameters: dict | None = None
) -> Outcome:
    """Run `expectations` on `df` (no GX project: a Dask worker's part, or part of a suite that is validated in
    several places); failing row ids come from `id_column` when the frame has it; `parameters` fill the
    expectations' `$PARAMETER` references."""
    import great_expectations as gx

    phase(f"validating {len(df):,} rows against {len(expectations)} expectations (Great Expectations)")

    context = _gx_context()
    with _lock:  # GX's context registry is not thread-safe; a check validates in one go anyway
        unique = f"scalellm_{name}_{next(_counter)}"
        source = context.data_sources.add_or_update_pandas(unique)
        asset = source.add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df})
        suite = gx.ExpectationSuite(name=unique, expectations=[unbound(e) for e in expectations])
        results = batch.validate(suite, result_format="SUMMARY", expectation_parameters=parameters).results
        context.data_sources.delete(source.name)
    rows = [result_row(result, df, id_column) for result in results]
    return Outcome(passed=all(r["passed"] for r in rows), rows=rows)


def portable(expectations: list, parameters: dict) -> list[dict]:
    """The expectations as plain configurations with their `$PARAMETER` references filled: what travels to a Dask
    worker (`from_configs` rebuilds them there)."""

    def fill(value):
        if isinstance(value, dict) and set(value) == {"$PARAMETER"}:
            return parameters[value["$PARAMETER"]]
        return value

    configs = []
    for expectation in expectations:
        config = expectation.configuration.to_json_dict()
        config["kwargs"] = {k: fill(v) for k, v in config["kwargs"].items()}
        config.pop("id", None)
        configs.append(config)
    return configs


def from_configs(configs: list[dict]) -> list:
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    import scalellm_dagster.checks.rules  # noqa: F401  (the project's rule types)

    return [ExpectationConfiguration(**config).to_domain_obj() for config in configs]


def unbound(expectation):
    """A copy of `expectation` that belongs to no suite (one read from a suite file carries the suite's id)."""
    copied = expectation.copy(deep=True)
    copied.id = None
    return copied


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


def result_row(result, df: pd.DataFrame, id_column: str | None) -> dict:
    """One expectation's result as a row of the check's table (and what `merge` adds up)."""
    config = result.expectation_config
    kwargs = _kwargs(config)
    column = kwargs.pop("column", None)
    res = result.result or {}
    index = res.get("partial_unexpected_index_list") or []
    with_ids = index and id_column and id_column in df.columns and column != id_column
    meta = config.meta or {}
    errored = result.exception_info and result.exception_info.get("raised_exception")
    counts = {  # what `merge` adds up over parts
        "unexpected": int(res.get("unexpected_count") or 0),
        "elements": int(res.get("element_count", len(df)) or 0),
        "examples": list(res.get("partial_unexpected_list") or []),
        "ids": _ids(df, id_column, index) if with_ids else [],
        "errors": [result.exception_info.get("exception_message")] if errored else [],
    }
    return {
        "expectation": config.type,
        "rule": meta.get("scalellm_rule") or "(yours)",
        "column": column,
        "passed": bool(result.success),
        "expected": _expected(config.type, kwargs),
        "details": _details(counts, res.get("observed_value"), res.get("partial_missing_list") or []),
        "_counts": counts,
        "_config": config.to_json_dict(),  # what a validation result composed of parts is rebuilt from
        "_observed": res.get("observed_value"),
    }


_SHOWN = ("column", "value_set", "min_value", "max_value", "value", "column_list", "mostly", "regex")


def _kwargs(config) -> dict:
    """The expectation's parameters, the ones a rule class sets by default included (a suite file holds only those
    that differ from its class's)."""
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    try:
        expectation = config.to_domain_obj()
    except Exception:  # an expectation GX cannot build: its error is in the result; show what the file says
        return kwargs
    for key in _SHOWN:
        value = getattr(expectation, key, None)
        if key not in kwargs and value is not None and not (key == "mostly" and value == 1):
            kwargs[key] = value
    return kwargs


def _ids(df: pd.DataFrame, id_column: str, index: list) -> list:
    # a checkpoint with unexpected_index_column_names gives {column: value, id: …}; a bare validation index labels
    if isinstance(index[0], dict):
        return [entry.get(id_column) for entry in index[:10]]
    return df[id_column].loc[list(index)[:10]].tolist()


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
