"""Adding a backend is one module and one registry line: a toy embedder and a toy teacher, registered here only,
run the whole graph; the settings, the resources, the UI badge and the error for an unknown kind all follow the
registry."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pyarrow as pa
import pytest
from dagster import AssetKey, DagsterInstance

from scalellm_dagster.embedders import embedder_kinds
from scalellm_dagster.embedders.embedder_kinds import EmbedderKind
from scalellm_dagster.embedders.protocol import Embedder, FitFreeEmbedder
from scalellm_dagster.names import LABELED_SAMPLE, task_key
from scalellm_dagster.settings import SettingError, Settings
from scalellm_dagster.teachers import teacher_kinds
from scalellm_dagster.teachers.base import Answer, BatchResult
from scalellm_dagster.teachers.teacher_kinds import TeacherKind
from tests.pipeline_helpers import query, run_pipeline


class CharTrigrams(FitFreeEmbedder):
    """Hashed character trigrams: a fit-free embedder in a dozen lines."""

    name, dim, chunk_rows = "toy-trigrams32", 32, 1_000

    def load(self):
        return self

    def _encode(self, chunk: pa.Array) -> np.ndarray:
        out = np.zeros((len(chunk), self.dim), np.float32)
        for row, text in enumerate(chunk.to_pylist()):
            for i in range(max(len(text) - 2, 1)):
                out[row, hashlib.blake2b(text[i : i + 3].encode(), digest_size=1).digest()[0] % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


class GoldReader:
    """A toy teacher that reads the gold column (a simulation: it knows the answer)."""

    provider, model, prompt_version = "toy", "gold-reader", "toy-v1"

    def __init__(self, task, corpus):
        self.gold = dict(zip(corpus["id"].astype(str), corpus[task.gold_column].astype(str)))

    def label_batch(self, rows):
        start = time.perf_counter()
        return BatchResult(
            {key: Answer(self.gold[key], self.gold[key]) for key, _ in rows}, seconds=time.perf_counter() - start
        )

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return 0.0


@pytest.fixture
def toy_kinds(monkeypatch):
    monkeypatch.setitem(
        embedder_kinds.EMBEDDERS,
        "trigrams",
        EmbedderKind("trigrams", "offline, a test's toy", lambda options: CharTrigrams()),
    )
    monkeypatch.setitem(
        teacher_kinds.TEACHERS,
        "gold-reader",
        TeacherKind(
            "gold-reader",
            "a test's toy",
            lambda options, task, corpus, vectors: GoldReader(task, corpus),
            badge="python",
            simulated=True,
            priced=False,
        ),
    )


def test_a_registered_toy_embedder_and_teacher_run_the_whole_graph(pipeline_env, toy_kinds, monkeypatch):
    monkeypatch.setenv("SCALELLM_EMBEDDER", "trigrams")
    monkeypatch.setenv("SCALELLM_TEACHER", "gold-reader")
    assert isinstance(CharTrigrams(), Embedder)
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    assert result.success
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    assert query(db, "SELECT DISTINCT embedding_version, array_length(vector) FROM embeddings") == [
        ("toy-trigrams32", 32)
    ]
    assert query(db, "SELECT DISTINCT teacher FROM topic.labeled_sample") == [("toy:gold-reader",)]
    assert query(db, "SELECT count(*) FROM topic.predictions")[0][0] == 400
    sample = next(
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey(task_key("topic", LABELED_SAMPLE))
    )
    assert sample.materialization.metadata["teacher"].value == "toy:gold-reader (simulation, not an LLM)"


def test_an_unknown_kind_is_refused_with_the_registered_ones_listed(toy_kinds, monkeypatch):
    from scalellm_dagster.resources.from_settings import build_resources

    monkeypatch.setenv("SCALELLM_EMBEDDER", "word2vec")
    with pytest.raises(
        SettingError,
        match=r"SCALELLM_EMBEDDER='word2vec': expected 'static' \(offline, the "
        r"default\), .*'trigrams' \(offline, a test's toy\)",
    ):
        build_resources(Settings.from_env())
    monkeypatch.setenv("SCALELLM_EMBEDDER", "static")
    monkeypatch.setenv("SCALELLM_TEACHER", "gpt")
    with pytest.raises(
        SettingError,
        match=r"SCALELLM_TEACHER='gpt': expected 'simulated' \(offline, errors uniform over rows\), 'simulated_hard' "
        r"\(offline, errors on the rows a model finds hard\), 'openai' \(any OpenAI-compatible endpoint\), .* or "
        r"'gold-reader'",
    ):
        build_resources(Settings.from_env())
