"""Shared fixtures: a small slice of the bundled banking77 demo, a tasks file, and pipeline runners."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

from scalellm_dagster.settings import DEMO_CORPUS  # noqa: E402

SMALL_TASKS = """
tasks:
  - name: topic
    instruction: Decide which support team should handle the message.
    gold_column: topic
    budget: 120
    candidates: [logistic_regression, linear_svm, ridge]
    labels: [cards, payments_and_cash, transfers, top_ups, fees_and_exchange, account_and_security]
"""

SECOND_TASK = """
  - name: is_card
    instruction: Is the message about a card?
    gold_column: is_card
    budget: 60
    candidates: [logistic_regression, ridge]
    labels: {card: about a card, other: about something else}
"""


def demo_slice(n: int, seed: int = 0) -> pd.DataFrame:
    df = pd.read_parquet(DEMO_CORPUS).sample(n=n, random_state=seed).reset_index(drop=True)
    df["is_card"] = (df["topic"] == "cards").map({True: "card", False: "other"})
    return df


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.parquet"
    demo_slice(400).to_parquet(path, index=False)
    return path


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.yaml"
    path.write_text(textwrap.dedent(SMALL_TASKS))
    return path


@pytest.fixture
def pipeline_env(monkeypatch, tmp_path: Path, small_corpus: Path, tasks_file: Path) -> dict:
    """Environment pointing the whole graph at a temporary corpus, tasks file and warehouse."""
    env = {
        "SCALELLM_CORPUS": str(small_corpus),
        "SCALELLM_TASKS": str(tasks_file),
        "SCALELLM_DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
        "SCALELLM_SIMULATED_LATENCY_MS": "0",
        "SCALELLM_EMBEDDING_DIM": "64",
        # Rendering Data Docs costs ~0.3 s a check, ~10 checks a run: tests/test_gx_suites.py renders and opens them
        "SCALELLM_DATA_DOCS": "off",
    }
    for key in ("SCALELLM_TEACHER", "SCALELLM_EMBEDDER", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def corpus_folder(tmp_path: Path, monkeypatch, total: int, first: int = 400) -> tuple[Path, pd.DataFrame]:
    """SCALELLM_CORPUS as a folder holding one file of the first `first` of `total` demo rows; returns (folder, all
    `total` rows: the rest are for the files a test drops later)."""
    folder = tmp_path / "drop"
    folder.mkdir()
    rows = demo_slice(total)
    rows.iloc[:first].to_parquet(folder / "part-000.parquet", index=False)
    monkeypatch.setenv("SCALELLM_CORPUS", str(folder))
    return folder, rows
