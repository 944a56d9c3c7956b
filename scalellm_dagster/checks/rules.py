"""The project's rules that are computed in SQL (a join with the corpus, the teacher's sample…), as expectations that
name them.

The warehouse computes one column per rule (`row_matches_corpus`, `keeps_teacher_label`, …) in the query that
builds the frame a check validates; each class below is the expectation on that column, with the rule's name as
its type and a sentence Data Docs shows in place of "values must belong to this set". A failure lists the offending
rows by id. Subclassing is how Great Expectations 1.x defines a custom expectation: defining the class registers its
type, so suite files that name it load once this module is imported.
"""

from __future__ import annotations

import great_expectations.expectations as gxe


class ExpectOneRowPerCorpusId(gxe.ExpectColumnValuesToBeInSet):
    """Every corpus id has exactly one row in the table and the table has no id the corpus lacks: the FULL OUTER
    JOIN of the table's ids with the corpus's marks each id `yes`, `missing (…)` or `extra (not in corpus)`."""

    column: str = "row_matches_corpus"
    value_set: list = ["yes"]
    description: str = (
        "One row per corpus id: every corpus id present, no id the corpus lacks "
        "(`row_matches_corpus`, from a FULL OUTER JOIN with the corpus's ids)"
    )


class ExpectVectorsToBeFinite(gxe.ExpectColumnValuesToBeInSet):
    column: str = "finite"
    value_set: list = [True]
    description: str = "Every vector holds finite numbers only: no NaN, no infinity (`finite`, computed in DuckDB)"


class ExpectSampledIdsToBeInCorpus(gxe.ExpectColumnValuesToBeInSet):
    column: str = "in_corpus"
    value_set: list = [True]
    description: str = "Every sampled id is a corpus id (`in_corpus`, from a LEFT JOIN of the sample with the corpus)"


class ExpectValidFlagToMatchLabel(gxe.ExpectColumnValuesToBeInSet):
    column: str = "label_matches_valid"
    value_set: list = [True]
    description: str = (
        "An answer is marked valid exactly when a label was kept: invalid answers are stored with valid=false "
        "and no label, never coerced (`label_matches_valid` = (valid = (teacher_label IS NOT NULL)))"
    )


class ExpectFailuresToBeExplained(gxe.ExpectColumnValuesToBeInSet):
    column: str = "failure_explained"
    value_set: list = [True]
    description: str = "Every candidate that failed or was pruned has its reason recorded (`error` not empty)"


class ExpectTeacherLabelsKept(gxe.ExpectColumnValuesToBeInSet):
    column: str = "keeps_teacher_label"
    value_set: list = [True]
    description: str = (
        "Rows the teacher labelled (text unchanged since) keep the teacher's label and say so "
        "(source = 'teacher-sample'); no other row claims it (`keeps_teacher_label`, from a join with the sample "
        "on id and text hash)"
    )


class ExpectAuditWithinInterval(gxe.ExpectColumnValuesToBeInSet):
    column: str = "passed"
    value_set: list = [True]
    description: str = (
        "The audit's agreement with the teacher is not below the agreement expected on the audited rows by more "
        "than the audit's 95 % interval (its interval, and the pooled one, reach the estimate)"
    )


class ExpectExportHoldsEveryRow(gxe.ExpectColumnValuesToBeInSet):
    column: str = "row_matches"
    value_set: list = ["yes"]
    description: str = (
        "The exported table holds every warehouse prediction's id and no other (`row_matches`, from an outer "
        "merge of the table read back with the warehouse's rows)"
    )


class ExpectExportedValueToMatch(gxe.ExpectColumnValuesToBeInSet):
    """On `<column>_matches`: the exported value equals the warehouse's in that row."""

    value_set: list = [True]
    description: str = "The exported value equals the warehouse's in every row"
