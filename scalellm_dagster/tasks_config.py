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
from croniter import croniter

from scalellm_dagster.core.students import DEFAULT_CANDIDATES, KNOWN_CANDIDATES
from scalellm_dagster.names import PLACEMENT_FIELDS, POLICY_FIELDS
from scalellm_dagster.settings import MODES

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
    # When the deployed model is replaced besides a changed definition or a drift top-up (`retrain:` in the file):
    # on a cron schedule, and/or once the corpus has grown by this share since the sample was drawn.
    retrain_cron: str | None = None
    retrain_growth: float | None = None
    # How the `openai` teacher sends this task's requests (`sync`, `batch`; None: SCALELLM_TEACHER_MODE). The same
    # answers either way, so not part of the definition: switching re-teaches nothing.
    teacher_mode: str | None = None
    # The key prefix of the component instance the task belongs to (`tickets`): its assets are
    # `tickets/<task>/...`. Not part of the definition: set by the component, never in a tasks file.
    key_prefix: tuple[str, ...] = ()

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
    return parse_tasks(doc["tasks"], where=f"tasks file {path}: tasks")


def parse_tasks(entries: list, where: str = "tasks") -> list[TaskSpec]:
    """The tasks of a list of mappings (a tasks file's `tasks:`, or a component's inline `tasks:`); `where` begins
    each error's message."""
    tasks = [parse_task(entry, where=f"{where}[{i}]") for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise TaskConfigError(f"{where}: task name {task.name!r} is used twice; names must be unique")
        seen.add(task.name)
    return tasks


# What each field of a task accepts, declared (as scikit-learn declares `_parameter_constraints`): its default
# and its bounds; the message for a value outside them names the field and says what was expected.
_MISSING = object()


@dataclass(frozen=True)
class _Integer:
    default: Any = _MISSING
    minimum: int = 0

    def read(self, value, key: str, where: str):
        if value is None and self.default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            raise TaskConfigError(f"{where}: '{key}' must be an integer >= {self.minimum}, got {value!r}")
        return value


@dataclass(frozen=True)
class _Number:
    default: Any = _MISSING
    minimum: float = 0.0
    maximum: float = float("inf")
    exclusive_minimum: bool = False
    expected: str = ""  # the message's words for the range, when plainer than the bounds

    def read(self, value, key: str, where: str):
        if value is None and self.default is None:
            return None
        low_ok = isinstance(value, int | float) and (
            value > self.minimum if self.exclusive_minimum else value >= self.minimum
        )
        if isinstance(value, bool) or not low_ok or not value <= self.maximum or value == float("inf"):
            raise TaskConfigError(
                f"{where}: '{key}' must be {self.expected or f'a number >= {self.minimum:g}'}, got {value!r}"
            )
        return float(value)


@dataclass(frozen=True)
class _Flag:
    default: bool = False

    def read(self, value, key: str, where: str):
        if not isinstance(value, bool):
            raise TaskConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
        return value


@dataclass(frozen=True)
class _Choice:
    options: tuple[str, ...]
    default: str | None
    says: str = ""  # what the field decides, for the message

    def read(self, value, key: str, where: str):
        if value is None and self.default is None:  # optional: unset
            return None
        value = value.replace("_", "-") if key == "sampling" and isinstance(value, str) else value
        if value not in self.options:
            raise TaskConfigError(
                f"{where}: '{key}' {self.says + ': one of' if self.says else 'must be one of'} "
                f"{list(self.options)}, got {value!r}"
            )
        return value


@dataclass(frozen=True)
class _Text:
    default: Any = ""
    expected: str = "a string"

    def read(self, value, key: str, where: str):
        if value is None and self.default is None:
            return None
        if not isinstance(value, str) or (self.default is None and not value):
            raise TaskConfigError(f"{where}: '{key}' must be {self.expected}, got {value!r}")
        return value.strip() if key == "description" else value


_FRACTION = "a number in (0, 1]"
FIELDS = {
    "budget": _Integer(minimum=10),
    "gold_column": _Text(None, "a column name of the corpus"),
    "description": _Text(""),
    "sampling": _Choice(SAMPLING_STRATEGIES, "random"),
    "seed": _Integer(0),
    "cv_folds": _Integer(5, minimum=2),
    "prune_candidates": _Flag(True),
    "selection": _Choice(SELECTION_CRITERIA, "accuracy"),
    "min_rows_per_second": _Number(0.0),
    "inference_seconds_per_point": _Number(10.0),
    "accuracy_floor": _Number(0.5, maximum=1.0, expected="a number in [0, 1]"),
    "accuracy_floor_is_hard": _Flag(False),
    "uncertainty_rounds": _Integer(4, minimum=1),
    "target_accuracy": _Number(None, maximum=1.0, exclusive_minimum=True, expected=_FRACTION),
    "max_teacher_cost_usd": _Number(None, exclusive_minimum=True, expected="a positive number"),
    "follow_budget_advice": _Flag(False),
    "max_budget": _Integer(None),  # at least the budget: `_check_together`
    "cascade_budget": _Integer(0),
    "cascade_target_agreement": _Number(0.95, maximum=1.0, exclusive_minimum=True, expected=_FRACTION),
    "cascade_delta": _Number(None, maximum=1.0, exclusive_minimum=True, expected=_FRACTION),
    "suspect_labels": _Choice(
        SUSPECT_POLICIES, "keep", "says what to do with teacher labels the students find implausible"
    ),
    "audit_rows": _Integer(30),
    "audit_pool_rows": _Integer(300),
    "drift_topup_rows": _Integer(None, minimum=1),
    "teacher_mode": _Choice(MODES, None, "says how the `openai` teacher sends this task's requests"),
}


def parse_task(entry: Any, where: str = "task") -> TaskSpec:
    if not isinstance(entry, dict):
        raise TaskConfigError(f"{where}: expected a mapping with name, instruction, labels and budget")
    known = (set(TaskSpec.__dataclass_fields__) - set(POLICY_FIELDS) - set(PLACEMENT_FIELDS)) | {"retrain"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise TaskConfigError(f"{where}: unknown field(s) {unknown}; known fields are {sorted(known)}")
    name = _parse_name(entry.get("name"), where)
    where = f"{where} ({name})"
    instruction = entry.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise TaskConfigError(f"{where}: 'instruction' must be a non-empty string telling the teacher what to decide")
    labels = _parse_labels(entry.get("labels"), where)
    values = {key: rule.read(_given(entry, key, rule), key, where) for key, rule in FIELDS.items()}
    values.update(
        name=name,
        instruction=instruction.strip(),
        labels=labels,
        candidates=_parse_candidates(entry, where),
        few_shot=_parse_few_shot(entry, labels, where),
        sample_sizes=_parse_sample_sizes(entry, values["budget"], where),
        **_parse_retrain(entry.get("retrain"), where),
    )
    _check_together(values, where)
    return TaskSpec(**values)


def _given(entry: dict, key: str, rule) -> Any:
    """The field's value; absent or null means the default (None for a field that has none, so the rule says it
    is required)."""
    value = entry.get(key)
    if value is None:
        return None if rule.default is _MISSING else rule.default
    return value


def _check_together(values: dict, where: str) -> None:
    """The rules that tie one field to another."""
    if values["follow_budget_advice"] and values["target_accuracy"] is None and values["max_teacher_cost_usd"] is None:
        raise TaskConfigError(f"{where}: 'follow_budget_advice' needs 'target_accuracy' or 'max_teacher_cost_usd'")
    if values["max_budget"] is not None and values["max_budget"] < values["budget"]:
        raise TaskConfigError(
            f"{where}: 'max_budget' must be an integer >= {values['budget']}, got {values['max_budget']!r}"
        )
    delta = values["cascade_delta"]
    if delta is not None and delta >= 0.5:
        raise TaskConfigError(
            f"{where}: 'cascade_delta' is the probability that the cascade misses its target: a "
            f"number in (0, 0.5), e.g. 0.05, got {delta!r}"
        )
    if delta is not None and values["sampling"] != "random":
        # The bound reads the rows outside the sample off the sample's held-out pairs: only a random draw is like them.
        raise TaskConfigError(
            f"{where}: 'cascade_delta' certifies agreement only on a random sample, and 'sampling' "
            f"is {values['sampling']!r}: its rows are chosen by the embeddings or the student's "
            "doubt, so they are not like the other rows and the statement would not hold. Use "
            "sampling: random, or leave cascade_delta unset (the cascade then plans on expected "
            "agreement, with no guarantee)"
        )


def _parse_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name in _RESERVED_NAMES:
        raise TaskConfigError(
            f"{where}: 'name' must be lower-case letters, digits and underscores, starting with a letter "
            f"(it becomes a DuckDB schema and a Dagster asset prefix), and not one of {sorted(_RESERVED_NAMES)}; "
            f"got {name!r}"
        )
    return name


def _parse_candidates(entry: dict, where: str) -> tuple[str, ...]:
    candidates = tuple(entry.get("candidates", DEFAULT_CANDIDATES))
    bad = [c for c in candidates if c not in KNOWN_CANDIDATES]
    if bad or not candidates:
        raise TaskConfigError(
            f"{where}: 'candidates' has unknown student(s) {bad}; choose from {sorted(KNOWN_CANDIDATES)}"
        )
    return candidates


def _parse_sample_sizes(entry: dict, budget: int, where: str) -> tuple[int, ...]:
    sizes = entry.get("sample_sizes", [])
    if not isinstance(sizes, list) or not all(isinstance(s, int) and 2 <= s <= budget for s in sizes):
        raise TaskConfigError(f"{where}: 'sample_sizes' must be a list of integers between 2 and budget ({budget})")
    return tuple(sorted(set(sizes)))


def _parse_retrain(raw: Any, where: str) -> dict:
    """`retrain: {cron: "0 3 * * 0", growth: 0.25}`: either or both; absent, the model is replaced only when the
    task's definition changes, a drift top-up is due, or a user asks."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw or set(raw) - {"cron", "growth"}:
        raise TaskConfigError(
            f"{where}: 'retrain' must be a mapping with 'cron' (a cron string, e.g. \"0 3 * * 0\") and/or 'growth' "
            f"(a share of the corpus, e.g. 0.25), got {raw!r}"
        )
    cron, growth = raw.get("cron"), raw.get("growth")
    if cron is not None and not (isinstance(cron, str) and croniter.is_valid(cron)):
        raise TaskConfigError(f"{where}: 'retrain.cron' must be a cron string such as \"0 3 * * 0\", got {cron!r}")
    if growth is not None and (isinstance(growth, bool) or not isinstance(growth, int | float) or growth <= 0):
        raise TaskConfigError(
            f"{where}: 'retrain.growth' must be a number > 0 (0.25: replace the model once the corpus has grown by "
            f"25 % since its sample was drawn), got {growth!r}"
        )
    return {"retrain_cron": cron, "retrain_growth": None if growth is None else float(growth)}


def _parse_few_shot(entry: dict, labels: dict[str, str], where: str) -> tuple[FewShotExample, ...]:
    few_shot = []
    for i, ex in enumerate(entry.get("few_shot", []) or []):
        if not isinstance(ex, dict) or not isinstance(ex.get("text"), str) or ex.get("label") not in labels:
            raise TaskConfigError(
                f"{where}: few_shot[{i}] must be a mapping with 'text' and a 'label' from the task's labels"
            )
        few_shot.append(FewShotExample(text=ex["text"], label=ex["label"]))
    return tuple(few_shot)


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
                'quote it, e.g. "yes"'
            )
        if not isinstance(label, str) or not label.strip():
            raise TaskConfigError(f"{where}: every label must be a non-empty string, got {label!r}")
        labels[label] = str(desc).strip() if desc else label.replace("_", " ").strip()
    return labels
