"""PostgreSQL in and out: a table or a query as the corpus, and a task's predictions written back as a table.

Both ways go through COPY (psycopg 3), the fastest path a client has: rows stream as CSV into Arrow's reader, and
out of Arrow's writer into a staging table. DuckDB's `postgres` extension would be the other choice, but it is
downloaded at run time (nothing here may need the internet) and no wheel of it exists for DuckDB 2.0;
BENCHMARKS.md ("PostgreSQL in and out") has the two measured side by side with DuckDB 1.5.

A location is `postgresql://user@host:port/database::schema.table` (or `::SELECT ...` for the corpus). Keep the
password out of it: psycopg reads PGPASSWORD and ~/.pgpass, as psql does; a password written in the URL is shown
as `***` in every message, log line and metadata entry this module makes.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

SCHEMES = ("postgresql://", "postgres://")
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_RELATION = re.compile(rf"^{_IDENT}(?:\.{_IDENT})?$")
_QUERY = re.compile(r"^\s*(select|with|table|values)\b", re.IGNORECASE)
CONNECT_TIMEOUT_S = 10

# Arrow types of the PostgreSQL types a corpus column may have (by type OID); every other type is read as its
# text form, exactly as PostgreSQL writes it (a uuid as its canonical text, a char(n) with its padding).
_INTEGER_OIDS = {20, 21, 23}  # int8, int2, int4
_FLOAT_OIDS = {700, 701, 1700}  # float4, float8, numeric
_BOOL_OID = 16


class PostgresError(ValueError):
    """A PostgreSQL location that cannot be used; the message names the location (password hidden) and the cause."""


def is_postgres(location: str) -> bool:
    return location.strip().lower().startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Location:
    """`url` (a libpq connection URL) and what to read or write there: a relation, or a query (corpus only)."""

    url: str
    target: str

    @classmethod
    def parse(cls, value: str, what: str, queries: bool = True) -> Location:
        scheme, _, rest = value.strip().partition("://")
        slash = rest.find("/")
        cut = rest.find("::", slash) if slash >= 0 else -1
        expected = "postgresql://user@host:port/database::schema.table" + (" or ::SELECT ..." if queries else "")
        if cut < 0 or not rest[slash + 1 : cut]:
            raise PostgresError(f"{what}={redact(value)}: expected {expected}")
        location = cls(f"{scheme}://{rest[:cut]}", rest[cut + 2 :].strip())
        if location.is_query and not queries:
            raise PostgresError(f"{what}={redact(value)}: expected a schema (or schema.table), not a query")
        if not location.is_query and not _RELATION.match(location.target):
            raise PostgresError(
                f"{what}={redact(value)}: {location.target!r} is neither a table name (schema.table) nor a query "
                "(SELECT ...)"
            )
        return location

    @property
    def is_query(self) -> bool:
        return bool(_QUERY.match(self.target))

    @property
    def rows_sql(self) -> str:
        return f"({self.target})" if self.is_query else self.target

    def __str__(self) -> str:
        return f"{redact(self.url)}::{self.target}"


def connect(location: Location, autocommit: bool = False):
    """A psycopg connection, or a PostgresError naming the server and why it refused (one line)."""
    try:
        import psycopg
    except ImportError:
        raise PostgresError(
            f"{location}: reading or writing PostgreSQL needs psycopg; install the postgres extra: "
            "pip install -e '.[postgres]'"
        ) from None
    try:
        return psycopg.connect(
            location.url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, application_name="scalellm"
        )
    except psycopg.Error as exc:
        raise PostgresError(f"{location}: cannot connect ({first_line(exc)})") from None


def first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:240]


def _described(cursor, location: Location, what: str):
    """The columns (name, type OID) of the relation or query, from a plan that reads no row."""
    import psycopg

    try:
        cursor.execute(f"SELECT * FROM {location.rows_sql} AS scalellm_rows LIMIT 0")
    except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege) as exc:
        # the server's own line names the relation or the privilege
        raise PostgresError(f"{what} {location}: {first_line(exc)}") from None
    except psycopg.Error as exc:
        raise PostgresError(f"{what} {location}: cannot read it ({first_line(exc)})") from None
    return [(c.name, c.type_code) for c in cursor.description]


def read_rows(location: Location, what: str = "corpus source") -> pa.Table:
    """Every row of the relation or query, typed (see `_INTEGER_OIDS`...), streamed with COPY ... TO STDOUT."""
    import psycopg

    with connect(location) as conn, conn.cursor() as cursor:
        columns = _described(cursor, location, what)
        buffer = io.BytesIO()
        try:
            with cursor.copy(
                f"COPY (SELECT * FROM {location.rows_sql} AS scalellm_rows) TO STDOUT (FORMAT csv)"
            ) as copy:
                for chunk in copy:
                    buffer.write(chunk)
        except psycopg.Error as exc:
            raise PostgresError(f"{what} {location}: reading stopped ({first_line(exc)})") from None
    return _from_csv(buffer.getvalue(), columns)


def _from_csv(data: bytes, columns: list[tuple[str, int]]) -> pa.Table:
    types = {}
    for name, oid in columns:
        if oid in _INTEGER_OIDS:
            types[name] = pa.int64()
        elif oid in _FLOAT_OIDS:
            types[name] = pa.float64()
        elif oid == _BOOL_OID:
            types[name] = pa.bool_()
        else:
            types[name] = pa.string()
    names = [name for name, _ in columns]
    if not data:
        return pa.table({name: pa.array([], types[name]) for name in names})
    # PostgreSQL's CSV writes NULL unquoted and empty and an empty string quoted: the reader keeps them apart.
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )


def fingerprint(location: Location) -> str:
    """`rows:hash` of the relation or query: changes when a row is added, removed or edited. One scan on the
    server (about a second for a million rows); what the corpus sensor compares between ticks."""
    with connect(location, autocommit=True) as conn, conn.cursor() as cursor:
        _described(cursor, location, "corpus source")
        cursor.execute(
            "SELECT count(*), coalesce(sum(hashtextextended(r::text, 0)), 0) "
            f"FROM (SELECT * FROM {location.rows_sql} AS scalellm_rows) AS r"
        )
        rows, digest = cursor.fetchone()
    return f"{rows}:{digest}"


# What a written predictions table holds, in this order (`run_id`: the run that last changed the row).
EXPORT_COLUMNS = ("id", "label", "source", "student", "confidence", "run_id")


@dataclass(frozen=True)
class Written:
    table: str
    rows: int  # in the table after the write
    inserted: int
    updated: int
    deleted: int
    seconds: float
    sent: int  # rows sent to the server to upsert

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


def export_table(schema: str, task: str) -> str:
    return f"{schema}.{task}_predictions"


def write_predictions(
    location: Location, table: str, frame: pd.DataFrame, run_id: str, deleted: pd.Series | None = None
) -> Written:
    """Upsert `frame` (EXPORT_COLUMNS but run_id) into `table` by id in one transaction: readers see the previous
    complete table until it commits, and an interrupted write (a killed process, a lost connection) leaves that table
    as it was. Rows whose values did not change keep their run id.

    `deleted` None: `frame` is every row, and rows it no longer has are deleted (a full sync). Otherwise `frame` holds
    only the rows that changed since the last write and `deleted` the ids to remove: only those rows travel.

    The schema and the table are created only when missing, so a role that owns its schema (or holds only its
    tables' privileges) and has no CREATE on the database writes as well."""
    import psycopg

    start = time.perf_counter()
    with connect(location) as conn, conn.cursor() as cursor:
        try:
            _create_missing(cursor, table, "bigint" if pd.api.types.is_integer_dtype(frame["id"]) else "text")
            # The staging tables take the target's own column types: a table made beforehand with, say, uuid ids
            # is written as it is.
            cursor.execute(f"CREATE TEMP TABLE scalellm_stage (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
            _copy(cursor, "scalellm_stage", EXPORT_COLUMNS, frame.assign(run_id=run_id)[list(EXPORT_COLUMNS)])
            inserted, updated = _upsert(cursor, table)
            if deleted is None:
                cursor.execute(
                    f"DELETE FROM {table} AS t WHERE NOT EXISTS (SELECT 1 FROM scalellm_stage AS s WHERE s.id = t.id)"
                )
            else:
                cursor.execute(f"CREATE TEMP TABLE scalellm_gone ON COMMIT DROP AS SELECT id FROM {table} LIMIT 0")
                _copy(cursor, "scalellm_gone", ("id",), pd.DataFrame({"id": deleted}))
                cursor.execute(f"DELETE FROM {table} AS t USING scalellm_gone AS g WHERE g.id = t.id")
            removed = cursor.rowcount
            cursor.execute(f"SELECT count(*) FROM {table}")
            rows = cursor.fetchone()[0]
            conn.commit()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PostgresError(f"predictions sink {location}: {first_line(exc)}") from None
        except psycopg.Error as exc:
            raise PostgresError(f"predictions sink {location}: writing {table} failed ({first_line(exc)})") from None
    return Written(table, int(rows), inserted, updated, removed, time.perf_counter() - start, len(frame))


def _create_missing(cursor, table: str, id_type: str) -> None:
    """CREATE only what is missing: `CREATE ... IF NOT EXISTS` asks for the privilege even when the object exists."""
    schema = table.split(".", 1)[0] if "." in table else None
    if schema:
        cursor.execute("SELECT to_regnamespace(%s) IS NULL", [schema])
        if cursor.fetchone()[0]:
            cursor.execute(f"CREATE SCHEMA {schema}")
    cursor.execute("SELECT to_regclass(%s) IS NULL", [table])
    if cursor.fetchone()[0]:
        cursor.execute(
            f"CREATE TABLE {table} (id {id_type} PRIMARY KEY, label text NOT NULL, source text NOT NULL, student "
            "text, confidence real, run_id text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())"
        )


def _copy(cursor, target: str, columns: tuple[str, ...], frame: pd.DataFrame) -> None:
    data = pa.Table.from_pandas(frame[list(columns)], preserve_index=False)
    with cursor.copy(f"COPY {target} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        for batch in data.to_batches(max_chunksize=100_000):
            sink = io.BytesIO()
            pacsv.write_csv(batch, sink, write_options=pacsv.WriteOptions(include_header=False))
            copy.write(sink.getvalue())


def _upsert(cursor, table: str) -> tuple[int, int]:
    """(inserted, updated) from the staged rows; a row equal to its stored one is left alone."""
    changed = ", ".join(f"{c} = excluded.{c}" for c in EXPORT_COLUMNS[1:])
    values = ", ".join(f"t.{c}" for c in EXPORT_COLUMNS[1:5])
    new = ", ".join(f"excluded.{c}" for c in EXPORT_COLUMNS[1:5])
    cursor.execute(
        f"WITH up AS (INSERT INTO {table} AS t ({', '.join(EXPORT_COLUMNS)}) "
        f"SELECT {', '.join(EXPORT_COLUMNS)} FROM scalellm_stage "
        f"ON CONFLICT (id) DO UPDATE SET {changed}, written_at = now() "
        f"WHERE ({values}) IS DISTINCT FROM ({new}) RETURNING (xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
    )
    return cursor.fetchone()


def count_rows(location: Location, table: str) -> int | None:
    """The table's rows, or None when it does not exist."""
    with connect(location, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NULL", [table])
        if cursor.fetchone()[0]:
            return None
        cursor.execute(f"SELECT count(*) FROM {table}")
        return int(cursor.fetchone()[0])


def read_predictions(location: Location, table: str) -> pd.DataFrame:
    """The written table as the warehouse has it (ids as text, to compare either key type), for the check."""
    relation = Location(location.url, f"SELECT id::text AS id, label, source, student, confidence FROM {table}")
    return read_rows(relation, "predictions sink").to_pandas()
