"""Real tables and real label sets: keys of every common type from every source, labels with any character, texts
no embedder can read. Every run succeeds, its predictions join back to the source on the source's own key with no
cast and none unmatched, and every exact answer is valid."""

from __future__ import annotations

import textwrap
import unicodedata
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance

from scalellm_dagster.core.corpus import CorpusError
from scalellm_dagster.resources.source import CorpusSource
from tests.conftest import demo_slice
from tests.fake_openai import FakeOpenAI
from tests.pipeline_helpers import query, run_pipeline

ROWS = 240
INT64_MAX = np.iinfo(np.int64).max


def keys(kind: str, n: int = ROWS) -> list:
    """Ids as real tables have them."""
    return {
        "int": [7 * i + 3 for i in range(n)],
        "string": [f"doc-{i}" for i in range(n)],
        "uuid": [str(uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15)) for i in range(n)],
        "zero_padded": [f"{i:06d}" for i in range(n)],
        "int64_limits": [INT64_MAX - i if i % 2 else -INT64_MAX - 1 + i for i in range(n)],
        "spaces_non_ascii": [f"clé {i} – 東京 ✓" if i % 3 else f" padded {i} " for i in range(n)],
    }[kind]


def write_source(folder: Path, df: pd.DataFrame, source: str) -> str:
    """`df` as the given source kind; returns what SCALELLM_CORPUS would be."""
    folder.mkdir(parents=True, exist_ok=True)
    if source == "parquet":
        df.to_parquet(folder / "c.parquet", index=False)
        return str(folder / "c.parquet")
    if source in ("csv", "tsv"):
        path = folder / f"c.{source}"
        df.to_csv(path, index=False, sep="," if source == "csv" else "\t")
        return str(path)
    if source == "duckdb":
        with duckdb.connect(str(folder / "src.duckdb")) as conn:
            conn.register("incoming", df)
            conn.execute('CREATE SCHEMA "My Schema"')
            conn.execute('CREATE TABLE "My Schema".docs AS SELECT * FROM incoming')
        return f'{folder / "src.duckdb"}::"My Schema".docs'
    if source == "folder":  # a typed file and text files: the CSV ids take the Parquet ids' type
        third = len(df) // 3
        df.iloc[:third].to_parquet(folder / "a.parquet", index=False)
        df.iloc[third : 2 * third].to_csv(folder / "b.csv", index=False)
        df.iloc[2 * third :].to_csv(folder / "c.tsv", index=False, sep="\t")
        return str(folder)
    raise ValueError(source)


def source_keys_sql(corpus: str, source: str) -> str:
    """The source as a user would read it back with DuckDB to join the predictions on its key: files typed as
    they are (a CSV's keys as written)."""
    if source == "duckdb":
        db, table = corpus.split("::")
        return f"(SELECT id FROM src.{table})", db
    if source == "parquet":
        return f"(SELECT id FROM read_parquet('{corpus}'))", None
    if source in ("csv", "tsv"):
        return f"(SELECT id FROM read_csv('{corpus}', all_varchar = true))", None
    return (
        f"(SELECT id FROM read_parquet('{corpus}/*.parquet') UNION ALL SELECT id FROM read_csv('{corpus}/b.csv') "
        f"UNION ALL SELECT id FROM read_csv('{corpus}/c.tsv', delim = '\t'))"
    ), None


# The whole matrix through the source reader: fast, and the keys come out exactly as they went in.
@pytest.mark.parametrize("source", ["parquet", "csv", "tsv", "duckdb", "folder"])
@pytest.mark.parametrize("kind", ["int", "string", "uuid", "zero_padded", "int64_limits", "spaces_non_ascii"])
def test_every_source_keeps_every_key_type_exactly(tmp_path, kind, source):
    df = pd.DataFrame({"id": keys(kind, 30), "text": [f"row {i} NA" for i in range(30)], "n": range(30)})
    loaded = CorpusSource(path=write_source(tmp_path / "src", df, source)).load()
    integer_source = kind in ("int", "int64_limits") and source in ("parquet", "duckdb", "folder")
    expected = (
        df["id"].tolist() if integer_source or kind not in ("int", "int64_limits") else [str(k) for k in df["id"]]
    )  # a lone CSV's keys are its text
    assert sorted(loaded["id"].tolist(), key=str) == sorted(expected, key=str)
    assert loaded["text"].tolist() == df["text"].tolist()  # "NA" is text, not a null


def test_csv_ids_can_be_inferred_when_the_user_says_so(tmp_path):
    df = pd.DataFrame({"id": ["001", "002"], "text": ["a", "b"]})
    loaded = CorpusSource(path=write_source(tmp_path, df, "csv"), csv_id_type="infer").load()
    assert loaded["id"].tolist() == [1, 2]


def test_a_folder_whose_files_disagree_on_the_id_type_names_them(tmp_path):
    pd.DataFrame({"id": [1, 2], "text": ["a", "b"]}).to_parquet(tmp_path / "a.parquet", index=False)
    pd.DataFrame({"id": ["x", "y"], "text": ["c", "d"]}).to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(
        CorpusError,
        match=r"files disagree on the type of column 'id' \(a.parquet: integer, "
        r"b.parquet: text\)",
    ):
        CorpusSource(path=str(tmp_path)).load()
    (tmp_path / "b.parquet").unlink()
    pd.DataFrame({"id": ["3", "four"], "text": ["c", "d"]}).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(
        CorpusError,
        match=r"b.csv: column 'id' holds \['four'\] where the folder's other files "
        r"have ids of type int64",
    ):
        CorpusSource(path=str(tmp_path)).load()


def test_an_empty_key_is_named(tmp_path):
    pd.DataFrame({"id": ["a", "", "c"], "text": ["x", "y", "z"]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(CorpusError, match=r"column 'id' has 1 empty id\(s\) at row position\(s\) 1"):
        CorpusSource(path=str(tmp_path / "c.csv")).load()


TOPIC_TASK = """
tasks:
  - name: topic
    instruction: Decide which support team should handle the message.
    gold_column: topic
    budget: 60
    audit_rows: 10
    candidates: [logistic_regression]
    labels: [cards, payments_and_cash, transfers, top_ups, fees_and_exchange, account_and_security]
"""

ODD_TEXTS = [
    "🎉🔥😀",
    "👍",
    "\u200b",
    "?!…",
    "Überweisung nach Zürich fehlgeschlagen",
    "カードが届きません",
    "بطاقتي لا تعمل",
    "NA",
    "card " * 4000,
]


@pytest.fixture
def shapes_env(pipeline_env, tasks_file, monkeypatch, tmp_path):
    tasks_file.write_text(textwrap.dedent(TOPIC_TASK))
    return pipeline_env


def _rows(kind: str) -> pd.DataFrame:
    df = demo_slice(ROWS, seed=1)[["id", "text", "topic", "split"]]
    df["id"] = keys(kind)
    df.loc[: len(ODD_TEXTS) - 1, "text"] = ODD_TEXTS  # texts in several scripts, emoji-only, zero-width, long
    return df


# One graph run per key type, each from another source: the diagonal of the matrix above, end to end.
@pytest.mark.parametrize(
    "kind, source",
    [
        ("uuid", "parquet"),
        ("string", "csv"),
        ("zero_padded", "tsv"),
        ("spaces_non_ascii", "duckdb"),
        ("int64_limits", "folder"),
    ],
)
def test_the_graph_runs_on_real_keys_and_predictions_join_back(shapes_env, monkeypatch, tmp_path, kind, source):
    df = _rows(kind)
    corpus = write_source(tmp_path / "source", df, source)
    monkeypatch.setenv("SCALELLM_CORPUS", corpus)
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    assert result.success
    db = shapes_env["SCALELLM_DUCKDB_PATH"]
    src, attach = source_keys_sql(corpus, source)
    with duckdb.connect(db, read_only=True) as conn:
        if attach:
            conn.execute(f"ATTACH '{attach}' AS src (READ_ONLY)")
        unmatched = conn.execute(f"""SELECT (SELECT count(*) FROM {src} s ANTI JOIN topic.predictions p ON s.id = p.id),
                                            (SELECT count(*) FROM topic.predictions p ANTI JOIN {src} s ON s.id = p.id),
                                            (SELECT count(*) FROM topic.predictions)""").fetchone()
        types = {
            t
            for (t,) in conn.execute("""SELECT DISTINCT data_type FROM information_schema.columns
                                                WHERE column_name = 'id'""").fetchall()
        }
        typed_null = conn.execute("""SELECT table_schema || '.' || table_name || '.' || column_name
                                     FROM information_schema.columns WHERE data_type = '"NULL"'""").fetchall()
    assert typed_null == []  # every column declared: none created as type NULL from an empty or all-None chunk
    assert unmatched == (0, 0, ROWS)
    assert types == ({"BIGINT"} if kind == "int64_limits" else {"VARCHAR"})  # no table typed NULL
    meta = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "embeddings"]
    # emoji only (2), zero-width, "?!…"; LSA also reads nothing in scripts its fit never saw (a zero vector)
    assert meta[0].materialization.metadata["unreadable_texts"].value >= 4
    assert repr(df["id"].tolist()[0]) in meta[0].materialization.metadata["unreadable_text_ids"].value


def test_unreadable_texts_get_the_same_fallback_under_every_embedder():
    from scalellm_dagster.embedders.lsa import LsaEmbedder
    from scalellm_dagster.embedders.static import StaticEmbedder
    from scalellm_dagster.embedders.unreadable import fallback_vector, with_fallback

    texts = pd.Series(["a card that never arrived", "a transfer to my friend", *ODD_TEXTS[:4]] * 5)
    for model in (LsaEmbedder(dim=8), StaticEmbedder()):
        vectors, positions = with_fallback(texts, model.fit_embed(texts.tolist()))
        assert sorted(set(positions % 6)) == [2, 3, 4, 5]
        assert np.allclose(vectors[positions], fallback_vector(vectors.shape[1]))
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)


ODD_LABELS = {
    "cards": "Négoce & Banque",
    "payments_and_cash": 'Markets: "Stocks"',
    "transfers": "Sport ⚽",
    "top_ups": "Autre (other)",
    "fees_and_exchange": "'quoted'",
    "account_and_security": "Autre",
}


def test_labels_with_any_character_are_learnt_from_exact_answers(pipeline_env, tasks_file, monkeypatch, tmp_path):
    """Quotes, punctuation, emoji, non-ASCII (answered in NFC and in NFD), one label a substring of another."""
    df = _rows("string")
    df["odd"] = df["topic"].map(ODD_LABELS)
    df.to_parquet(tmp_path / "odd.parquet", index=False)
    monkeypatch.setenv("SCALELLM_CORPUS", str(tmp_path / "odd.parquet"))
    labels = "\n".join(f"      - {label!r}" if '"' in label else f'      - "{label}"' for label in ODD_LABELS.values())
    tasks_file.write_text(
        textwrap.dedent("""
        tasks:
          - name: odd
            instruction: Which desk handles the message?
            gold_column: odd
            budget: 80
            candidates: [logistic_regression]
            labels:
        """)
        + labels
        + "\n"
    )
    gold = dict(zip(df["text"], df["odd"]))
    answered = []

    def exact(text: str) -> str:  # the gold label, every other answer in decomposed Unicode (NFD)
        answered.append(text)
        return unicodedata.normalize("NFD", gold[text]) if len(answered) % 2 else gold[text]

    with FakeOpenAI(exact) as server:
        monkeypatch.setenv("SCALELLM_TEACHER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        with DagsterInstance.ephemeral() as instance:
            result = run_pipeline(instance)
    assert result.success
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    sampled, valid, agree = query(
        db,
        """SELECT count(*), count(*) FILTER (WHERE valid),
                                                count(*) FILTER (WHERE s.teacher_label = c.odd)
                                         FROM odd.labeled_sample s JOIN corpus c USING (id)""",
    )[0]
    assert sampled == 80 and valid == 80 and agree == 80
    predicted = {label for (label,) in query(db, "SELECT DISTINCT label FROM odd.predictions")}
    assert predicted <= set(ODD_LABELS.values())
    assert {'Markets: "Stocks"', "'quoted'", "Autre", "Autre (other)"} <= predicted


def test_a_label_matcher_prefers_the_exact_label_then_each_normalisation():
    from scalellm_dagster.teachers.prompts import LabelMatcher

    match = LabelMatcher(['Markets: "Stocks"', "'quoted'", "quoted2", "Autre", "Autre (other)", "Négoce", "Yes", "yes"])
    assert match('Markets: "Stocks"') == 'Markets: "Stocks"'
    assert match(' "Markets: "Stocks"" ') == 'Markets: "Stocks"'  # quotes the label does not have
    assert match("quoted") == "'quoted'" and match("'quoted'") == "'quoted'"
    assert match(unicodedata.normalize("NFD", "Négoce")) == "Négoce" and match(" NÉGOCE ") == "Négoce"
    assert match("Autre") == "Autre" and match("autre") == "Autre" and match("Autre (other") is None
    assert match("Yes") == "Yes" and match("yes") == "yes" and match("YES") is None  # ambiguous once case goes


def test_the_audit_keys_on_the_text_too(shapes_env, monkeypatch, tmp_path):
    df = _rows("string").iloc[len(ODD_TEXTS) :].reset_index(drop=True)
    path = tmp_path / "audited.parquet"
    df.to_parquet(path, index=False)
    monkeypatch.setenv("SCALELLM_CORPUS", str(path))
    db = shapes_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        assert query(db, "SELECT sum(new_rows) FROM topic.audit_log")[0][0] == len(df)
        changed = df.index[-50:]
        df.loc[changed, "text"] = df.loc[changed, "text"] + " (edited)"
        df.to_parquet(path, index=False)
        assert run_pipeline(instance).success
    new_rows = [n for (n,) in query(db, "SELECT new_rows FROM topic.audit_log ORDER BY audited_at")]
    assert new_rows == [len(df), 50]  # the 50 edited rows are new to the audit; the others are not
