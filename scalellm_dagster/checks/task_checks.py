"""Checks on each task's branch: labeled_sample, student_candidates, model_selection_report, predictions."""

import functools

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    asset_check,
    multi_asset_check,
)

from scalellm_dagster.assets.heartbeat_step import with_heartbeat
from scalellm_dagster.assets.resource_keys import bind_resources
from scalellm_dagster.checks.carry_over import basis, carried_or_judged
from scalellm_dagster.checks.corpus_read import corpus_read
from scalellm_dagster.checks.gx_project import Suite, project_of, rule, suite_basis
from scalellm_dagster.checks.shared_checks import suite_name, suite_says
from scalellm_dagster.core.text_hash import TEXT_HASH_SQL
from scalellm_dagster.names import (
    CORPUS,
    DRIFT_AUDIT,
    LABELED_SAMPLE,
    MODEL_SELECTION_REPORT,
    PREDICTIONS,
    STUDENT_CANDIDATES,
    task_fingerprint,
    task_key,
    task_table,
)
from scalellm_dagster.resources import TaskStore, Warehouse
from scalellm_dagster.tasks_config import TaskSpec

MAX_INVALID_ANSWER_FRACTION = 0.2


def max_sample_size(task: TaskSpec) -> int:
    return max(task.budget, task.max_budget or 0) if task.follow_budget_advice else task.budget


def _suite(task: TaskSpec, asset_name: str, check: str, defaults: list, **parameters) -> Suite:
    return Suite(suite_name(task_key(task, asset_name), check), defaults, parameters)


def sample_suite(task: TaskSpec, drift_rows: int = 0) -> Suite:
    """`drift_rows`: rows failed audits have added to the sample beyond its budget (`drift_topups`)."""
    import great_expectations.expectations as gxe

    from scalellm_dagster.checks.rules import ExpectSampledIdsToBeInCorpus, ExpectValidFlagToMatchLabel

    return _suite(
        task,
        LABELED_SAMPLE,
        "sample_labels_valid",
        [
            rule(
                gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value={"$PARAMETER": "max_sample_rows"}),
                "sample_within_budget",
            ),
            rule(gxe.ExpectColumnValuesToBeUnique(column="id"), "ids_unique"),
            rule(ExpectSampledIdsToBeInCorpus(), "sampled_ids_in_corpus"),
            rule(
                gxe.ExpectColumnValuesToBeInSet(column="teacher_label", value_set={"$PARAMETER": "labels"}),
                "labels_in_label_set",
            ),  # nulls = invalid answers, kept
            rule(ExpectValidFlagToMatchLabel(), "invalid_answers_kept_not_coerced"),
            rule(gxe.ExpectColumnUniqueValueCountToBeBetween(column="teacher_label", min_value=2), "two_classes"),
        ],
        max_sample_rows=max_sample_size(task) + drift_rows,
        labels=task.label_names,
    )


def invalid_answers_suite(task: TaskSpec) -> Suite:
    import great_expectations.expectations as gxe

    # the user's threshold, not an invariant: a team tightens it (or drops it) in the suite's file
    return _suite(
        task,
        LABELED_SAMPLE,
        "sample_invalid_answers_rare",
        [
            rule(
                gxe.ExpectColumnValuesToBeInSet(
                    column="valid", value_set=[True], mostly=1 - MAX_INVALID_ANSWER_FRACTION
                ),
                "invalid_answers_rare",
                invariant=False,
            )
        ],
    )


def candidates_suite(task: TaskSpec, sizes: int) -> Suite:
    import great_expectations.expectations as gxe

    from scalellm_dagster.checks.rules import ExpectFailuresToBeExplained

    return _suite(
        task,
        STUDENT_CANDIDATES,
        "every_candidate_evaluated",
        [
            rule(
                gxe.ExpectColumnDistinctValuesToEqualSet(column="candidate", value_set={"$PARAMETER": "candidates"}),
                "every_candidate_present",
            ),
            rule(gxe.ExpectCompoundColumnsToBeUnique(column_list=["candidate", "sample_size"]), "one_row_per_size"),
            rule(gxe.ExpectTableRowCountToEqual(value={"$PARAMETER": "candidate_rows"}), "every_size_evaluated"),
            rule(
                gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["ok", "failed", "pruned"]),
                "status_known",
            ),
            rule(
                gxe.ExpectColumnValuesToBeBetween(column="cv_accuracy", min_value=0.0, max_value=1.0),
                "accuracy_in_range",
            ),  # nulls = failed
            rule(ExpectFailuresToBeExplained(), "failures_explained"),
        ],
        candidates=list(task.candidates),
        candidate_rows=len(task.candidates) * sizes,
    )


def chosen_suite(task: TaskSpec) -> Suite:
    import great_expectations.expectations as gxe

    return _suite(
        task,
        MODEL_SELECTION_REPORT,
        "student_chosen",
        [
            rule(
                gxe.ExpectColumnValuesToBeInSet(column="candidate", value_set={"$PARAMETER": "candidates"}),
                "chosen_is_a_candidate",
            ),
            rule(gxe.ExpectColumnSumToBeBetween(column="chosen_int", min_value=1, max_value=1), "exactly_one_chosen"),
        ],
        candidates=list(task.candidates),
    )


def floor_suite(task: TaskSpec) -> Suite:
    import great_expectations.expectations as gxe

    return _suite(
        task,
        MODEL_SELECTION_REPORT,
        "chosen_student_above_floor",
        [
            rule(
                gxe.ExpectColumnValuesToBeBetween(
                    column="cv_accuracy", min_value={"$PARAMETER": "accuracy_floor"}, max_value=1.0
                ),
                "accuracy_above_floor",
            )
        ],
        accuracy_floor=task.accuracy_floor,
    )


def predictions_suite(task: TaskSpec, corpus_rows: int) -> Suite:
    import great_expectations.expectations as gxe

    from scalellm_dagster.checks.rules import ExpectOneRowPerCorpusId, ExpectTeacherLabelsKept

    return _suite(
        task,
        PREDICTIONS,
        "predictions_cover_corpus",
        [
            rule(gxe.ExpectTableRowCountToEqual(value={"$PARAMETER": "corpus_rows"}), "one_row_per_corpus_row"),
            rule(gxe.ExpectColumnValuesToBeUnique(column="id"), "ids_unique"),
            rule(ExpectOneRowPerCorpusId(), "predictions_match_corpus_ids"),
            rule(gxe.ExpectColumnValuesToNotBeNull(column="label"), "every_row_labelled"),
            rule(
                gxe.ExpectColumnValuesToBeInSet(column="label", value_set={"$PARAMETER": "labels"}),
                "labels_in_label_set",
            ),
            rule(
                gxe.ExpectColumnValuesToBeBetween(column="confidence", min_value=0.0, max_value=1.0),
                "confidence_in_range",
            ),
            rule(
                gxe.ExpectColumnValuesToBeInSet(
                    column="source", value_set=["teacher-sample", "teacher-cascade", "student"]
                ),
                "source_known",
            ),
            rule(ExpectTeacherLabelsKept(), "teacher_labels_kept"),
        ],
        corpus_rows=corpus_rows,
        labels=task.label_names,
    )


def _task_check(task: TaskSpec, asset_name: str, description: str, blocking: bool = True):
    """`@asset_check` on one of `task`'s assets; the check takes the decorated function's name."""

    def decorate(fn):
        suite = suite_name(task_key(task, asset_name), fn.__name__)
        check = asset_check(
            asset=AssetKey(task_key(task, asset_name)), blocking=blocking, description=description + suite_says(suite)
        )
        return check(bind_resources(with_heartbeat(fn), task.key_prefix))

    return decorate


def build_task_checks(task: TaskSpec) -> list[AssetChecksDefinition]:
    return [
        sample_labels_valid_check(task),
        sample_invalid_answers_rare_check(task),
        every_candidate_evaluated_check(task),
        student_chosen_check(task),
        chosen_student_above_floor_check(task),
        predictions_cover_corpus_check(task),
        audit_check(task),
    ]


def sample_labels_valid_check(task: TaskSpec) -> AssetChecksDefinition:
    @_task_check(
        task,
        LABELED_SAMPLE,
        (
            f"At most {max_sample_size(task):,} rows, all in the corpus; every accepted label in the task's "
            "label set (invalid answers kept with valid=false, never coerced); at least two classes covered."
        ),
    )
    def sample_labels_valid(context: AssetCheckExecutionContext, task_store: TaskStore) -> AssetCheckResult:
        table, warehouse = task_table(task, LABELED_SAMPLE), task_store.warehouse
        read = corpus_read(context, warehouse, table)
        if read.replaced_by:
            # Its rows are gone; what was logged when it was written still bounds their number.
            rows = read.own.rows
            return AssetCheckResult(
                passed=1 <= rows <= max_sample_size(task),
                metadata={**read.metadata, "rows": rows, "rows_expected": f"1 to {max_sample_size(task):,}"},
            )
        # A corpus replaced since cannot tell whether it held the sampled ids: their membership is not judged then.
        corpus_ids = CORPUS if read.live else table
        df = warehouse.read_df(
            f"""SELECT s.id, s.teacher_label, s.valid, c.id IS NOT NULL AS in_corpus,
                       (s.valid = (s.teacher_label IS NOT NULL)) AS label_matches_valid
                FROM {table} s LEFT JOIN (SELECT id FROM {corpus_ids}) c USING (id)"""
        )
        drift_rows = len(task_store.granted_topups(task))
        outcome = project_of(warehouse).validate(sample_suite(task, drift_rows), df, context.run.run_id)
        covered = df.loc[df["valid"], "teacher_label"].nunique()
        return AssetCheckResult(
            passed=outcome.passed,
            metadata={
                **read.metadata,
                "classes_covered": f"{covered} of {len(task.labels)}",
                "invalid_answers": int((~df["valid"]).sum()),
                **outcome.metadata(),
            },
        )

    return sample_labels_valid


def sample_invalid_answers_rare_check(task: TaskSpec) -> AssetChecksDefinition:
    @_task_check(
        task,
        LABELED_SAMPLE,
        (
            f"At most {MAX_INVALID_ANSWER_FRACTION:.0%} of teacher answers are unparseable or "
            "outside the label set (a warning: the prompt or model may need attention)."
        ),
        blocking=False,
    )
    def sample_invalid_answers_rare(context: AssetCheckExecutionContext, warehouse: Warehouse) -> AssetCheckResult:
        df = warehouse.read_df(f"SELECT id, valid, raw_answer FROM {task_table(task, LABELED_SAMPLE)}")
        outcome = project_of(warehouse).validate(invalid_answers_suite(task), df, context.run.run_id)
        examples = df.loc[~df["valid"], ["id", "raw_answer"]].head(10)
        return AssetCheckResult(
            passed=outcome.passed,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "invalid_examples": examples.to_markdown(index=False) if len(examples) else "none",
                **outcome.metadata(),
            },
        )

    return sample_invalid_answers_rare


def every_candidate_evaluated_check(task: TaskSpec) -> AssetChecksDefinition:
    @_task_check(
        task,
        STUDENT_CANDIDATES,
        (
            "Every configured candidate at every sample size, or its failure or pruning (clearly "
            "behind at a smaller size) recorded with the reason; accuracies in [0, 1]."
        ),
    )
    def every_candidate_evaluated(context: AssetCheckExecutionContext, warehouse: Warehouse) -> AssetCheckResult:
        df = warehouse.read_df(f"SELECT * FROM {task_table(task, STUDENT_CANDIDATES)}")
        df["failure_explained"] = (df["status"] == "ok") | df["error"].fillna("").str.len().gt(0)
        sizes = df["sample_size"].nunique()
        outcome = project_of(warehouse).validate(candidates_suite(task, sizes), df, context.run.run_id, id_column=None)
        return AssetCheckResult(passed=outcome.passed, metadata={"sample_sizes": sizes, **outcome.metadata()})

    return every_candidate_evaluated


def student_chosen_check(task: TaskSpec) -> AssetChecksDefinition:
    @_task_check(
        task,
        MODEL_SELECTION_REPORT,
        "Exactly one configured candidate is marked as the chosen student.",
    )
    def student_chosen(context: AssetCheckExecutionContext, warehouse: Warehouse) -> AssetCheckResult:
        df = warehouse.read_df(
            f"SELECT candidate, chosen::INT AS chosen_int FROM {task_table(task, MODEL_SELECTION_REPORT)}"
        )
        outcome = project_of(warehouse).validate(chosen_suite(task), df, context.run.run_id, id_column=None)
        return AssetCheckResult(passed=outcome.passed, metadata=outcome.metadata())

    return student_chosen


def chosen_student_above_floor_check(task: TaskSpec) -> AssetChecksDefinition:
    kind = "hard floor: blocks predictions" if task.accuracy_floor_is_hard else "warning"

    @_task_check(
        task,
        MODEL_SELECTION_REPORT,
        (
            f"The chosen student's cross-validated accuracy vs the teacher is at least "
            f"{task.accuracy_floor:.2f} ({kind}; set accuracy_floor / accuracy_floor_is_hard in the task)."
        ),
        blocking=task.accuracy_floor_is_hard,
    )
    def chosen_student_above_floor(context: AssetCheckExecutionContext, warehouse: Warehouse) -> AssetCheckResult:
        df = warehouse.read_df(
            f"SELECT candidate, cv_accuracy FROM {task_table(task, MODEL_SELECTION_REPORT)} WHERE chosen"
        )
        outcome = project_of(warehouse).validate(floor_suite(task), df, context.run.run_id, id_column=None)
        return AssetCheckResult(
            passed=outcome.passed,
            severity=AssetCheckSeverity.ERROR if task.accuracy_floor_is_hard else AssetCheckSeverity.WARN,
            metadata={"floor": task.accuracy_floor, **outcome.metadata()},
        )

    return chosen_student_above_floor


def predictions_cover_corpus_check(task: TaskSpec) -> AssetChecksDefinition:
    @_task_check(
        task,
        PREDICTIONS,
        (
            "One row per corpus id; labels in the label set; confidence in [0, 1]; rows the "
            "teacher labelled (text unchanged since) keep the teacher's label."
        ),
    )
    def predictions_cover_corpus(context: AssetCheckExecutionContext, task_store: TaskStore) -> AssetCheckResult:
        table, warehouse = task_table(task, PREDICTIONS), task_store.warehouse
        read = corpus_read(context, warehouse, table)
        if read.replaced_by:
            return read.result_from_log()
        if not read.live:  # judged against the corpus this run read, which has moved on: not a verdict to carry
            return _predictions_cover_corpus(context, task, warehouse, read)
        name, suite = f"{task.name}_predictions_cover_corpus", predictions_suite(task, 0)
        # the sample is logged again by every run that keeps it: its draw and size stand for it
        sample = (task_store.draw_id(task), warehouse.row_count(task_table(task, LABELED_SAMPLE)))

        def key():
            return basis(warehouse, [table, CORPUS], task_fingerprint(task), sample, *suite_basis(warehouse, suite))

        return carried_or_judged(
            context, warehouse, name, key, lambda: _predictions_cover_corpus(context, task, warehouse, read)
        )

    return predictions_cover_corpus


def _predictions_cover_corpus(context, task: TaskSpec, warehouse: Warehouse, read) -> AssetCheckResult:
    table = task_table(task, PREDICTIONS)
    # While the corpus has moved on, the table's own ids stand in for it and its logged fingerprint decides.
    corpus_ids = CORPUS if read.live else table
    df = warehouse.read_df(
        f"""SELECT coalesce(p.id, c.id) AS id, p.label, p.confidence, p.source,
                   CASE WHEN p.id IS NULL THEN 'missing (no prediction)'
                        WHEN c.id IS NULL THEN 'extra (not in corpus)' ELSE 'yes' END AS row_matches_corpus,
                   (s.id IS NULL OR p.label = s.teacher_label) AND (s.id IS NULL) = (p.source <> 'teacher-sample')
                       AS keeps_teacher_label
            FROM {table} p
            FULL OUTER JOIN (SELECT id FROM {corpus_ids}) c ON p.id = c.id
            LEFT JOIN (
                SELECT id, teacher_label, {TEXT_HASH_SQL.format(column="text")} AS text_hash
                FROM {task_table(task, LABELED_SAMPLE)} WHERE valid
            ) s ON s.id = p.id AND s.text_hash = p.text_hash"""
    )
    df["keeps_teacher_label"] = df["keeps_teacher_label"].fillna(False).astype(bool)
    corpus_rows = warehouse.row_count(CORPUS) if read.live else read.corpus.rows
    if not read.live:
        df["row_matches_corpus"] = read.coverage(*warehouse.id_fingerprint(table))
    outcome = project_of(warehouse).validate(predictions_suite(task, corpus_rows), df, context.run.run_id)
    return AssetCheckResult(passed=outcome.passed, metadata={**read.metadata, **outcome.metadata()})


def audit_suite(task: TaskSpec) -> Suite:
    import great_expectations.expectations as gxe

    from scalellm_dagster.checks.rules import ExpectAuditWithinInterval

    return _suite(
        task,
        DRIFT_AUDIT,
        "audit_agreement_within_estimate",
        [
            rule(
                gxe.ExpectColumnValuesToBeBetween(column="agreement", min_value=0, max_value=1),
                "agreement_in_range",
            ),
            rule(ExpectAuditWithinInterval(), "audit_within_interval"),
        ],
    )


def audit_check(task: TaskSpec) -> AssetChecksDefinition:
    key = AssetKey(task_key(task, DRIFT_AUDIT))

    @multi_asset_check(
        name=f"{key.to_python_identifier()}_audit_agreement_within_estimate",  # the op's name: one per task
        specs=[
            AssetCheckSpec(
                name="audit_agreement_within_estimate",
                asset=key,
                description="The deployed labels' agreement with the teacher on this refresh's audited new rows is "
                "not below the agreement expected on those rows by more than the audit's 95 % interval (a warning: two "
                "in a row call for a drift top-up). No result when nothing was audited: not audited is not passed."
                + suite_says(suite_name(task_key(task, DRIFT_AUDIT), "audit_agreement_within_estimate")),
            )
        ],
        can_subset=True,
    )
    @functools.partial(bind_resources, prefix=task.key_prefix)
    @with_heartbeat
    def audit_agreement_within_estimate(context: AssetCheckExecutionContext, task_store: TaskStore):
        log = task_store.audit_history(task)
        latest = context.instance.get_latest_materialization_event(key)
        if latest is not None and latest.run_id == context.run.run_id:
            row = log[log["audit_run_id"] == context.run.run_id] if len(log) else log  # this run's audit only
        else:  # run on its own: the latest audit
            row = log.tail(1)
        row = row[row["audited"] > 0] if len(row) else row
        if not len(row):
            context.log.info(
                "not audited (a first audit is a baseline; or no new rows the student labelled): no check result"
            )
            return
        df = row.assign(passed=row["passed"].astype(bool))
        outcome = project_of(task_store.warehouse).validate(audit_suite(task), df, context.run.run_id, id_column=None)
        r = row.iloc[0]
        yield AssetCheckResult(
            check_name="audit_agreement_within_estimate",
            asset_key=key,
            passed=outcome.passed,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "audit_run_id": str(r["audit_run_id"]),
                "agreement": float(r["agreement"]),
                "interval_95": f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                "expected_agreement": float(r["estimate"]),
                "audited_rows": int(r["audited"]),
                **outcome.metadata(),
            },
        )

    return audit_agreement_within_estimate
