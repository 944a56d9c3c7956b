"""Where a task's predictions are written back for the users' own queries: a PostgreSQL schema, one table per task
(`<schema>.<task>_predictions`), when SCALELLM_PREDICTIONS_TO is set."""

from __future__ import annotations

from urllib.parse import urlparse

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from scalellm_dagster.resources import postgres

# The predictions table's columns under the names the written table uses (the export writes them, its check reads
# them back).
EXPORT_SELECT = "SELECT id, label, source, model AS student, confidence FROM {table}"


class PredictionsSink(ConfigurableResource):
    location: str = Field(
        default="",
        description="'postgresql://user@host:port/db::schema' (password from PGPASSWORD or ~/.pgpass); empty: off.",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.location)

    def parsed(self) -> postgres.Location:
        return postgres.Location.parse(self.location, "SCALELLM_PREDICTIONS_TO", queries=False)

    def table(self, task: str) -> str:
        return postgres.export_table(self.parsed().target, task)

    def table_name(self, task: str) -> str:
        """`database.schema.table`, as Dagster's `dagster/table_name` metadata names a table."""
        database = urlparse(self.parsed().url).path.lstrip("/")
        return f"{database}.{self.table(task)}"

    def display(self, task: str) -> str:
        return f"{postgres.redact(self.parsed().url)}::{self.table(task)}"

    def write(self, task: str, frame: pd.DataFrame, run_id: str, deleted: pd.Series | None = None) -> postgres.Written:
        """Every row (`deleted` None: a full sync), or only the changed rows and the ids to delete."""
        return postgres.write_predictions(self.parsed(), self.table(task), frame, run_id, deleted)

    def count(self, task: str) -> int | None:
        return postgres.count_rows(self.parsed(), self.table(task))

    def read(self, task: str) -> pd.DataFrame:
        return postgres.read_predictions(self.parsed(), self.table(task))


def check_sink_setting(value: str) -> str | None:
    """What is wrong with a SCALELLM_PREDICTIONS_TO value, or None: checked once at start-up."""
    if not value:
        return None
    try:
        location = postgres.Location.parse(value, "SCALELLM_PREDICTIONS_TO", queries=False)
    except postgres.PostgresError as exc:
        return str(exc)
    if "." in location.target:
        return (
            f"SCALELLM_PREDICTIONS_TO={postgres.redact(value)}: expected a schema after '::' (each task is written to "
            f"<schema>.<task>_predictions), not {location.target!r}"
        )
    return None
