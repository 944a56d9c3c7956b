"""Checks on the shared foundation: `corpus` and `embeddings`."""

import functools
from functools import partial

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition, AssetKey, asset_check

from scalellm_dagster.assets.heartbeat_step import with_heartbeat
from scalellm_dagster.assets.resource_keys import bind_resources
from scalellm_dagster.checks.carry_over import basis, carried_or_judged, verdict_on_write
from scalellm_dagster.checks.corpus_read import corpus_read
from scalellm_dagster.checks.gx_project import Project, Suite, project_of, rule, suite_basis, validate_in_parts
from scalellm_dagster.checks.gx_runner import from_configs, portable, validate
from scalellm_dagster.checks.row_scans import validate_on_cluster
from scalellm_dagster.core.text_hash import TEXT_HASH_SQL
from scalellm_dagster.names import CORPUS, EMBEDDINGS, key_path
from scalellm_dagster.resources import CorpusSource, Warehouse
from scalellm_dagster.resources.cluster import ClusterResource

NORM_RANGE = (0.5, 1.5)  # vectors are L2-normalised; far outside means a zero or broken vector


def suite_name(key: list[str], check: str) -> str:
    """A check's suite: `<asset key, dotted>.<check>` (a file `gx/expectations/<asset key>/<check>.json`)."""
    return ".".join([*key, check])


def suite_says(suite: str) -> str:
    """What a check's description adds: the expectations above are the defaults; the suite's file decides."""
    return (
        f" (The project's defaults: the Great Expectations suite {suite}, in its file under gx/expectations/, decides.)"
    )


def corpus_suite(prefix: tuple[str, ...], max_text_chars: int) -> Suite:
    return Suite(
        suite_name(key_path(prefix, CORPUS), "corpus_rows_valid"),
        corpus_id_expectations() + corpus_text_expectations(),
        {"max_text_chars": max_text_chars},
    )


def corpus_id_expectations() -> list:
    """What needs every row at once: checked on the driver, over the id column alone."""
    import great_expectations.expectations as gxe

    return [
        rule(gxe.ExpectTableRowCountToBeBetween(min_value=1), "corpus_not_empty"),
        rule(gxe.ExpectColumnValuesToNotBeNull(column="id"), "ids_present"),
        rule(gxe.ExpectColumnValuesToBeUnique(column="id"), "ids_unique"),
    ]


def corpus_text_expectations() -> list:
    """What each row passes or fails on its own: part by part on the cluster when one is configured."""
    import great_expectations.expectations as gxe

    return [
        rule(gxe.ExpectColumnValuesToNotBeNull(column="text"), "text_present"),
        rule(gxe.ExpectColumnValuesToMatchRegex(column="text", regex=r"\S"), "text_not_blank"),
        rule(
            gxe.ExpectColumnValueLengthsToBeBetween(
                column="text", min_value=1, max_value={"$PARAMETER": "max_text_chars"}
            ),
            "text_within_length_bound",
        ),
    ]


def embeddings_suite(prefix: tuple[str, ...], declared_dim: int, corpus_rows: int) -> Suite:
    import great_expectations.expectations as gxe

    from scalellm_dagster.checks.rules import ExpectOneRowPerCorpusId, ExpectVectorsToBeFinite

    return Suite(
        suite_name(key_path(prefix, EMBEDDINGS), "embeddings_match_corpus"),
        [
            rule(gxe.ExpectTableRowCountToEqual(value={"$PARAMETER": "corpus_rows"}), "one_vector_per_corpus_row"),
            rule(ExpectOneRowPerCorpusId(), "vectors_match_corpus_ids"),
            rule(gxe.ExpectColumnValuesToBeUnique(column="id"), "ids_unique"),
            rule(
                gxe.ExpectColumnValuesToBeBetween(
                    column="dim", min_value={"$PARAMETER": "declared_dim"}, max_value={"$PARAMETER": "declared_dim"}
                ),
                "declared_dimension",
            ),
            rule(ExpectVectorsToBeFinite(), "vectors_finite"),
            rule(
                gxe.ExpectColumnValuesToBeBetween(column="norm", min_value=NORM_RANGE[0], max_value=NORM_RANGE[1]),
                "vectors_normalised",
            ),
        ],
        {"corpus_rows": corpus_rows, "declared_dim": declared_dim},
    )


def gold_suite(task) -> Suite:
    import great_expectations.expectations as gxe

    return Suite(
        suite_name(key_path(task.key_prefix, CORPUS), f"{task.name}_gold_labels_in_label_set"),
        [
            rule(
                gxe.ExpectColumnValuesToBeInSet(column="gold", value_set={"$PARAMETER": "labels"}),
                "gold_labels_in_label_set",
            )
        ],
        {"labels": task.label_names},
    )


def corpus_rows_valid_check(prefix: tuple[str, ...] = ()) -> AssetChecksDefinition:
    """`corpus_rows_valid` on the corpus of the component instance with `prefix` (none: the code location's)."""

    @asset_check(
        asset=AssetKey(key_path(prefix, CORPUS)),
        name="corpus_rows_valid",
        blocking=True,
        description="Ids unique and not null; text present, not blank, within the length bound; rows > 0. "
        "On a Dask cluster reached through SCALELLM_DASK_SCHEDULER, the text expectations run part by part on "
        "the workers." + suite_says(suite_name(key_path(prefix, CORPUS), "corpus_rows_valid")),
    )
    @functools.partial(bind_resources, prefix=prefix)
    @with_heartbeat
    def corpus_rows_valid(
        context: AssetCheckExecutionContext, warehouse: Warehouse, source: CorpusSource, cluster: ClusterResource
    ) -> AssetCheckResult:
        suite = corpus_suite(prefix, source.max_text_chars)

        def key():
            return basis(warehouse, [CORPUS], *suite_basis(warehouse, suite))

        return carried_or_judged(
            context,
            warehouse,
            "corpus_rows_valid",
            key,
            lambda: _corpus_rows_valid(context, warehouse, source, cluster, suite),
        )

    return corpus_rows_valid


def _corpus_rows_valid(context, warehouse: Warehouse, source: CorpusSource, cluster: ClusterResource, suite: Suite):
    project, run = project_of(warehouse), context.run.run_id
    if not cluster.scheduler or warehouse.row_count(CORPUS) <= cluster.rows_per_part:
        # Local workers share the driver's cores: there the parts cost more than the scan they spread (BENCHMARKS.md,
        # "the checks' scans"); so does starting a cluster for one part's rows.
        since = _passed_texts(warehouse, suite)
        if since is not None:
            return _changed_texts_only(warehouse, project, suite, run, since)
        df = warehouse.read_df(f"SELECT id, text FROM {CORPUS}")
        outcome = project.validate(suite, df, run)
        return AssetCheckResult(passed=outcome.passed, metadata={"ran_on": "in process", **outcome.metadata()})

    def on_cluster(expectations: list):
        with cluster.session(warehouse.database, run) as (client, parts):
            texts, where = validate_on_cluster(
                client,
                cluster.describe(),
                warehouse,
                f"SELECT id, text FROM {CORPUS}",
                parts,
                cluster.rows_per_part,
                expectations=partial(from_configs, portable(expectations, suite.parameters)),
                name="corpus_text",
                log=context.log.info,
            )
        return texts, {**where, "split": "the text expectations part by part on the cluster, the rest on the ids"}

    ids = warehouse.read_df(f"SELECT id FROM {CORPUS}")
    outcome, where = validate_in_parts(project, suite, run, ids, on_cluster)
    return AssetCheckResult(passed=outcome.passed, metadata={**where, **outcome.metadata()})


def gold_label_check(task):
    # Not blocking: it would stop `embeddings` and so every task; the task's own labeled_sample refuses to start.
    @asset_check(
        asset=AssetKey(key_path(task.key_prefix, CORPUS)),
        name=f"{task.name}_gold_labels_in_label_set",
        blocking=False,
        description=f"Gold column {task.gold_column!r} of task {task.name!r} holds only the task's labels "
        "(nulls allowed: those rows are simply not evaluated). When it fails, that task's labeled_sample "
        "stops before any teacher request; the other tasks go on."
        + suite_says(suite_name(key_path(task.key_prefix, CORPUS), f"{task.name}_gold_labels_in_label_set")),
    )
    @functools.partial(bind_resources, prefix=task.key_prefix)
    @with_heartbeat
    def _check(context: AssetCheckExecutionContext, warehouse: Warehouse) -> AssetCheckResult:
        name, suite = f"{task.name}_gold_labels_in_label_set", gold_suite(task)

        def key():
            return basis(warehouse, [CORPUS], task.gold_column, *suite_basis(warehouse, suite))

        return carried_or_judged(
            context, warehouse, name, key, lambda: _gold_labels_in_label_set(context, task, warehouse, suite)
        )

    return _check


def _gold_labels_in_label_set(context, task, warehouse: Warehouse, suite: Suite) -> AssetCheckResult:
    columns = warehouse.read_df(f"SELECT * FROM {CORPUS} LIMIT 0").columns
    if task.gold_column not in columns:
        return AssetCheckResult(
            passed=False,
            metadata={"error": f"gold_column {task.gold_column!r} is not a corpus column; columns: {list(columns)}"},
        )
    df = warehouse.read_df(f'SELECT id, "{task.gold_column}" AS gold FROM {CORPUS}')
    outcome = project_of(warehouse).validate(suite, df, context.run.run_id)
    return AssetCheckResult(passed=outcome.passed, metadata=outcome.metadata())


def embeddings_match_corpus_check(prefix: tuple[str, ...] = ()) -> AssetChecksDefinition:
    """`embeddings_match_corpus` on the embeddings of the component instance with `prefix`."""
    embeddings_key = AssetKey(key_path(prefix, EMBEDDINGS))

    @asset_check(
        asset=embeddings_key,
        name="embeddings_match_corpus",
        blocking=True,
        description="Exactly one vector per corpus id, of the embedder's declared dimension, finite, "
        f"with L2 norm in {list(NORM_RANGE)}."
        + suite_says(suite_name(key_path(prefix, EMBEDDINGS), "embeddings_match_corpus")),
    )
    @functools.partial(bind_resources, prefix=prefix)
    @with_heartbeat
    def embeddings_match_corpus(context: AssetCheckExecutionContext, warehouse: Warehouse) -> AssetCheckResult:
        read = corpus_read(context, warehouse, EMBEDDINGS)
        if read.replaced_by:
            return read.result_from_log()
        if not read.live:  # judged against the corpus this run read, which has moved on: not a verdict to carry
            return _embeddings_match_corpus(context, warehouse, read, embeddings_key, prefix)
        declared = _declared_dim(context, embeddings_key, 0)
        suite = embeddings_suite(prefix, declared, 0)  # the corpus's rows are in the basis as its table's

        def key():
            return basis(warehouse, [EMBEDDINGS, CORPUS], declared, *suite_basis(warehouse, suite))

        return carried_or_judged(
            context,
            warehouse,
            "embeddings_match_corpus",
            key,
            lambda: _embeddings_match_corpus(context, warehouse, read, embeddings_key, prefix),
        )

    return embeddings_match_corpus


def _embeddings_match_corpus(
    context: AssetCheckExecutionContext, warehouse: Warehouse, read, embeddings_key: AssetKey, prefix: tuple[str, ...]
) -> AssetCheckResult:
    # While the corpus has moved on, the table's own ids stand in for it and the logged fingerprint decides.
    moved = not read.live
    frame = warehouse.vector_stats(EMBEDDINGS)
    corpus_ids = frame["id"] if moved else warehouse.read_df(f"SELECT id FROM {CORPUS}")["id"]
    declared = _declared_dim(context, embeddings_key, int(frame["dim"].iloc[0]) if len(frame) else 0)
    frame["finite"] = frame["finite"].fillna(False).astype(bool)
    frame = frame.merge(pd.DataFrame({"id": corpus_ids}), on="id", how="outer", indicator="row_matches_corpus")
    frame["row_matches_corpus"] = (
        frame["row_matches_corpus"]
        .astype(str)
        .replace({"both": "yes", "left_only": "extra (not in corpus)", "right_only": "missing (no vector)"})
    )
    corpus_rows = len(corpus_ids)
    if moved:
        frame["row_matches_corpus"] = read.coverage(*warehouse.id_fingerprint(EMBEDDINGS))
        corpus_rows = read.corpus.rows
    outcome = project_of(warehouse).validate(embeddings_suite(prefix, declared, corpus_rows), frame, context.run.run_id)
    return AssetCheckResult(
        passed=outcome.passed, metadata={**read.metadata, "declared_dim": declared, **outcome.metadata()}
    )


def _declared_dim(context: AssetCheckExecutionContext, embeddings_key: AssetKey, fallback: int) -> int:
    event = context.instance.get_latest_materialization_event(embeddings_key)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return int(meta["dim"].value) if "dim" in meta else fallback


def _passed_texts(warehouse: Warehouse, suite: Suite):
    """The passing verdict of this check on the corpus the stored vectors were made from, under the same
    settings, when the corpus has been written since: the rows whose id and text the vectors still carry passed the
    text expectations then. None otherwise (every row is scanned)."""
    vectors, now = warehouse.snapshot(EMBEDDINGS), warehouse.snapshot(CORPUS)
    if vectors is None or now is None or vectors.corpus_run_id in (None, now.run_id):
        return None
    if not warehouse.table_exists(EMBEDDINGS) or warehouse.row_count(EMBEDDINGS) != vectors.rows:
        return None
    settings = suite_basis(warehouse, suite)
    found = verdict_on_write(warehouse, "corpus_rows_valid", CORPUS, vectors.corpus_run_id, *settings)
    return found if found is not None and found.passed else None


def _changed_texts_only(warehouse: Warehouse, project: Project, suite: Suite, run: str, since) -> AssetCheckResult:
    """The id expectations on every row (cheap: one column); the text expectations on the rows new or edited since
    the corpus that passed them (`since`), found by their text's hash against the stored vectors'."""
    changed = warehouse.read_df(
        f"SELECT c.id, c.text FROM {CORPUS} c ANTI JOIN {EMBEDDINGS} e "
        f"ON e.id = c.id AND e.text_hash = {TEXT_HASH_SQL.format(column='c.text')}"
    )

    def on_changed(expectations: list):
        texts = validate(changed, expectations, suite.name, parameters=suite.parameters)
        return texts, {"split": "the text expectations on the new or edited rows, the rest on every id"}

    ids = warehouse.read_df(f"SELECT id FROM {CORPUS}")
    outcome, _ = validate_in_parts(project, suite, run, ids, on_changed)
    rows = warehouse.row_count(CORPUS)
    return AssetCheckResult(
        passed=outcome.passed,
        metadata={
            "ran_on": "in process",
            "text_rows_scanned": (
                f"{len(changed):,} new or edited rows; the other {rows - len(changed):,} are unchanged since run "
                f"{since.run_id[:8]} passed the text expectations on them with the same settings"
            ),
            **outcome.metadata(),
        },
    )
