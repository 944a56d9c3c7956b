"""Classification tasks: the tasks YAML file, parsed and validated into `TaskSpec`s.

Errors name the file, the task and the field, and say what was expected, because a typo in this file is the most
common way a user breaks the pipeline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scalellm_dagster.core.students import DEFAULT_CANDIDATES, KNOWN_CANDIDATES

SAMPLING_STRATEGIES = ("random", "stratified-by-cluster", "uncertainty")
SELECTION_CRITERIA = ("accuracy", "accuracy_under_latency")
SUSPECT_POLICIES = ("keep", "reask", "drop")  # what to do with teacher labels the students find implausible
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RESERVED_NAMES = {"main", "scalellm_cache", "information_schema", "pg_catalog", "temp"}


class TaskConfigError(ValueError):
    """The tasks file is missing, unreadable, or holds a task that does not validate."""


@dataclass(frozen=True)
class FewShotExample:
    text: str
    label: str


@dataclass(frozen=True)
class TaskSpec:
    """One classification task over the shared corpus."""

    name: str
    instruction: str
    labels: dict[str, str]
    budget: int
    gold_column: str | None = None
    description: str = ""
    sampling: str = "random"
    seed: int = 0
    sample_sizes: tuple[int, ...] = ()
    cv_folds: int = 5
    prune_candidates: bool = True  # stop evaluating a candidate clearly behind at a smaller sample size
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    selection: str = "accuracy"
    min_rows_per_second: float = 0.0
    # One point of accuracy is worth this many seconds of predicting the whole corpus (0: inference cost ignored).
    inference_seconds_per_point: float = 10.0
    accuracy_floor: float = 0.5
    accuracy_floor_is_hard: bool = False
    few_shot: tuple[FewShotExample, ...] = field(default_factory=tuple)
    uncertainty_rounds: int = 4
    target_accuracy: float | None = None
    max_teacher_cost_usd: float | None = None
    follow_budget_advice: bool = False
    max_budget: int | None = None
    cascade_budget: int = 0
    cascade_target_agreement: float = 0.95
    cascade_delta: float | None = None  # set: the cascade certifies the target with probability >= 1 - delta
    suspect_labels: str = "keep"  # keep | reask (one row per request) | drop (from training)
    audit_rows: int = 30  # teacher checks on each refresh's new rows, never trained on (0: no audits)
    audit_pool_rows: int = 300  # each audit is also judged pooled with the same student's latest audits (0: alone)
    drift_topup_rows: int | None = None  # rows added to the sample after two failed audits (None: budget // 4, >= 50)

    @property
    def drift_topup(self) -> int:
        return self.drift_topup_rows if self.drift_topup_rows is not None else max(50, self.budget // 4)

    @property
    def label_names(self) -> list[str]:
        return list(self.labels)


def load_tasks(path: str | Path) -> list[TaskSpec]:
    path = Path(path)
    if not path.is_file():
        raise TaskConfigError(f"tasks file {path} does not exist (set SCALELLM_TASKS to a YAML file of tasks)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaskConfigError(f"tasks file {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), list) or not doc["tasks"]:
        raise TaskConfigError(f"tasks file {path}: expected a top-level 'tasks:' list with at least one task")
    tasks = [parse_task(entry, where=f"{path}: tasks[{i}]") for i, entry in enumerate(doc["tasks"])]
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise TaskConfigError(f"tasks file {path}: task name {task.name!r} is used twice; names must be unique")
        seen.add(task.name)
    return tasks


def parse_task(entry: Any, where: str = "task") -> TaskSpec:
    if not isinstance(entry, dict):
        raise TaskConfigError(f"{where}: expected a mapping with name, instruction, labels and budget")
    known = set(TaskSpec.__dataclass_fields__)
    unknown = sorted(set(entry) - known)
    if unknown:
        raise TaskConfigError(f"{where}: unknown field(s) {unknown}; known fields are {sorted(known)}")

    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or name in _RESERVED_NAMES:
        raise TaskConfigError(
            f"{where}: 'name' must be lower-case letters, digits and underscores, starting with a letter "
            f"(it becomes a DuckDB schema and a Dagster asset prefix), and not one of {sorted(_RESERVED_NAMES)}; "
            f"got {name!r}"
        )
    where = f"{where} ({name})"

    instruction = entry.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise TaskConfigError(f"{where}: 'instruction' must be a non-empty string telling the teacher what to decide")

    labels = _parse_labels(entry.get("labels"), where)
    budget = _int_field(entry, "budget", where, minimum=10)

    gold = entry.get("gold_column")
    if gold is not None and (not isinstance(gold, str) or not gold):
        raise TaskConfigError(f"{where}: 'gold_column' must be a column name of the corpus, got {gold!r}")

    sampling = str(entry.get("sampling", "random")).replace("_", "-")
    if sampling not in SAMPLING_STRATEGIES:
        raise TaskConfigError(f"{where}: 'sampling' must be one of {list(SAMPLING_STRATEGIES)}, got {sampling!r}")
    suspect_labels = entry.get("suspect_labels", "keep")
    if suspect_labels not in SUSPECT_POLICIES:
        raise TaskConfigError(f"{where}: 'suspect_labels' says what to do with teacher labels the students find "
                              f"implausible: one of {list(SUSPECT_POLICIES)}, got {suspect_labels!r}")
    selection = entry.get("selection", "accuracy")
    if selection not in SELECTION_CRITERIA:
        raise TaskConfigError(f"{where}: 'selection' must be one of {list(SELECTION_CRITERIA)}, got {selection!r}")

    candidates = tuple(entry.get("candidates", DEFAULT_CANDIDATES))
    bad = [c for c in candidates if c not in KNOWN_CANDIDATES]
    if bad or not candidates:
        raise TaskConfigError(
            f"{where}: 'candidates' has unknown student(s) {bad}; choose from {sorted(KNOWN_CANDIDATES)}"
        )

    sizes = entry.get("sample_sizes", [])
    if not isinstance(sizes, list) or not all(isinstance(s, int) and 2 <= s <= budget for s in sizes):
        raise TaskConfigError(f"{where}: 'sample_sizes' must be a list of integers between 2 and budget ({budget})")

    floor = entry.get("accuracy_floor", 0.5)
    if not isinstance(floor, (int, float)) or not 0.0 <= floor <= 1.0:
        raise TaskConfigError(f"{where}: 'accuracy_floor' must be a number in [0, 1], got {floor!r}")

    few_shot = []
    for i, ex in enumerate(entry.get("few_shot", []) or []):
        if not isinstance(ex, dict) or not isinstance(ex.get("text"), str) or ex.get("label") not in labels:
            raise TaskConfigError(
                f"{where}: few_shot[{i}] must be a mapping with 'text' and a 'label' from the task's labels"
            )
        few_shot.append(FewShotExample(text=ex["text"], label=ex["label"]))

    target = _optional_fraction(entry, "target_accuracy", where)
    max_cost = entry.get("max_teacher_cost_usd")
    if max_cost is not None and (not isinstance(max_cost, (int, float)) or max_cost <= 0):
        raise TaskConfigError(f"{where}: 'max_teacher_cost_usd' must be a positive number, got {max_cost!r}")
    follow = bool(entry.get("follow_budget_advice", False))
    if follow and target is None and max_cost is None:
        raise TaskConfigError(f"{where}: 'follow_budget_advice' needs 'target_accuracy' or 'max_teacher_cost_usd'")
    max_budget = entry.get("max_budget")
    if max_budget is not None:
        max_budget = _int_field(entry, "max_budget", where, minimum=budget)

    return TaskSpec(
        name=name,
        instruction=instruction.strip(),
        labels=labels,
        budget=budget,
        gold_column=gold,
        description=str(entry.get("description", "")).strip(),
        sampling=sampling,
        seed=_int_field(entry, "seed", where, default=0, minimum=0),
        sample_sizes=tuple(sorted(set(sizes))),
        cv_folds=_int_field(entry, "cv_folds", where, default=5, minimum=2),
        prune_candidates=_bool_field(entry, "prune_candidates", where, default=True),
        candidates=candidates,
        selection=selection,
        min_rows_per_second=float(entry.get("min_rows_per_second", 0.0)),
        inference_seconds_per_point=_number_field(entry, "inference_seconds_per_point", where, default=10.0),
        accuracy_floor=float(floor),
        accuracy_floor_is_hard=bool(entry.get("accuracy_floor_is_hard", False)),
        few_shot=tuple(few_shot),
        uncertainty_rounds=_int_field(entry, "uncertainty_rounds", where, default=4, minimum=1),
        target_accuracy=target,
        max_teacher_cost_usd=float(max_cost) if max_cost is not None else None,
        follow_budget_advice=follow,
        max_budget=max_budget,
        cascade_budget=_int_field(entry, "cascade_budget", where, default=0, minimum=0),
        cascade_target_agreement=_optional_fraction(entry, "cascade_target_agreement", where) or 0.95,
        cascade_delta=_cascade_delta(entry, where, sampling),
        suspect_labels=suspect_labels,
        audit_rows=_int_field(entry, "audit_rows", where, default=30, minimum=0),
        audit_pool_rows=_int_field(entry, "audit_pool_rows", where, default=300, minimum=0),
        drift_topup_rows=None if entry.get("drift_topup_rows") is None
        else _int_field(entry, "drift_topup_rows", where, minimum=1),
    )


def _cascade_delta(entry: dict, where: str, sampling: str) -> float | None:
    value = _optional_fraction(entry, "cascade_delta", where)
    if value is not None and value >= 0.5:
        raise TaskConfigError(f"{where}: 'cascade_delta' is the probability that the cascade misses its target: a "
                              f"number in (0, 0.5), e.g. 0.05, got {value!r}")
    if value is not None and sampling != "random":
        # The bound reads the rows outside the sample off the sample's held-out pairs: only a random draw is like them.
        raise TaskConfigError(f"{where}: 'cascade_delta' certifies agreement only on a random sample, and 'sampling' "
                              f"is {sampling!r}: its rows are chosen by the embeddings or the student's doubt, so "
                              "they are not like the other rows and the statement would not hold. Use sampling: "
                              "random, or leave cascade_delta unset (the cascade then plans on expected agreement, "
                              "with no guarantee)")
    return value


def _bool_field(entry: dict, key: str, where: str, default: bool) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise TaskConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
    return value


def _optional_fraction(entry: dict, key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise TaskConfigError(f"{where}: '{key}' must be a number in (0, 1], got {value!r}")
    return float(value)


def _parse_labels(raw: Any, where: str) -> dict[str, str]:
    if isinstance(raw, list):
        raw = {label: None for label in raw}
    if not isinstance(raw, dict) or len(raw) < 2:
        raise TaskConfigError(
            f"{where}: 'labels' must list at least two labels, as a list of names or a mapping name -> description"
        )
    labels: dict[str, str] = {}
    for label, desc in raw.items():
        if isinstance(label, bool):
            raise TaskConfigError(
                f"{where}: label {label!r} was read as a boolean (YAML turns yes/no/true/false into booleans); "
                "quote it, e.g. \"yes\""
            )
        if not isinstance(label, str) or not label.strip():
            raise TaskConfigError(f"{where}: every label must be a non-empty string, got {label!r}")
        labels[label] = str(desc).strip() if desc else label.replace("_", " ").strip()
    return labels


def _number_field(entry: dict, key: str, where: str, default: float, minimum: float = 0.0) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value < float("inf"):
        raise TaskConfigError(f"{where}: '{key}' must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _int_field(entry: dict, key: str, where: str, default: int | None = None, minimum: int = 0) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TaskConfigError(f"{where}: '{key}' must be an integer >= {minimum}, got {value!r}")
    return value
