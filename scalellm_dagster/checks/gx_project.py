"""The Great Expectations project the checks keep in files: one suite per check, a checkpoint per check, validation
results and Data Docs.

The project lives beside the warehouse (`<warehouse folder>/gx`, or `SCALELLM_GX_DIR`) as GX lays one out:
`great_expectations.yml`, `expectations/<asset>/<check>.json`, `validation_definitions/`, `checkpoints/`,
`uncommitted/validations/` (the history) and `uncommitted/data_docs/local_site/`. A suite's file is written from the
project's defaults the first time its check runs, then read back on every run: what a user edits there (a threshold,
a `mostly`, an expectation added or removed) is what the next run validates.

Values that come from settings (the label set, the sample's budget, the corpus's row count…) are written as
`{"$PARAMETER": "<name>"}` and filled at validation time; replacing one with a literal tightens the rule. Defaults
marked `scalellm_invariant` in their `meta` are the project's invariants: the pipeline is wrong without them.
One a user removed or changed is validated with its default anyway (in the companion suite `<suite>.invariants`,
which the project rewrites): a user can add to an invariant, never take it away. The others are the user's.

Every call runs the check's checkpoint: the validation result is stored and the checkpoint's `UpdateDataDocsAction`
renders its page and the index. Processes that validate at once (the multiprocess executor's steps) take turns
through a file lock: GX's project files are not written atomically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from scalellm_dagster.checks.gx_runner import Outcome, result_row, unbound
from scalellm_dagster.core.heartbeat import phase

DATASOURCE = "scalellm"
BATCH = "whole frame"
SITE = "local_site"
RULE, INVARIANT = "scalellm_rule", "scalellm_invariant"
COMPANION = ".invariants"
LOCK_SECONDS = 900.0
# The Data Docs index lists this many of the latest validations (every page stays on disk, linked from its check's
# result in Dagster): GX rebuilds the index at each validation, and its time grows with every result it lists
# (about 2 ms each on the development machine).
INDEX_LIMIT = 200


class SuiteFileError(ValueError):
    """A suite file the project cannot read; the message names the file and what is wrong."""


def rule(expectation, name: str, invariant: bool = True):
    """`expectation` marked as the project's rule `name` (an invariant unless said otherwise)."""
    expectation.meta = {**(expectation.meta or {}), RULE: name, **({INVARIANT: True} if invariant else {})}
    return expectation


@dataclass
class Suite:
    """A check's suite: its name (`<asset key>.<check>`), the project's default expectations (each marked by
    `rule`) and the values of the parameters they reference."""

    name: str
    defaults: list
    parameters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """Where the GX project is, and the base URL its Data Docs are served from ("" = the files' own file:// URLs)."""

    root: Path
    docs_url: str = ""
    docs: bool = True  # render Data Docs at each validation (off: the results are stored, pages not rendered)

    @property
    def gx_dir(self) -> Path:
        return self.root / "gx"

    @property
    def site_dir(self) -> Path:
        return self.gx_dir / "uncommitted" / "data_docs" / SITE

    def suite_file(self, name: str) -> Path:
        return self.gx_dir / "expectations" / (name.replace(".", "/") + ".json")

    def suite_fingerprint(self, name: str) -> str | None:
        """The content of the suite's file (and its companion's): a verdict carried over must have been reached
        under the same suite. None before the file exists."""
        path = self.suite_file(name)
        if not path.is_file():
            return None
        digest = hashlib.sha256(path.read_bytes())
        companion = self.suite_file(name + COMPANION)
        if companion.is_file():
            digest.update(companion.read_bytes())
        return digest.hexdigest()

    def url(self, path: Path) -> str:
        """The browsable address of a page under the Data Docs site (a stored result's file when Data Docs are
        off)."""
        if self.docs_url and path.is_relative_to(self.site_dir):
            return self.docs_url.rstrip("/") + "/" + path.relative_to(self.site_dir).as_posix()
        return path.resolve().as_uri()

    def lock(self):
        """Held while this process reads or writes the project's files."""
        from filelock import FileLock

        self.gx_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.gx_dir / ".scalellm.lock"), timeout=LOCK_SECONDS)

    def outcome(self, suite: Suite, passed: bool, rows: list[dict], pages: list[str], notes: list[str]) -> Outcome:
        """A validation's outcome, with where its suite, pages and Data Docs index are."""
        return Outcome(
            passed=passed,
            rows=rows,
            suite=suite.name,
            suite_file=str(self.suite_file(suite.name)),
            pages=pages,
            index=self.url(self.site_dir / "index.html") if self.docs else None,
            notes=notes,
        )

    def validate(self, suite: Suite, df: pd.DataFrame, run_name: str, id_column: str | None = "id") -> Outcome:
        """Validate `df` against the suite as its file stands (written first from the defaults when missing),
        through the check's checkpoint; failing rows are named by `id_column` when the frame has it."""
        phase(f"validating {len(df):,} rows against suite {suite.name} (Great Expectations)")
        with self.lock():
            return _validate(self, suite, df, run_name, id_column if id_column in df.columns else None)


def _effective(project: Project, suite: Suite):
    """(the context, the suite as its file stands, the invariants restored from the defaults, written now?)."""
    import scalellm_dagster.checks.rules  # noqa: F401  (registers the rules' types before a suite file names them)

    context = _context(project)
    stored, written = _suite_from_file(context, project, suite)
    return context, stored, _restored_invariants(suite, stored), written


def _notes(project: Project, suite: Suite, written: bool, restored: list) -> list[str]:
    notes = [f"suite file written from the project's defaults: {project.suite_file(suite.name)}"] if written else []
    return notes + [
        f"invariant {name!r} {how} in {project.suite_file(suite.name).name}: validated with the project's default "
        f"too (invariants can be tightened, not removed)"
        for _, (name, how) in restored
    ]


def _validate(project: Project, suite: Suite, df: pd.DataFrame, run_name: str, id_column: str | None) -> Outcome:
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    context, stored, restored, written = _effective(project, suite)
    suites = [stored]
    if restored:
        companion = gx.ExpectationSuite(name=suite.name + COMPANION, expectations=[e for e, _ in restored])
        suites.append(context.suites.add_or_update(companion))
    batch = _batch_definition(context, suite.name)
    _remember(project)
    definitions = [
        context.validation_definitions.add_or_update(gx.ValidationDefinition(name=s.name, data=batch, suite=s))
        for s in suites
    ]
    result_format = {"result_format": "SUMMARY", "return_unexpected_index_query": False}
    if id_column:
        result_format["unexpected_index_column_names"] = [id_column]
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=suite.name,
            validation_definitions=definitions,
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[SITE])] if project.docs else [],
            result_format=result_format,
        )
    )
    run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC))
    result = checkpoint.run(batch_parameters={"dataframe": df}, expectation_parameters=suite.parameters, run_id=run_id)
    rows, pages = [], []
    for key, validation in result.run_results.items():
        rows.extend(result_row(r, df, id_column) for r in validation.results)
        if key.expectation_suite_identifier.name.endswith(COMPANION):
            for row in rows[-len(validation.results) :]:
                row["rule"] += " (project default, restored)"
        pages.append(_page(context, project, key))
    return project.outcome(suite, bool(result.success), rows, pages, _notes(project, suite, written, restored))


def validate_in_parts(
    project: Project,
    suite: Suite,
    run_name: str,
    whole: pd.DataFrame,
    per_row: Callable[[list], tuple[Outcome, dict]],
    columns: tuple[str, ...] = ("text",),
) -> tuple[Outcome, dict]:
    """The suite validated where its rows are: the row-by-row expectations on `columns` by `per_row` (on the
    rows a refresh added, or part by part on a cluster), every other expectation on `whole` (the id column). The
    two outcomes make one validation result, stored and rendered in Data Docs as a checkpoint's are.
    (the outcome, `per_row`'s own metadata)."""
    from great_expectations.expectations.expectation import ColumnMapExpectation

    from scalellm_dagster.checks.gx_runner import validate

    with project.lock():
        _, stored, restored, written = _effective(project, suite)
    expectations = [*stored.expectations, *(e for e, _ in restored)]
    restored_ids = {id(e) for e, _ in restored}
    on_rows = [e for e in expectations if isinstance(e, ColumnMapExpectation) and getattr(e, "column", None) in columns]
    on_row_ids = {id(e) for e in on_rows}
    rest = [e for e in expectations if id(e) not in on_row_ids]
    driver = validate(whole, rest, suite.name, parameters=suite.parameters)
    rows_outcome, where = per_row(on_rows)
    position = {id(e): i for i, e in enumerate(expectations)}  # the suite's order, as a checkpoint reports it
    ordered = sorted(zip([*rest, *on_rows], [*driver.rows, *rows_outcome.rows]), key=lambda pair: position[id(pair[0])])
    rows = []
    for expectation, row in ordered:
        if id(expectation) in restored_ids:
            row = {**row, "rule": row["rule"] + " (project default, restored)"}
        rows.append(row)
    passed = all(r["passed"] for r in rows)
    with project.lock():
        page = _store_composed(_context(project), project, suite, run_name, rows, passed)
    notes = [*_notes(project, suite, written, restored), "validated in two places: " + where.get("split", "")]
    return project.outcome(suite, passed, rows, [page], notes), where


def _store_composed(context, project: Project, suite: Suite, run_name: str, rows: list[dict], passed: bool) -> str:
    """A validation result made of outcomes reached in several places, stored and rendered like a checkpoint's."""
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    results = []
    for row in rows:
        counts = row["_counts"]
        elements = max(counts["elements"], 1)
        results.append(
            ExpectationValidationResult(
                success=row["passed"],
                expectation_config=ExpectationConfiguration(**row["_config"]),
                result={
                    "element_count": counts["elements"],
                    "unexpected_count": counts["unexpected"],
                    "unexpected_percent": 100.0 * counts["unexpected"] / elements,
                    "partial_unexpected_list": counts["examples"],
                    **({"observed_value": row["_observed"]} if row.get("_observed") is not None else {}),
                },
            )
        )
    run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC))
    evaluated = len(results)
    successful = sum(r.success for r in results)
    validation = ExpectationSuiteValidationResult(
        success=passed,
        results=results,
        suite_name=suite.name,
        statistics={
            "evaluated_expectations": evaluated,
            "successful_expectations": successful,
            "unsuccessful_expectations": evaluated - successful,
            "success_percent": 100.0 * successful / evaluated if evaluated else None,
        },
        meta={"run_id": run_id, "validation_time": run_id.run_time, "great_expectations_version": _gx_version()},
    )
    key = ValidationResultIdentifier(
        ExpectationSuiteIdentifier(name=suite.name), run_id, batch_identifier=f"{DATASOURCE}-{suite.name}-parts"
    )
    context.validation_results_store.set(key, validation)
    if project.docs:
        context.build_data_docs(site_names=[SITE], resource_identifiers=[key])
    return _page(context, project, key)


def _page(context, project: Project, key) -> str:
    """The address of a validation result's Data Docs page; with Data Docs off, of its stored JSON."""
    if project.docs:
        [site] = context.get_docs_sites_urls(resource_identifier=key, site_names=[SITE])
        return project.url(Path(unquote(urlparse(site["site_url"]).path)))
    suite, run, batch = key.expectation_suite_identifier.name, key.run_id, key.batch_identifier
    stamp = run.run_time.strftime("%Y%m%dT%H%M%S.%fZ")
    path = project.gx_dir / "uncommitted" / "validations" / suite.replace(".", "/") / run.run_name / stamp
    return project.url(path / f"{batch}.json")


def _gx_version() -> str:
    import great_expectations as gx

    return gx.__version__


_contexts: dict[Path, tuple[int, object]] = {}  # per project: the config's mtime when last used, the context


def _context(project: Project):
    """The project's file context, reused within a process while `great_expectations.yml` is as this process left
    it (another process that adds a data asset rewrites it: then it is read again). Suites, validation definitions
    and checkpoints are read from their files at each use anyway."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    config = project.gx_dir / "great_expectations.yml"
    if config.is_file() and project.gx_dir in _contexts:
        mtime, context = _contexts[project.gx_dir]
        if config.stat().st_mtime_ns == mtime:
            return context
    new = not config.is_file()
    context = gx.get_context(mode="file", project_root_dir=str(project.root))
    if new:  # the project's own choices, written once into the file a team may then edit
        _configure_site(config)
        context = gx.get_context(mode="file", project_root_dir=str(project.root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    _contexts[project.gx_dir] = (config.stat().st_mtime_ns, context)
    return context


def _remember(project: Project) -> None:
    """After this process's own writes to the config (a data asset added): its context is still current."""
    config = project.gx_dir / "great_expectations.yml"
    if project.gx_dir in _contexts and config.is_file():
        _contexts[project.gx_dir] = (config.stat().st_mtime_ns, _contexts[project.gx_dir][1])


def _configure_site(config: Path) -> None:
    """The Data Docs site's index limited to the latest `INDEX_LIMIT` validations, without GX's tutorial buttons;
    edited round trip, so GX's own comments in the file stay."""
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip
    document = yaml.load(config.read_text())
    site = document["data_docs_sites"][SITE]
    site["show_how_to_buttons"] = False
    site.setdefault("site_index_builder", {"class_name": "DefaultSiteIndexBuilder"})
    site["site_index_builder"]["validation_results_limit"] = INDEX_LIMIT
    with config.open("w") as out:
        yaml.dump(document, out)


def _suite_from_file(context, project: Project, suite: Suite):
    """(the suite as its file stands, whether it was written now from the defaults)."""
    import great_expectations as gx

    path = project.suite_file(suite.name)
    if not path.is_file():
        return context.suites.add(gx.ExpectationSuite(name=suite.name, expectations=suite.defaults)), True
    try:
        json.loads(path.read_text())
        return context.suites.get(suite.name), False
    except Exception as exc:  # a hand edit gone wrong: say which file, and what GX or the JSON parser found
        raise SuiteFileError(
            f"Great Expectations suite file {path} cannot be read: {type(exc).__name__}: {exc}. Fix the file, or "
            "delete it to have the project's defaults written again on the next run."
        ) from exc


def _restored_invariants(suite: Suite, stored) -> list[tuple[object, tuple[str, str]]]:
    """The default of each invariant the file no longer holds as the project wrote it: (its expectation, (its
    rule name, "removed" or "changed"))."""
    by_rule = {}
    for expectation in stored.expectations:
        name = (expectation.meta or {}).get(RULE)
        if name:
            by_rule.setdefault(name, []).append(_shape(expectation))
    restored = []
    for default in suite.defaults:
        meta = default.meta or {}
        if not meta.get(INVARIANT):
            continue
        found = by_rule.get(meta[RULE])
        if found is None:
            restored.append((unbound(default), (meta[RULE], "removed")))
        elif _shape(default) not in found:
            restored.append((unbound(default), (meta[RULE], "changed")))
    return restored


def _shape(expectation) -> str:
    config = expectation.configuration
    return json.dumps([config.type, config.kwargs], sort_keys=True, default=str)


def _batch_definition(context, name: str):
    """The whole-frame batch definition of the dataframe asset `name` in the project's pandas data source."""
    try:
        source = context.data_sources.get(DATASOURCE)
    except KeyError:
        source = context.data_sources.add_pandas(DATASOURCE)
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name)
    try:
        return asset.get_batch_definition(BATCH)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(BATCH)


def project_of(warehouse) -> Project:
    """The GX project of the warehouse's checks."""
    return Project(warehouse.gx_project_root, warehouse.data_docs_url, warehouse.data_docs)


def suite_basis(warehouse, suite: Suite) -> tuple:
    """What a verdict reached with `suite` depends on beyond the tables: its name, its parameters and its file as
    it stands (an edit to the file is judged anew, never carried over)."""
    return suite.name, sorted(suite.parameters.items()), project_of(warehouse).suite_fingerprint(suite.name)
