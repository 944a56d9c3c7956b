"""The default embedder: static token vectors distilled from MiniLM, shipped with the package, offline."""

from __future__ import annotations

import numpy as np

from scalellm_dagster.embedders.static import WEIGHTS, StaticEmbedder


def test_the_weights_ship_with_the_package_with_their_licence_note():
    sizes = {p.name: p.stat().st_size for p in WEIGHTS.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "config.json", "NOTICE.md"} <= set(sizes)
    assert 2e6 < sizes["model.safetensors"] < 16e6  # compact: int8 on disk
    assert "Apache License 2.0" in (WEIGHTS / "NOTICE.md").read_text()


def test_vectors_are_unit_length_deterministic_and_independent_of_the_batch():
    texts = [
        "my card was declined at the shop",
        "how do I top up by bank transfer?",
        "CARD DECLINED!!",
        "",
        "😀😀",
        "Überweisung nicht angekommen",
    ]
    a = StaticEmbedder().embed(texts)
    assert a.shape == (6, 256) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)  # empty and emoji-only texts too
    b = StaticEmbedder(chunk_rows=2).embed(texts[::-1])[::-1]  # other chunks, other order: the same vectors
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.array_equal(a[3], a[4])  # nothing known: the one shared fallback vector


ODD_TEXTS = [
    "",
    " ",
    "  double  spaces ",
    "tab\tsep\nnew\rline",
    "a\x0bb\x0cc",
    "nel\x85x",
    "zero\u200bwidth",
    "nbsp\u00a0here",
    "ideo\u3000space",
    "Café CAFÉ cafe\u0301",
    "a \u0301b",
    "中文字符测试",
    "ΣΊΣΥΦΟΣ",
    "emoji 😀👍🏽 only",
    "@user #tag http://t.co/x?q=1",
    "x" * 150,
    "supercalifragilistic" * 9,
    "word,word.word!?",
    "\x00null\ufffdrep",
    "İstanbul ǅ ﬁ Ⅷ ﾊﾝｶｸ",
    "\u2028line sep\u2029",
    "a\u180eb",
    "long text " * 400,
    "tok " * 600,
    "a" * 3100,
    "日本" * 2000,
    "[UNK] [CLS] [SEP] [PAD]",
    "card  card card",
]


def test_word_by_word_pooling_gives_model2vecs_vectors():
    """The pooling tokenises each distinct word once; its vectors are model2vec's own, on texts that split, join,
    strip, pad, truncate (by characters and by tokens) and hold unknown tokens."""
    from scalellm_dagster.embedders.word_pooling import WordPooler

    embedder = StaticEmbedder(chunk_rows=7)  # several chunks, pooled on several threads, sharing the words learnt
    model = embedder.load()
    assert WordPooler.supports(model)
    texts = ODD_TEXTS + ["my card was declined at the shop", "how do I top up by bank transfer?"] * 3
    expected = model.encode(texts, use_multiprocessing=False)
    np.testing.assert_allclose(WordPooler(model).pool(texts), expected, atol=1e-6)
    mine = embedder.embed(texts)
    known = np.einsum("ij,ij->i", expected, expected) > 0.25  # the rest get the fallback vector (test above)
    np.testing.assert_allclose(mine[known], expected[known], atol=1e-6)


def test_duckdb_hashes_texts_as_python_does():
    import duckdb

    from scalellm_dagster.core.text_hash import TEXT_HASH_SQL, text_hash

    texts = [t for t in ODD_TEXTS if "\x00" not in t]
    got = (
        duckdb.connect()
        .execute(f"SELECT {TEXT_HASH_SQL.format(column='t')} FROM unnest(?) AS u(t)", [texts])
        .fetchall()
    )
    assert [g[0] for g in got] == [text_hash(t) for t in texts]


def test_meaning_not_spelling_decides_similarity():
    v = StaticEmbedder().embed(
        ["my card payment was declined", "the shop refused my card", "what is the exchange rate for dollars"]
    )
    assert v[0] @ v[1] > v[0] @ v[2]


def test_the_version_names_the_weights():
    name = StaticEmbedder().name
    assert name.startswith("static-minilm256-") and len(name.rsplit("-", 1)[1]) == 8


def test_the_whole_graph_runs_on_the_static_embedder_and_refreshes_incrementally(
    pipeline_env, small_corpus, monkeypatch
):
    """SCALELLM_EMBEDDER=static: nothing to fit, so a refresh embeds only new rows and reuses every other vector and
    prediction, and the vectors' version names the weights."""
    import pandas as pd
    from dagster import AssetKey, AssetSelection, DagsterInstance

    from tests.conftest import demo_slice
    from tests.pipeline_helpers import query, run_pipeline

    monkeypatch.setenv("SCALELLM_EMBEDDER", "static")
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        extra = demo_slice(2000, seed=1)
        extra = extra[~extra["id"].isin(demo_slice(400)["id"])].head(30)
        pd.concat([demo_slice(400), extra]).to_parquet(small_corpus, index=False)
        result = run_pipeline(instance, selection=AssetSelection.keys("corpus", "embeddings", "topic/predictions"))
        assert result.success
    meta = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert (meta[AssetKey("embeddings")]["rows_computed"].value, meta[AssetKey("embeddings")]["rows_reused"].value) == (
        30,
        400,
    )
    assert meta[AssetKey(["topic", "predictions"])]["rows_predicted"].value == 30
    assert query(db, "SELECT DISTINCT embedding_version, len(vector) FROM embeddings") == [(StaticEmbedder().name, 256)]
    assert all(e.passed for e in result.get_asset_check_evaluations())
