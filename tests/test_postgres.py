"""PostgreSQL in and out against a real server the tests start on 127.0.0.1 (tests/postgres_server.py): the corpus
read from a table or a query with its keys as written, predictions written back and checked row for row, a write
killed midway, a refresh after the source changes, bad input, and the Dagster instance itself on PostgreSQL with the
daemon's sensor refreshing from a changed table."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from scalellm_dagster.core.corpus import CorpusError
from scalellm_dagster.resources import postgres
from scalellm_dagster.resources.from_settings import build_resources
from scalellm_dagster.resources.source import CorpusSource
from scalellm_dagster.settings import SettingError, Settings
from tests.conftest import demo_slice
from tests.pipeline_helpers import query, run_pipeline
from tests.postgres_server import LocalPostgres, free_port, wait_for_port_closed
from tests.test_daemon import _wait

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    server = LocalPostgres(tmp_path_factory.mktemp("postgres")).start()
    yield server
    server.stop()


def _load(url: str, table: str, frame: pd.DataFrame, id_type: str = "text") -> None:
    """`frame` (id, text, topic, is_card) into a new table, with the id column of `id_type`."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (id {id_type} PRIMARY KEY, text text NOT NULL, topic text, is_card text)")
    _append(url, table, frame)


def _append(url: str, table: str, frame: pd.DataFrame) -> None:
    """`frame`'s rows (id, text, topic, is_card) added to `table`, NaN as NULL."""
    with (
        psycopg.connect(url, autocommit=True) as conn,
        conn.cursor().copy(f"COPY {table} (id, text, topic, is_card) FROM STDIN") as copy,
    ):
        for row in frame[["id", "text", "topic", "is_card"]].itertuples(index=False):
            copy.write_row(tuple(None if pd.isna(v) else v for v in row))


def test_source_keeps_keys_as_written_from_a_table_or_a_query(pg):
    url = pg.new_database("keys")
    frame = demo_slice(50).assign(id=[f"{i:05d}" for i in range(50)])  # zero-padded text keys
    frame.loc[3, "topic"] = None  # a NULL stays null, an empty string stays empty
    frame.loc[4, "topic"] = ""
    _load(url, "padded", frame)
    uuids = [str(uuid.uuid4()) for _ in range(50)]
    _load(url, "uuids", frame.assign(id=uuids), id_type="uuid")
    _load(url, "ints", frame.assign(id=range(10**12, 10**12 + 50)), id_type="bigint")

    padded = CorpusSource(path=f"{url}::public.padded").load()
    assert padded["id"].tolist() == frame["id"].tolist()
    assert padded["text"].tolist() == frame["text"].tolist()
    assert pd.isna(padded.loc[3, "topic"]) and padded.loc[4, "topic"] == ""
    assert CorpusSource(path=f"{url}::uuids").load()["id"].tolist() == uuids  # canonical text, as PostgreSQL writes
    ints = CorpusSource(path=f"{url}::ints").load()["id"]
    assert pd.api.types.is_integer_dtype(ints) and ints.tolist() == list(range(10**12, 10**12 + 50))
    chosen = CorpusSource(path=f"{url}::SELECT id, text FROM padded WHERE id::int % 2 = 0").load()
    assert chosen["id"].tolist() == frame["id"].iloc[::2].tolist()
    assert postgres.fingerprint(postgres.Location.parse(f"{url}::padded", "X")).startswith("50:")


def test_bad_postgres_input_is_one_line_naming_the_cause(pg):
    url = pg.new_database("bad")
    _load(url, "rows", demo_slice(5).assign(id=[str(i) for i in range(5)]))
    pg.execute("DROP ROLE IF EXISTS reader; CREATE ROLE reader LOGIN PASSWORD 'r'", "bad")
    pg.execute("GRANT CONNECT ON DATABASE bad TO reader", "bad")
    reader = pg.url("bad", user="reader", password="r")

    def error(path: str, **options) -> str:
        with pytest.raises(CorpusError) as raised:
            CorpusSource(path=path, **options).load()
        message = str(raised.value)
        assert "\n" not in message and pg.url("bad").split("@")[0] not in message  # one line, no password
        return message

    assert 'relation "public.nope" does not exist' in error(f"{url}::public.nope")
    assert "column(s) ['body'] not found; columns present: ['id', 'text', 'topic', 'is_card']" in error(
        f"{url}::rows", text_column="body"
    )
    assert "permission denied for table rows" in error(f"{reader}::rows")
    assert "password authentication failed" in error(pg.url("bad", password="wrong") + "::rows")
    assert "::rows: cannot connect (connection" in error(f"postgresql://postgres@127.0.0.1:{free_port()}/bad::rows")
    assert "expected postgresql://user@host:port/database::schema.table" in error(url)
    assert "neither a table name" in error(f"{url}::rows; DROP TABLE rows")
    # writing where the user may not: one line from the sink too
    sink = postgres.Location.parse(f"{reader}::labels", "X", queries=False)
    frame = pd.DataFrame(
        {"id": ["a"], "label": ["x"], "source": ["student"], "student": ["ridge"], "confidence": [0.5]}
    )
    with pytest.raises(postgres.PostgresError, match="predictions sink .*: permission denied for database bad"):
        postgres.write_predictions(sink, "labels.t_predictions", frame, "run")
    # the sink is checked when the code location loads
    with pytest.raises(SettingError, match="expected a schema after '::'"):
        build_resources(Settings.from_env({"SCALELLM_PREDICTIONS_TO": f"{url}::labels.topic"}))


def _written(url: str, table: str) -> pd.DataFrame:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT id, label, source, student, confidence, run_id FROM {table} ORDER BY id")
        return pd.DataFrame(rows.fetchall(), columns=["id", "label", "source", "student", "confidence", "run_id"])


def _check_passed(result, name: str) -> bool:
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert evaluations, f"check {name} did not run"
    return all(e.passed for e in evaluations)


def test_pipeline_reads_postgres_writes_predictions_back_and_refreshes_incrementally(pg, pipeline_env, monkeypatch):
    url = pg.new_database("flow")
    rows = demo_slice(460).assign(id=[f"{i:05d}" for i in range(460)])
    _load(url, "messages", rows.iloc[:400])
    monkeypatch.setenv("SCALELLM_CORPUS", f"{url}::public.messages")
    monkeypatch.setenv("SCALELLM_PREDICTIONS_TO", f"{url}::labels")
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        first = run_pipeline(instance)
        assert first.success and _check_passed(first, "export_matches_warehouse")
        written = _written(url, "labels.topic_predictions")
        ours = pd.DataFrame(
            query(db, "SELECT id, label, source, model, confidence FROM topic.predictions ORDER BY id"),
            columns=["id", "label", "source", "student", "confidence"],
        )
        assert written["id"].tolist() == rows["id"].iloc[:400].tolist()  # keys as written, zeros kept
        pd.testing.assert_frame_equal(
            written.drop(columns="run_id"), ours.astype({"confidence": "float64"}), check_dtype=False, rtol=1e-6
        )
        assert set(written["run_id"]) == {first.run_id}
        corpus_meta = _materialization(instance, ["corpus"])
        assert corpus_meta["source"].value == pg.url("flow", password="***") + "::public.messages"  # password hidden

        # The source changes: 60 rows appended, 5 texts edited, 10 rows deleted.
        _append(url, "messages", rows.iloc[400:])
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "UPDATE messages SET text = text || ' (edited)' WHERE id IN ('00010','00011','00012','00013','00014')"
            )
            conn.execute("DELETE FROM messages WHERE id >= '00020' AND id < '00030'")
        second = run_pipeline(instance)
        assert second.success and _check_passed(second, "export_matches_warehouse")
        embedded = _materialization(instance, ["embeddings"])
        assert (embedded["rows_computed"].value, embedded["rows_reused"].value) == (65, 385)
        export = _materialization(instance, ["topic", "exported_predictions"])
        assert export["inserted"].value == 60 and export["deleted"].value == 10
        # only the new and edited rows travel: the deployed model kept every other row's prediction
        assert export["sync"].value == "changes only" and export["rows_sent"].value == 65
        assert export["dagster/table_name"].value == "flow.labels.topic_predictions"
        after = _written(url, "labels.topic_predictions")
        assert len(after) == 450 and after["id"].is_unique
        assert not set(after["id"]) & {f"{i:05d}" for i in range(20, 30)}
        assert (after["run_id"] == second.run_id).sum() == export["inserted"].value + export["updated"].value
        untouched = ~after["id"].isin({*rows["id"].iloc[400:], *(f"{i:05d}" for i in range(10, 15))})
        pd.testing.assert_frame_equal(
            after[untouched].reset_index(drop=True),
            written[written["id"].isin(after.loc[untouched, "id"])].reset_index(drop=True),
        )

        # Nothing changed since: the export rewrites nothing, and every row keeps the run that last changed it.
        third = run_pipeline(instance)
        assert third.success and _check_passed(third, "export_matches_warehouse")
        export = _materialization(instance, ["topic", "exported_predictions"])
        assert (export["inserted"].value, export["updated"].value, export["deleted"].value) == (0, 0, 0)
        assert export["rows_sent"].value == 0
        pd.testing.assert_frame_equal(_written(url, "labels.topic_predictions"), after)

        # A table emptied by hand behind our back: the row counts disagree, so the next export syncs everything.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM labels.topic_predictions")
        fourth = run_pipeline(instance)
        assert fourth.success and _check_passed(fourth, "export_matches_warehouse")
        export = _materialization(instance, ["topic", "exported_predictions"])
        assert export["sync"].value.startswith("full (the table holds 0 rows") and export["inserted"].value == 450


def test_a_least_privilege_role_reads_and_writes_back_end_to_end(pg, pipeline_env, monkeypatch):
    """What a DBA hands out: a login that owns its output schema and may read the source table, with no CREATE on
    the database (`CREATE SCHEMA IF NOT EXISTS` on an existing schema is refused for it)."""
    url = pg.new_database("leastpriv")
    _load(url, "messages", demo_slice(400).assign(id=[f"m{i:04d}" for i in range(400)]))
    pg.execute(
        "DROP ROLE IF EXISTS labeller; CREATE ROLE labeller LOGIN PASSWORD 'l'; "
        "GRANT CONNECT ON DATABASE leastpriv TO labeller; REVOKE CREATE ON DATABASE leastpriv FROM PUBLIC; "
        "GRANT SELECT ON messages TO labeller; CREATE SCHEMA labels AUTHORIZATION labeller",
        "leastpriv",
    )
    labeller = pg.url("leastpriv", user="labeller", password="l")
    with psycopg.connect(labeller) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE SCHEMA IF NOT EXISTS labels")  # what the sink used to run first
    monkeypatch.setenv("SCALELLM_CORPUS", f"{labeller}::public.messages")
    monkeypatch.setenv("SCALELLM_PREDICTIONS_TO", f"{labeller}::labels")
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
        assert result.success and _check_passed(result, "export_matches_warehouse")
    assert len(_written(url, "labels.topic_predictions")) == 400


def _assets_of(instance, run) -> set[str]:
    """What a run materialized: named in a failure message, so a run nobody expected says what it was."""
    return {
        e.dagster_event.asset_key.to_user_string()
        for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    }


def _materialization(instance, path: list[str]) -> dict:
    event = instance.get_latest_materialization_event(AssetKey(path))
    return event.asset_materialization.metadata


WRITER = """
import sys
import numpy as np, pandas as pd
from scalellm_dagster.resources import postgres
n = int(sys.argv[3])
frame = pd.DataFrame({"id": [f"r{i:07d}" for i in range(n)], "label": "b", "source": "student",
                      "student": "ridge", "confidence": np.float32(0.5)})
postgres.write_predictions(postgres.Location.parse(sys.argv[1], "X", queries=False), sys.argv[2], frame, "second")
"""


def test_a_write_killed_midway_leaves_the_previous_table_and_a_rerun_completes_it(pg):
    url = pg.new_database("killed")
    location = postgres.Location.parse(f"{url}::labels", "X", queries=False)
    table = "labels.t_predictions"
    before = pd.DataFrame(
        {"id": [f"r{i:07d}" for i in range(0, 2000, 2)], "label": "a", "source": "student", "student": "ridge"}
    ).assign(confidence=0.25)
    done = postgres.write_predictions(location, table, before, "first")
    assert (done.inserted, done.updated, done.deleted) == (1000, 0, 0)

    writer = subprocess.Popen([sys.executable, "-c", WRITER, f"{url}::labels", table, "1500000"], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill the writer while its COPY streams rows in
            copying = pg.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'killed' AND query LIKE 'COPY scalellm_stage%'"
            )[0][0]
            if copying:
                break
            assert writer.poll() is None, "the writer finished before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("the writer never started its COPY")
        time.sleep(0.3)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    # the server notices the lost connection and rolls back: the previous complete table, nothing else
    deadline = time.monotonic() + 30
    while pg.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'killed' AND application_name = 'scalellm'"
    )[0][0]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    kept = _written(url, table)
    assert len(kept) == 1000 and set(kept["label"]) == {"a"} and set(kept["run_id"]) == {"first"}

    rerun = pd.DataFrame(
        {"id": [f"r{i:07d}" for i in range(3000)], "label": "b", "source": "student", "student": "ridge"}
    ).assign(confidence=0.5)
    done = postgres.write_predictions(location, table, rerun, "rerun")
    assert (done.inserted, done.updated, done.deleted) == (2000, 1000, 0)
    after = _written(url, table)
    assert len(after) == 3000 and after["id"].is_unique and set(after["label"]) == {"b"}
    again = postgres.write_predictions(location, table, rerun, "third")  # nothing changed: nothing rewritten
    assert (again.inserted, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 3000)
    assert set(_written(url, table)["run_id"]) == {"rerun"}


def test_scalellm_run_killed_mid_export_leaves_the_previous_table_and_the_rerun_completes(
    pg, pipeline_env, monkeypatch, tmp_path
):
    """A real `scalellm run` SIGKILLed in the middle of its export: its rows are staged in PostgreSQL and its upsert
    waits on a lock the test holds. The readers' table stays the previous run's, whole; the rerun writes the rest,
    with no row doubled or lost."""
    url = pg.new_database("killrun")
    rows = demo_slice(460).assign(id=[f"{i:05d}" for i in range(460)])
    _load(url, "messages", rows.iloc[:400])
    monkeypatch.setenv("SCALELLM_CORPUS", f"{url}::messages")
    monkeypatch.setenv("SCALELLM_PREDICTIONS_TO", f"{url}::labels")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    table = "labels.topic_predictions"
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
    before = _written(url, table)
    _append(url, "messages", rows.iloc[400:])

    with psycopg.connect(url) as holder:
        # SHARE lets the run stage its rows (COPY into a temp table LIKE the target) but not upsert them
        holder.execute(f"LOCK TABLE {table} IN SHARE MODE")
        run = subprocess.Popen(
            [sys.executable, "-m", "scalellm_dagster.cli", "run"],
            env=dict(os.environ),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scalellm' AND wait_event_type = 'Lock'"
            )
            deadline = time.monotonic() + 300
            while not pg.execute(waiting, "killrun")[0][0]:
                assert run.poll() is None and time.monotonic() < deadline, "the run never reached its export"
                time.sleep(0.1)
            staged = pg.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scalellm' "
                "AND query LIKE 'WITH up AS%'",
                "killrun",
            )[0][0]
            assert staged == 1  # the staging COPY is done: the upsert is what waits
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(60)
        holder.rollback()
    deadline = time.monotonic() + 30
    while pg.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scalellm'", "killrun")[0][0]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    pd.testing.assert_frame_equal(_written(url, table), before)  # the previous complete table, nothing else

    with DagsterInstance.ephemeral() as instance:
        again = run_pipeline(instance)
        assert again.success and _check_passed(again, "export_matches_warehouse")
    after = _written(url, table)
    assert len(after) == 460 and after["id"].is_unique and set(after["id"]) == set(rows["id"])


def test_export_keeps_integer_keys_and_the_types_of_a_table_made_beforehand(pg):
    url = pg.new_database("types")
    location = postgres.Location.parse(f"{url}::out", "X", queries=False)
    ints = pd.DataFrame({"id": [10**12, 7], "label": "a", "source": "student", "student": "ridge", "confidence": 0.5})
    postgres.write_predictions(location, "out.ints_predictions", ints, "r1")
    assert pg.execute("SELECT pg_typeof(id)::text, id FROM out.ints_predictions ORDER BY id", "types") == [
        ("bigint", 7),
        ("bigint", 10**12),
    ]
    keys = [str(uuid.uuid4()) for _ in range(3)]
    pg.execute(
        "CREATE TABLE out.uuids_predictions (id uuid PRIMARY KEY, label text NOT NULL, source text NOT NULL, "
        "student text, confidence real, run_id text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())",
        "types",
    )
    frame = pd.DataFrame({"id": keys, "label": "a", "source": "student", "student": "ridge", "confidence": 0.5})
    done = postgres.write_predictions(location, "out.uuids_predictions", frame, "r1")
    assert done.inserted == 3
    assert sorted(str(k) for (k,) in pg.execute("SELECT id FROM out.uuids_predictions", "types")) == sorted(keys)
    assert sorted(postgres.read_predictions(location, "out.uuids_predictions")["id"]) == sorted(keys)


def test_daemon_on_a_postgres_instance_refreshes_from_a_changed_source_table(pg, pipeline_env, tmp_path, monkeypatch):
    """deploy/postgres/dagster.yaml as documented: runs, event log and sensor state in PostgreSQL; the daemon's
    corpus_source_sensor reports rows added to the source table, and the run the automation conditions launch
    embeds, predicts and exports only those."""
    url = pg.new_database("source")
    pg.new_database("dagster")
    rows = demo_slice(460).assign(id=[f"{i:05d}" for i in range(460)])
    _load(url, "messages", rows.iloc[:400])
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        textwrap.dedent(f"""\
        load_from:
          - python_module:
              module_name: scalellm_dagster.definitions
              working_directory: {REPO}
        """)
    )
    env = {
        "SCALELLM_CORPUS": f"{url}::messages",
        "SCALELLM_PREDICTIONS_TO": f"{url}::labels",
        "SCALELLM_SENSOR_INTERVAL_SECONDS": "2",
        "SCALELLM_AUTOMATION": "on",
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": "scalellm-test",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    env = {**os.environ, **env}
    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert run_pipeline(instance).success
        runs_before = len(instance.get_run_records(RunsFilter()))
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=out,
            start_new_session=True,  # its code server too is ended with it, below
        )
    try:
        with DagsterInstance.get() as instance:
            _wait("the source sensor's first tick", lambda: ": unchanged (" in log.read_text(), 90, log)
            assert len(instance.get_run_records(RunsFilter())) == runs_before  # already materialized: no run
            before = {r.dagster_run.run_id for r in instance.get_run_records(RunsFilter())}
            _append(url, "messages", rows.iloc[400:])

            def refreshed():
                """The finished run, launched after the append, whose embeddings materialization is the latest."""
                event = instance.get_latest_materialization_event(AssetKey(["embeddings"]))
                run = instance.get_run_by_id(event.run_id)
                done = run.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
                return run if done and event.run_id not in before else None

            run = _wait("the refresh run to finish", refreshed, 180, log)
            new_runs = [
                (r.dagster_run.run_id[:8], r.dagster_run.status.value, sorted(_assets_of(instance, r.dagster_run)))
                for r in instance.get_run_records(RunsFilter())
                if r.dagster_run.run_id not in before
            ]
            assert run.status == DagsterRunStatus.SUCCESS, new_runs
            embedded = _materialization(instance, ["embeddings"])
            assert (embedded["rows_computed"].value, embedded["rows_reused"].value) == (60, 400), new_runs
            export = _materialization(instance, ["topic", "exported_predictions"])
            assert export["inserted"].value == 60 and export["rows_sent"].value == 60, new_runs
        assert len(_written(url, "labels.topic_predictions")) == 460
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGKILL)  # a code server still holding its PostgreSQL connections


def test_server_down_after_start_is_named(pg, tmp_path):
    """A server that stops answering: the source names the server, not a stack trace."""
    other = LocalPostgres(tmp_path / "brief").start()
    url = other.new_database("gone")
    _load(url, "rows", demo_slice(5).assign(id=[str(i) for i in range(5)]))
    other.stop()
    wait_for_port_closed(other.port)
    with pytest.raises(CorpusError, match=r"::rows: cannot connect \(connection .*refused"):
        CorpusSource(path=f"{url}::rows").load()
