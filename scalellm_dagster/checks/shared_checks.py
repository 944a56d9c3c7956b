"""Checks on the shared foundation: `corpus` and `embeddings`."""

import functools
from functools import partial

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition, AssetKey, asset_check

from scalellm_dagster.assets.heartbeat_step import with_heartbeat
from scalellm_dagster.assets.resource_keys import bind_resources
from scalellm_dagster.checks.carry_over import basis, carried, recorded, verdict_on_write
from scalellm_dagster.checks.corpus_read import corpus_read
from scalellm_dagster.checks.gx_runner import Outcome, validate
from scalellm_dagster.checks.row_scans import validate_on_cluster
from scalellm_dagster.core.text_hash import TEXT_HASH_SQL
from scalellm_dagster.names import CORPUS, EMBEDDINGS, key_path
from scalellm_dagster.resources import CorpusSource, Warehouse
from scalellm_dagster.resources.cluster import ClusterResource

NORM_RANGE = (0.5, 1.5)  # vectors are L2-normalised; far outside means a zero or broken vector


def corpus_expectations(max_text_chars: int) -> list:
    return corpus_id_expectations() + corpus_text_expectations(max_text_chars)


def corpus_id_expectations() -> list:
    """What needs every row at once: checked on the driver, over the id column alone."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
    ]


def corpus_text_expectations(max_text_chars: int) -> list:
    """What each row passes or fails on its own: part by part on the cluster when one is configured."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToNotBeNull(column="text"),
        gxe.ExpectColumnValuesToMatchRegex(column="text", regex=r"\S"),
        gxe.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=max_text_chars),
    ]


def embeddings_expectations(declared_dim: int, corpus_rows: int) -> list:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableRowCountToEqual(value=corpus_rows),
        gxe.ExpectColumnValuesToBeInSet(column="row_matches_corpus", value_set=["yes"]),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeBetween(column="dim", min_value=declared_dim, max_value=declared_dim),
        gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
        gxe.ExpectColumnValuesToBeBetween(column="norm", min_value=NORM_RANGE[0], max_value=NORM_RANGE[1]),
    ]


def gold_expectations(gold_column: str, labels: list[str]) -> list:
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToBeInSet(column=gold_column, value_set=labels)]


def corpus_rows_valid_check(prefix: tuple[str, ...] = ()) -> AssetChecksDefinition:
    """`corpus_rows_valid` on the corpus of the component instance with `prefix` (none: the code location's)."""

    @asset_check(
        asset=AssetKey(key_path(prefix, CORPUS)),
        name="corpus_rows_valid",
        blocking=True,
        description="Ids unique and not null; text present, not blank, within the length bound; rows > 0. "
        "On a Dask cluster reached through SCALELLM_DASK_SCHEDULER, the text expectations run part by part on "
        "the workers.",
    )
    @functools.partial(bind_resources, prefix=prefix)
    @with_heartbeat
    def corpus_rows_valid(
        context: AssetCheckExecutionContext, warehouse: Warehouse, source: CorpusSource, cluster: ClusterResource
    ) -> AssetCheckResult:
        key = basis(warehouse, [CORPUS], "corpus_expectations", source.max_text_chars)
        return carried(context, warehouse, "corpus_rows_valid", key) or recorded(
            context, warehouse, "corpus_rows_valid", key, _corpus_rows_valid(context, warehouse, source, cluster)
        )

    return corpus_rows_valid


def _corpus_rows_valid(context, warehouse: Warehouse, source: CorpusSource, cluster: ClusterResource):
    if not cluster.scheduler or warehouse.row_count(CORPUS) <= cluster.rows_per_part:
        # Local workers share the driver's cores: there the parts cost more than the scan they spread (BENCHMARKS.md,
        # "the checks' scans"); so does starting a cluster for one part's rows.
        since = _passed_texts(warehouse, source.max_text_chars)
        if since is not None:
            return _changed_texts_only(warehouse, source.max_text_chars, since)
        df = warehouse.read_df(f"SELECT id, text FROM {CORPUS}")
        outcome = validate(df, corpus_expectations(source.max_text_chars), "corpus")
        return AssetCheckResult(passed=outcome.passed, metadata={"ran_on": "in process", **outcome.metadata()})
    ids = validate(warehouse.read_df(f"SELECT id FROM {CORPUS}"), corpus_id_expectations(), "corpus_ids")
    with cluster.session(warehouse.database, context.run.run_id) as (client, parts):
        texts, where = validate_on_cluster(
            client,
            cluster.describe(),
            warehouse,
            f"SELECT id, text FROM {CORPUS}",
            parts,
            cluster.rows_per_part,
            expectations=partial(corpus_text_expectations, source.max_text_chars),
            name="corpus_text",
            log=context.log.info,
        )
    outcome = Outcome(passed=ids.passed and texts.passed, rows=ids.rows + texts.rows)
    return AssetCheckResult(passed=outcome.passed, metadata={**where, **outcome.metadata()})


def gold_label_check(task):
    # Not blocking: it would stop `embeddings` and so every task; the task's own labeled_sample refuses to start.
    @asset_check(
        asset=AssetKey(key_path(task.key_prefix, CORPUS)),
        name=f"{task.name}_gold_labels_in_label_set",
        blocking=False,
        description=f"Gold column {task.gold_column!r} of task {task.name!r} holds only the task's labels "
        "(nulls allowed: those rows are simply not evaluated). When it fails, that task's labeled_sample "
        "stops before any teacher request; the other tasks go on.",
    )
    @functools.partial(bind_resources, prefix=task.key_prefix)
    @with_heartbeat
    def _check(context: AssetCheckExecutionContext, warehouse: Warehouse) -> AssetCheckResult:
        name = f"{task.name}_gold_labels_in_label_set"
        key = basis(warehouse, [CORPUS], "gold_expectations", task.gold_column, task.label_names)
        return carried(context, warehouse, name, key) or recorded(
            context, warehouse, name, key, _gold_labels_in_label_set(task, warehouse)
        )

    return _check


def _gold_labels_in_label_set(task, warehouse: Warehouse) -> AssetCheckResult:
    columns = warehouse.read_df(f"SELECT * FROM {CORPUS} LIMIT 0").columns
    if task.gold_column not in columns:
        return AssetCheckResult(
            passed=False,
            metadata={"error": f"gold_column {task.gold_column!r} is not a corpus column; columns: {list(columns)}"},
        )
    df = warehouse.read_df(f'SELECT id, "{task.gold_column}" FROM {CORPUS}')
    outcome = validate(df, gold_expectations(task.gold_column, task.label_names), f"{task.name}_gold")
    return AssetCheckResult(passed=outcome.passed, metadata=outcome.metadata())


def embeddings_match_corpus_check(prefix: tuple[str, ...] = ()) -> AssetChecksDefinition:
    """`embeddings_match_corpus` on the embeddings of the component instance with `prefix`."""
    embeddings_key = AssetKey(key_path(prefix, EMBEDDINGS))

    @asset_check(
        asset=embeddings_key,
        name="embeddings_match_corpus",
        blocking=True,
        description="Exactly one vector per corpus id, of the embedder's declared dimension, finite, "
        f"with L2 norm in {list(NORM_RANGE)}.",
    )
    @functools.partial(bind_resources, prefix=prefix)
    @with_heartbeat
    def embeddings_match_corpus(context: AssetCheckExecutionContext, warehouse: Warehouse) -> AssetCheckResult:
        read = corpus_read(context, warehouse, EMBEDDINGS)
        if read.replaced_by:
            return read.result_from_log()
        if not read.live:  # judged against the corpus this run read, which has moved on: not a verdict to carry
            return _embeddings_match_corpus(context, warehouse, read, embeddings_key)
        declared = _declared_dim(context, embeddings_key, 0)
        key = basis(warehouse, [EMBEDDINGS, CORPUS], "embeddings_expectations", declared, NORM_RANGE)
        return carried(context, warehouse, "embeddings_match_corpus", key) or recorded(
            context,
            warehouse,
            "embeddings_match_corpus",
            key,
            _embeddings_match_corpus(context, warehouse, read, embeddings_key),
        )

    return embeddings_match_corpus


def _embeddings_match_corpus(
    context: AssetCheckExecutionContext, warehouse: Warehouse, read, embeddings_key: AssetKey
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
    outcome = validate(frame, embeddings_expectations(declared, corpus_rows), "embeddings")
    return AssetCheckResult(
        passed=outcome.passed, metadata={**read.metadata, "declared_dim": declared, **outcome.metadata()}
    )


def _declared_dim(context: AssetCheckExecutionContext, embeddings_key: AssetKey, fallback: int) -> int:
    event = context.instance.get_latest_materialization_event(embeddings_key)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return int(meta["dim"].value) if "dim" in meta else fallback


def _passed_texts(warehouse: Warehouse, max_text_chars: int):
    """The passing verdict of this check on the corpus the stored vectors were made from, under the same
    settings, when the corpus has been written since: the rows whose id and text the vectors still carry passed the
    text expectations then. None otherwise (every row is scanned)."""
    vectors, now = warehouse.snapshot(EMBEDDINGS), warehouse.snapshot(CORPUS)
    if vectors is None or now is None or vectors.corpus_run_id in (None, now.run_id):
        return None
    if not warehouse.table_exists(EMBEDDINGS) or warehouse.row_count(EMBEDDINGS) != vectors.rows:
        return None
    found = verdict_on_write(
        warehouse, "corpus_rows_valid", CORPUS, vectors.corpus_run_id, "corpus_expectations", max_text_chars
    )
    return found if found is not None and found.passed else None


def _changed_texts_only(warehouse: Warehouse, max_text_chars: int, since) -> AssetCheckResult:
    """The id expectations on every row (cheap: one column); the text expectations on the rows new or edited since
    the corpus that passed them (`since`), found by their text's hash against the stored vectors'."""
    ids = validate(warehouse.read_df(f"SELECT id FROM {CORPUS}"), corpus_id_expectations(), "corpus_ids")
    changed = warehouse.read_df(
        f"SELECT c.id, c.text FROM {CORPUS} c ANTI JOIN {EMBEDDINGS} e "
        f"ON e.id = c.id AND e.text_hash = {TEXT_HASH_SQL.format(column='c.text')}"
    )
    texts = validate(changed, corpus_text_expectations(max_text_chars), "corpus_text")
    outcome = Outcome(passed=ids.passed and texts.passed, rows=ids.rows + texts.rows)
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
