"""Where the corpus comes from: a Parquet or CSV file, or a table in a DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
from dagster import ConfigurableResource
from pydantic import Field

from scalellm_dagster.core.corpus import CorpusError, normalise_corpus


CORPUS_FILE_SUFFIXES = (".parquet", ".csv", ".tsv")


class CorpusSource(ConfigurableResource):
    """`path` is `data.parquet`, `data.csv`, a folder of such files (read as one table), or `file.duckdb::table`."""

    path: str = Field(description="Parquet/CSV file, a folder of them, or 'file.duckdb::table'.")
    id_column: str = "id"
    text_column: str = "text"
    max_text_chars: int = Field(default=20_000, description="Longest text the corpus checks accept.")

    def file_stamps(self) -> dict[str, str]:
        """size:mtime of each file the corpus is read from (a folder's files, or the one file); {} for a table.
        The corpus records them, so the folder sensor knows what a materialization has already read."""
        path = Path(self.path)
        if "::" in self.path or not path.exists():
            return {}
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in CORPUS_FILE_SUFFIXES and p.is_file()) \
            if path.is_dir() else [path]
        return {p.name: f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files}

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
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in CORPUS_FILE_SUFFIXES and p.is_file())
            if not files:
                raise CorpusError(f"corpus folder {path} holds no .parquet, .csv or .tsv file")
            return pd.concat([_read_file(p) for p in files], ignore_index=True)
        if not path.is_file():
            raise CorpusError(f"corpus source {path} does not exist (set SCALELLM_CORPUS to a Parquet or CSV file)")
        return _read_file(path)


def _read_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except (pa.ArrowInvalid, pd.errors.ParserError, UnicodeDecodeError) as exc:
        kind = "Parquet" if suffix == ".parquet" else suffix[1:].upper()
        raise CorpusError(f"corpus source {path}: not a readable {kind} file ({str(exc).splitlines()[0][:120]}); "
                          f"check that SCALELLM_CORPUS points at the right file") from None
    raise CorpusError(f"corpus source {path}: expected a .parquet, .csv or .tsv file, a folder of them, "
                      "or 'file.duckdb::table'")
