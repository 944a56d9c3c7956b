"""Dagster assets: thin wiring of resources to the engine, with metadata for the UI. The shared foundation
(`corpus`, `embeddings`: `build_foundation`) and, per task, the branch `build_task_assets` makes.

Asset modules do not use `from __future__ import annotations`: Dagster reads the `context` parameter's annotation
when the asset is defined, and a string there is refused."""

from scalellm_dagster.assets.shared import build_foundation
from scalellm_dagster.assets.tasks import build_task_assets

__all__ = ["build_foundation", "build_task_assets"]
