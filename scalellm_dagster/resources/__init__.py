"""The outside world behind Dagster resources: warehouse (and each task's state in it: TaskStore), corpus source,
embedder, teacher, predictions sink."""

from scalellm_dagster.resources.embedder import EmbedderResource
from scalellm_dagster.resources.predictions_sink import PredictionsSink
from scalellm_dagster.resources.source import CorpusSource
from scalellm_dagster.resources.task_store import TaskStore
from scalellm_dagster.resources.teacher import TeacherResource
from scalellm_dagster.resources.warehouse import Warehouse

__all__ = ["CorpusSource", "EmbedderResource", "PredictionsSink", "TaskStore", "TeacherResource", "Warehouse"]
