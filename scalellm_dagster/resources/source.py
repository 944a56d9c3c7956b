"""Where the corpus comes from: a Parquet, CSV or TSV file, a folder of them, a table in a DuckDB file, or a
PostgreSQL table or query (`postgresql://user@host/db::schema.table`, resources/postgres.py).

Keys are kept exactly as the source has them. A CSV/TSV has no types, so its id and text columns are read as
text, verbatim (`00042` stays `00042`, a key or text `NA` stays `NA`), unless `csv_id_type` says `infer`. In a
folder, CSV ids take the type the folder's typed (Parquet) files agree on, so one table comes out.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from dagster import ConfigurableResource
from pydantic import Field

from scalellm_dagster.core.corpus import CorpusError, normalise_corpus
from scalellm_dagster.resources import postgres
from scalellm_dagster.settings import CSV_ID_TYPES

CORPUS_FILE_SUFFIXES = (".parquet", ".csv", ".tsv")


class CorpusSource(ConfigurableResource):
    """`path` is `data.parquet`, `data.csv`, a folder of such files (read as one table), `file.duckdb::table`, or
    `postgresql://user@host:port/db::schema.table` (or `::SELECT ...`)."""

    path: str = Field(
        description="Parquet/CSV file, a folder of them, 'file.duckdb::table' or "
        "'postgresql://user@host:port/db::schema.table' (password from PGPASSWORD or ~/.pgpass)."
    )
    id_column: str = "id"
    text_column: str = "text"
    max_text_chars: int = Field(default=20_000, description="Longest text the corpus checks accept.")
    csv_id_type: str = Field(
        default="text",
        description="How a CSV/TSV id column is read: 'text' (verbatim, the "
        "default: zero-padded keys keep their zeros) or 'infer' (integers when they all parse).",
    )

    def file_stamps(self) -> dict[str, str]:
        """size:mtime of each file the corpus is read from (a folder's files, or the one file); {} for a table.
        The corpus records them, so the folder sensor knows what a materialization has already read."""
        path = Path(self.path)
        if "::" in self.path or not path.exists():
            return {}
        return {p.name: f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in corpus_files(path)}

    @property
    def is_postgres(self) -> bool:
        return postgres.is_postgres(self.path)

    @property
    def display(self) -> str:
        """The source as messages and metadata show it: a PostgreSQL password as ***."""
        return str(self._postgres()) if self.is_postgres else self.path

    def fingerprint(self) -> str:
        """What changes whenever the corpus would read other rows: the files' names, sizes and mtimes, a DuckDB
        file's size and mtime, or a PostgreSQL source's row count and hash of every row."""
        if self.is_postgres:
            return self.table_fingerprint()
        if "::" in self.path:
            database = Path(self.path.split("::", 1)[0])
            stat = database.stat()
            return f"{self.path}|{stat.st_size}:{stat.st_mtime_ns}"
        return json.dumps(self.file_stamps(), sort_keys=True)

    def table_fingerprint(self) -> str | None:
        """`rows:hash` of a PostgreSQL source (what the corpus sensor compares), None for files."""
        if not self.is_postgres:
            return None
        try:
            return postgres.fingerprint(self._postgres())
        except postgres.PostgresError as exc:
            raise CorpusError(str(exc)) from None

    def load(self) -> pd.DataFrame:
        return normalise_corpus(self.read_raw(), self.id_column, self.text_column, source=self.display)

    def _postgres(self) -> postgres.Location:
        try:
            return postgres.Location.parse(self.path, "SCALELLM_CORPUS")
        except postgres.PostgresError as exc:
            raise CorpusError(str(exc)) from None

    def read_raw(self) -> pd.DataFrame:
        if self.csv_id_type not in CSV_ID_TYPES:
            raise CorpusError(f"SCALELLM_CSV_ID_TYPE={self.csv_id_type!r}: expected one of {list(CSV_ID_TYPES)}")
        if self.is_postgres:
            try:
                return _with_text_ids(postgres.read_rows(self._postgres()), self.id_column).to_pandas()
            except postgres.PostgresError as exc:
                raise CorpusError(str(exc)) from None
        if "::" in self.path:
            return self._read_duckdb()
        path = Path(self.path)
        if path.is_dir():
            files = corpus_files(path)
            if not files:
                raise CorpusError(f"corpus folder {path} holds no .parquet, .csv or .tsv file")
            return self._read_folder(files)
        if not path.is_file():
            raise CorpusError(f"corpus source {path} does not exist (set SCALELLM_CORPUS to a Parquet or CSV file)")
        return _with_text_ids(self._read_file(path), self.id_column).to_pandas()

    def _read_duckdb(self) -> pd.DataFrame:
        db, table = self.path.split("::", 1)
        if not Path(db).is_file():
            raise CorpusError(f"corpus source {self.path}: DuckDB file {db} does not exist")
        with duckdb.connect(db, read_only=True) as conn:
            try:
                data = conn.sql(f"SELECT * FROM {table}").to_arrow_table()
            except duckdb.Error as exc:
                raise CorpusError(
                    f"corpus source {self.path}: cannot read table {table!r} ({str(exc).splitlines()[0][:160]})"
                ) from None
        return _with_text_ids(data, self.id_column).to_pandas()

    def _read_file(self, path: Path, id_type: pa.DataType | None = None) -> pa.Table:
        suffix = path.suffix.lower()
        try:
            if suffix == ".parquet":
                return pq.read_table(path)
            if suffix in (".csv", ".tsv"):
                return _read_csv(path, self.id_column, self.text_column, id_type, self.csv_id_type)
        except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as exc:
            kind = "Parquet" if suffix == ".parquet" else suffix[1:].upper()
            raise CorpusError(
                f"corpus source {path}: not a readable {kind} file "
                f"({str(exc).splitlines()[0][:160]}); check that SCALELLM_CORPUS points at the right "
                "file"
            ) from None
        raise CorpusError(
            f"corpus source {path}: expected a .parquet, .csv or .tsv file, a folder of them, or 'file.duckdb::table'"
        )

    def _read_folder(self, files: list[Path]) -> pd.DataFrame:
        """One table from every file; CSV ids take the Parquet files' id type; files whose id types still
        disagree are named with their types."""
        typed = {p: self._read_file(p) for p in files if p.suffix.lower() == ".parquet"}
        id_types = {p: _id_field_type(t, self.id_column) for p, t in typed.items()}
        agreed = {str(t): t for t in id_types.values() if t is not None}
        id_type = next(iter(agreed.values())) if len(agreed) == 1 else None
        tables = {p: typed[p] if p in typed else self._read_file(p, id_type) for p in files}
        tables = {p: _with_text_ids(t, self.id_column) for p, t in tables.items()}
        kinds = {p: _id_kind(t, self.id_column) for p, t in tables.items()}
        if len({k for k in kinds.values() if k is not None}) > 1:
            listing = ", ".join(f"{p.name}: {k}" for p, k in kinds.items())
            raise CorpusError(
                f"corpus folder {files[0].parent}: its files disagree on the type of column "
                f"{self.id_column!r} ({listing}); expected one id type across the folder: write the "
                "ids with the same type in every file"
            )
        try:
            return pa.concat_tables(tables.values(), promote_options="permissive").to_pandas()
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise CorpusError(
                f"corpus folder {files[0].parent}: its files cannot be read as one table "
                f"({str(exc).splitlines()[0][:200]}); expected the same columns with the same types "
                "in every file"
            ) from None


def corpus_files(folder_or_file: Path) -> list[Path]:
    if not folder_or_file.is_dir():
        return [folder_or_file]
    return sorted(p for p in folder_or_file.iterdir() if p.suffix.lower() in CORPUS_FILE_SUFFIXES and p.is_file())


def _read_csv(path: Path, id_column: str, text_column: str, id_type: pa.DataType | None, csv_id_type: str) -> pa.Table:
    """The text column verbatim (strings are never read as nulls); the id column as text, as `id_type`, or
    inferred."""
    columns = {text_column: pa.string()}
    if id_type is None and csv_id_type == "text":
        id_type = pa.string()
    if id_type is not None:
        columns[id_column] = pa.string()  # cast afterwards, so a bad value is named
    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(
            delimiter="\t" if path.suffix.lower() == ".tsv" else ",", newlines_in_values=True
        ),
        convert_options=pacsv.ConvertOptions(column_types=columns),
    )
    if id_type is None or pa.types.is_string(id_type) or id_column not in table.column_names:
        return table
    ids = table[id_column]
    try:
        cast = ids.cast(id_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = [v for v in ids.to_pylist() if not _castable(v, id_type)][:5]
        raise CorpusError(
            f"corpus source {path}: column {id_column!r} holds {bad} where the folder's other files "
            f"have ids of type {id_type}; expected one id type across the folder"
        ) from None
    return table.set_column(table.column_names.index(id_column), id_column, cast)


def _castable(value, id_type: pa.DataType) -> bool:
    try:
        pa.array([value]).cast(id_type)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _id_field_type(table: pa.Table, id_column: str) -> pa.DataType | None:
    return table.schema.field(id_column).type if id_column in table.column_names else None


def _id_kind(table: pa.Table, id_column: str) -> str | None:
    """'integer', 'text' or the Arrow type: what must agree across a folder's files."""
    found = _id_field_type(table, id_column)
    if found is None or pa.types.is_null(found):
        return None
    if pa.types.is_integer(found):
        return "integer"
    return "text" if pa.types.is_string(found) or pa.types.is_large_string(found) else str(found)


def _with_text_ids(table: pa.Table, id_column: str) -> pa.Table:
    """UUID and other typed-text keys as their canonical text: the warehouse keys on text or integers."""
    if id_column not in table.column_names:
        return table
    found = table.schema.field(id_column).type
    if isinstance(found, pa.ExtensionType) or pa.types.is_fixed_size_binary(found):
        values = [
            None if v is None else str(uuid.UUID(bytes=v)) if isinstance(v, bytes) and len(v) == 16 else str(v)
            for v in table[id_column].to_pylist()
        ]
        return table.set_column(table.column_names.index(id_column), id_column, pa.array(values, pa.string()))
    return table
