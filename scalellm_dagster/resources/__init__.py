"""The outside world behind Dagster resources: warehouse, corpus source, embedder, teacher."""

from scalellm_dagster.resources.embedder import EmbedderResource
from scalellm_dagster.resources.source import CorpusSource
from scalellm_dagster.resources.teacher import TeacherResource
from scalellm_dagster.resources.warehouse import Warehouse

__all__ = ["CorpusSource", "EmbedderResource", "TeacherResource", "Warehouse"]
