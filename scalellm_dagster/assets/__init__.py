"""Dagster assets: thin wiring of resources to the engine, with metadata for the UI. The shared foundation
(`corpus`, `embeddings`) and, per task, the branch `build_task_assets` makes.

Asset modules do not use `from __future__ import annotations`: Dagster reads the `context` parameter's annotation
when the asset is defined, and a string there is refused."""

from scalellm_dagster.assets.shared import corpus, embeddings
from scalellm_dagster.assets.tasks import build_task_assets

__all__ = ["build_task_assets", "corpus", "embeddings"]
