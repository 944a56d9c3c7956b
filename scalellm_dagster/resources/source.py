"""Where the corpus comes from: a Parquet or CSV file, or a table in a DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from scalellm_dagster.core.corpus import CorpusError, normalise_corpus


class CorpusSource(ConfigurableResource):
    """`path` is `data.parquet`, `data.csv`, or `warehouse.duckdb::schema.table`."""

    path: str = Field(description="Parquet/CSV file, or 'file.duckdb::table'.")
    id_column: str = "id"
    text_column: str = "text"
    max_text_chars: int = Field(default=20_000, description="Longest text the corpus checks accept.")

    def load(self) -> pd.DataFrame:
        return normalise_corpus(self.read_raw(), self.id_column, self.text_column, source=self.path)

    def read_raw(self) -> pd.DataFrame:
        if "::" in self.path:
            db, table = self.path.split("::", 1)
            if not Path(db).is_file():
                raise CorpusError(f"corpus source {self.path}: DuckDB file {db} does not exist")
            with duckdb.connect(db, read_only=True) as conn:
                return conn.sql(f"SELECT * FROM {table}").df()
        path = Path(self.path)
        if not path.is_file():
            raise CorpusError(f"corpus source {path} does not exist (set SCALELLM_CORPUS to a Parquet or CSV file)")
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        raise CorpusError(f"corpus source {path}: expected a .parquet, .csv or .tsv file, or 'file.duckdb::table'")
