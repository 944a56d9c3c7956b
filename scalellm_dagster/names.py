"""The names the layers share: the warehouse's tables, the assets' keys, the job and the run tags. Read them from
here; never type them. A task's tables live in a schema named after the task (`<task>.predictions`), and its
assets under a key prefix of the same name (`<task>/predictions`)."""

from __future__ import annotations

import hashlib
import os

CORPUS_SOURCE = "corpus_source"  # the outside data, an external asset whose new versions a sensor reports
CORPUS = "corpus"
EMBEDDINGS = "embeddings"

LABELED_SAMPLE = "labeled_sample"
STUDENT_CANDIDATES = "student_candidates"
MODEL_SELECTION_REPORT = "model_selection_report"
PREDICTIONS = "predictions"
DRIFT_AUDIT = "drift_audit"
SHARED_REQUESTS = "shared_teacher_requests"  # every task's question in one request (SCALELLM_SHARED_REQUESTS)
EXPORTED_PREDICTIONS = "exported_predictions"  # a task's predictions written to PostgreSQL (SCALELLM_PREDICTIONS_TO)
TASK_ASSETS = (LABELED_SAMPLE, STUDENT_CANDIDATES, MODEL_SELECTION_REPORT, PREDICTIONS)  # what a task rerun makes

# Tables a task keeps beside its assets' tables.
AUDIT_LOG = "audit_log"
AUDIT_SCOPE = "audit_scope"
ESTIMATE_BASIS = "estimate_basis"
AUDIT_ANSWERS = "audit_answers"
AUDIT_EXPECTATION = "audit_expectation"
DRIFT_TOPUPS = "drift_topups"
MODEL_HISTORY = "model_history"  # one row per sample draw: when, from how many rows, under which definition, why
DEPLOYED_MODEL = "deployed_model"  # the trained student per model version, pickled
EXPORTED_STATE = "exported_state"  # what the last export wrote to PostgreSQL: the next one sends only the difference

ALL_JOB = "scalellm_all"
RETRAIN_JOB = "retrain_models"  # every task's model replaced (run tag scalellm/retrain=all), then its predictions

# Every run of the project writes the warehouse: the tag lets an instance's tag-based run limits find them.
WAREHOUSE_TAGS = {"scalellm/writes": "warehouse"}
POOL_PREFIX = "scalellm_warehouse"


def warehouse_pool(database: str) -> str:
    """The Dagster concurrency pool of the steps that write the DuckDB file `database`: one pool per file, so two
    code locations (or two corpora) writing different files never wait for each other, and another code location's
    runs are never held back by ours. The file's stem for the reader, a digest of its absolute path for uniqueness."""
    if database == ":memory:":
        return f"{POOL_PREFIX}:memory"
    path = os.path.abspath(os.path.expanduser(database))
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.splitext(os.path.basename(path))[0])
    return f"{POOL_PREFIX}:{stem}:{hashlib.sha256(path.encode()).hexdigest()[:8]}"


# The resources every asset and check may take, by parameter name (`warehouse: Warehouse`).
RESOURCES = ("warehouse", "task_store", "source", "embedder", "teacher", "cluster", "sink")


def prefixed(prefix, name: str) -> str:
    """A definition's name inside an instance of the component: `<prefix>_<name>` (`tickets_scalellm_all`); the
    environment-variable code location has no prefix and keeps the bare name. Resource keys, jobs and sensors are
    named so: two instances in one code location never share one by accident."""
    return "_".join([*prefix, name])


def key_path(prefix, *names: str) -> list[str]:
    """The asset key path of a definition of the instance with `prefix` (`tickets/corpus`)."""
    return [*prefix, *names]


def task_table(task, name: str) -> str:
    """`<task>.<name>`; `task` is a TaskSpec or a task's name."""
    return f"{getattr(task, 'name', task)}.{name}"


def task_key(task, name: str) -> list[str]:
    """The asset key path of a task's asset (`AssetKey(task_key(task, PREDICTIONS))`): under the prefix of the
    component instance the task belongs to, if any (`tickets/urgency/predictions`)."""
    return [*getattr(task, "key_prefix", ()), getattr(task, "name", task), name]


# A task's fields that say *when* its model is replaced, not what it is: changing them replaces nothing.
POLICY_FIELDS = ("retrain_cron", "retrain_growth")
# Where the task's assets are placed (the component instance's key prefix), not what the model is.
PLACEMENT_FIELDS = ("key_prefix",)
# How the teacher's answers are fetched (synchronously, through the Batch API), not what they are.
CHANNEL_FIELDS = ("teacher_mode",)


def task_fingerprint(task) -> str:
    """Changes whenever anything the teacher or the students see changes (labels, instruction, budget, ...): the
    code version of the task's assets, which `code_version_changed` and the replacement policy compare. The
    replacement policy's own fields are left out (and absent ones leave the fingerprint as it was before them)."""
    fields = getattr(task, "__dataclass_fields__", None)
    if fields is None:
        return hashlib.sha256(repr(task).encode()).hexdigest()[:12]
    left_out = (*POLICY_FIELDS, *PLACEMENT_FIELDS, *CHANNEL_FIELDS)
    shown = ", ".join(f"{name}={getattr(task, name)!r}" for name in fields if name not in left_out)
    return hashlib.sha256(f"{type(task).__name__}({shown})".encode()).hexdigest()[:12]
