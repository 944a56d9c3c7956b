"""Where things are, read from environment variables once, with defaults that need nothing installed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_CORPUS = PACKAGE_DIR / "demo" / "banking77.parquet"
DEMO_TASKS = PACKAGE_DIR / "demo" / "tasks.yaml"


def default_data_dir() -> Path:
    # In a checkout the warehouse lives in the repo's ignored data/ folder; installed elsewhere, under the cwd.
    repo = PACKAGE_DIR.parent
    return (repo if (repo / "pyproject.toml").is_file() else Path.cwd()) / "data"


@dataclass(frozen=True)
class Settings:
    corpus: str
    tasks: str
    duckdb_path: str
    id_column: str
    text_column: str
    embedder: str
    teacher: str

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get
        if env("SCALELLM_SHARDS") not in (None, "", "0"):
            raise SettingError("SCALELLM_SHARDS is gone: the row-parallel steps run on a Dask cluster instead. Set "
                               "SCALELLM_DASK=local:N (N worker processes here) or SCALELLM_DASK_SCHEDULER="
                               "tcp://host:8786 (README: More than one machine), and unset SCALELLM_SHARDS")
        return cls(
            corpus=env("SCALELLM_CORPUS") or str(DEMO_CORPUS),
            tasks=env("SCALELLM_TASKS") or str(DEMO_TASKS),
            duckdb_path=env("SCALELLM_DUCKDB_PATH") or str(default_data_dir() / "scalellm.duckdb"),
            id_column=env("SCALELLM_ID_COLUMN") or "id",
            text_column=env("SCALELLM_TEXT_COLUMN") or "text",
            embedder=(env("SCALELLM_EMBEDDER") or "static").lower(),
            teacher=(env("SCALELLM_TEACHER") or "simulated").lower(),
        )


class SettingError(ValueError):
    """A configuration value (an environment variable) that cannot be used; the message says which and why."""


# Every run of this project writes the one DuckDB warehouse, and a run that rewrote `corpus` between another run's
# `predictions` and its check would fail that check: the local instance (`make ui`, the daemon) runs one at a time
# and queues the rest, which then find most of their work done.
RUN_QUEUE = """run_queue:
  max_concurrent_runs: 1
"""


def ensure_dagster_home(path: Path) -> Path:
    """A persistent Dagster instance folder; offline by design, so telemetry and the sign-up prompt are off; one
    run at a time (RUN_QUEUE), also in an instance folder made before that setting existed."""
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n" + RUN_QUEUE)
    elif "run_queue:" not in config.read_text():
        config.write_text(config.read_text().rstrip("\n") + "\n" + RUN_QUEUE)
    return path
