"""`simulated_hard`: a simulation of an LLM teacher whose mistakes fall where a model's would. Not an LLM.

The `simulated` teacher's wrong answers land on rows picked by a hash, whatever their text: students average such
noise out, so what was proven against it was proven against the kindest teacher there is. A real LLM is wrong on the
hard rows (ambiguous or short texts, labels that mean nearly the same), the same way every time, and leans to some
labels. This simulation does that, still answering from the gold column at a chosen accuracy:

1. Its own reading of each row (the shipped static embedder, whatever embedder the students use) gives two margins
   of the gold label over the best other label: **zero-shot**, the row's similarity to each label's name and
   description (all an LLM has to go on), and **by example**, its similarity to each label's centroid in the corpus
   (labels whose rows look alike).
2. A row's difficulty is the mean of three ranks in the corpus: its two margins (smallest: hardest) and its length
   in words (shortest: hardest, less to go on). Its hardness blends that with a per-(seed, text) draw, weight
   `jitter` (default 0.4), so that difficulty makes an error likely, not certain.
3. The hardest `1 - accuracy` share of the corpus is answered wrongly: with the label that beats the gold one on the
   two similarities together (the one it is confused with) or, for a share `lean` of them, with the corpus's most
   frequent label.

Deterministic for a corpus, seed and settings: a text gets the same answer in every batch and run. The ranks and
centroids are the corpus's, so a refresh that changes the corpus can move a few borderline rows; answers already
asked are kept by the answer cache. Its measured error structure: BENCHMARKS.md, "A teacher whose mistakes look like
an LLM's".
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import sparse
from scipy.stats import rankdata

from scalellm_dagster.core.heartbeat import phase
from scalellm_dagster.embedders.unreadable import fallback_vector
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.simulated import SimulatedTeacher

BLOCK = 65_536  # rows embedded at a time: a corpus of any size needs one block of vectors in memory

StoredVectors = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]  # a fresh iterator of (ids, vectors) blocks


@dataclass(frozen=True)
class HardAnswers:
    """What the simulation answers for each corpus row, and why (for tests and the benchmark's tables)."""

    answers: np.ndarray  # the label it gives, per row
    wrong: np.ndarray  # bool per row
    hardness: np.ndarray  # in [0, 1], with the jitter; the wrong rows are its top share
    difficulty: np.ndarray  # in [0, 1], the three ranks alone (no jitter)


def label_texts(task_labels: dict[str, str]) -> list[str]:
    """What the zero-shot reading compares a row with: each label's name in words, and its description."""
    out = []
    for name, desc in task_labels.items():
        words = name.replace("_", " ").replace("-", " ").strip(" ?")
        out.append(f"{words}: {desc}" if desc else words)
    return out


def as_text_array(texts) -> pa.Array:
    """Texts as one Arrow array (a pandas column as it is, anything else as its `str`)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array):
        return texts.cast(pa.large_string())
    if isinstance(texts, pd.Series):
        return pa.array(texts.astype(str), pa.large_string())
    return pa.array([str(t) for t in texts], pa.large_string())


def _word_counts(texts: pa.Array) -> np.ndarray:
    """`len(text.split())` of each text, a block at a time (Python's own split: its idea of whitespace)."""
    counts = [
        np.fromiter((len(t.split()) for t in texts.slice(s, BLOCK).to_pylist()), np.int64)
        for s in range(0, len(texts), BLOCK)
    ]
    return np.concatenate(counts) if counts else np.zeros(0, np.int64)


def _draw(texts: Sequence[str], seed: int, salt: str) -> np.ndarray:
    """A uniform number per (seed, salt, text): the same text always draws the same. `error_draw` of each text,
    computed by DuckDB on every core (the same SHA-256, the same first 8 bytes, the same division by 2**64)."""
    import duckdb

    rows = pa.table({"text": as_text_array(texts)})
    with duckdb.connect() as conn:
        conn.register("_texts", rows)
        found = conn.execute(
            "SELECT ('0x' || left(sha256(? || chr(0) || ? || chr(0) || text), 16))::UBIGINT::DOUBLE "
            "/ 18446744073709551616.0 AS draw FROM _texts",
            [str(seed), salt],
        ).fetchnumpy()["draw"]
    return np.asarray(found, dtype=np.float64)


def _stored_blocks(stored: StoredVectors, ids: pd.Index, texts: pa.Array, embed):
    """(row positions, static vectors) blocks covering every row once, from the vectors the warehouse keeps: the
    `embeddings` step made them with the same static model. Where it stored the shared fallback vector (a text no
    embedder reads), or kept no vector, the simulation reads the text itself, as it always has."""
    seen = np.zeros(len(texts), dtype=bool)
    fallback = None
    for block_ids, block in stored():
        rows = ids.get_indexer(block_ids)
        inside = rows >= 0
        rows, block = rows[inside], block[inside]
        if fallback is None and len(block):
            fallback = fallback_vector(block.shape[1])
        shared = (block == fallback).all(axis=1) if len(block) else np.zeros(0, dtype=bool)
        if shared.any():
            block = block.copy()
            block[shared] = embed(texts.take(rows[shared]).to_pylist())
        seen[rows] = True
        yield rows, block
    missing = np.flatnonzero(~seen)
    for start in range(0, len(missing), BLOCK):
        rows = missing[start : start + BLOCK]
        yield rows, embed(texts.take(rows).to_pylist())


def matrix_blocks(ids: pd.Series, matrix: np.ndarray) -> StoredVectors:
    """A row-aligned matrix as stored-vector blocks."""
    ids = ids.to_numpy()
    return lambda: ((ids[s : s + BLOCK], matrix[s : s + BLOCK]) for s in range(0, len(ids), BLOCK))


def static_reader() -> str:
    """The version the `embeddings` step stamps on the static embedder's vectors: when every stored vector has it,
    the simulation reads them instead of embedding the corpus again."""
    return _static_embedder().name


def _row_standardised(scores: np.ndarray) -> np.ndarray:
    """Each row's similarities on a common scale, so the zero-shot and by-example readings weigh the same."""
    return (scores - scores.mean(axis=1, keepdims=True)) / (scores.std(axis=1, keepdims=True) + 1e-9)


def hard_answers(
    texts: Sequence[str],
    gold: Sequence[str],
    task_labels: dict[str, str],
    embed,
    accuracy: float,
    seed: int = 0,
    *,
    lean: float = 0.0,
    jitter: float = 0.4,
    vectors: np.ndarray | None = None,
    stored: StoredVectors | None = None,
    ids: Sequence | None = None,
) -> HardAnswers:
    """The simulation's answer for every row of a corpus. `embed(list of texts) -> L2-normalised vectors` of the
    static embedder; `vectors`: the rows' static vectors when the caller holds them already (benchmarks);
    `stored`: the same vectors as the warehouse keeps them (embedded once by the `embeddings` step), by `ids`."""
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"simulated_hard teacher accuracy must be in [0, 1], got {accuracy}")
    if not 0.0 <= lean <= 1.0:
        raise ValueError(f"simulated_hard teacher lean (SCALELLM_SIMULATED_BIAS) must be in [0, 1], got {lean}")
    texts = as_text_array(texts)  # Arrow: a million texts are not a million Python strings at once
    names = list(task_labels)
    code = pd.Categorical(np.asarray(gold, dtype=object), categories=names).codes.astype(np.int64)
    n, k = len(texts), len(names)
    if n == 0 or k < 2:
        answers = np.asarray(gold, dtype=object)
        return HardAnswers(answers, np.zeros(n, bool), np.zeros(n), np.zeros(n))
    known = code >= 0
    label_vectors = embed(label_texts(task_labels))
    if vectors is None and stored is None and n <= BLOCK:  # one block: embed it once for both passes
        vectors = embed(texts.to_pylist())

    index = pd.Index(ids) if stored is not None else None

    def blocks():
        if stored is not None:
            return _stored_blocks(stored, index, texts, embed)
        if vectors is not None:
            return ((np.arange(s, min(s + BLOCK, n)), vectors[s : s + BLOCK]) for s in range(0, n, BLOCK))
        return ((np.arange(s, min(s + BLOCK, n)), embed(texts.slice(s, BLOCK).to_pylist())) for s in range(0, n, BLOCK))

    sums, counts = np.zeros((k, label_vectors.shape[1])), np.bincount(code[known], minlength=k)
    for rows, block in blocks():  # pass 1: the class centroids
        codes = code[rows]
        member = codes >= 0
        sums += (
            sparse.csr_matrix(
                (np.ones(int(member.sum())), (codes[member], np.flatnonzero(member))), shape=(k, len(block))
            )
            @ block
        )
    centroids = sums / np.maximum(counts, 1)[:, None]
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12

    zero_shot_margin, example_margin = np.zeros(n), np.zeros(n)
    confused_with = np.zeros(n, dtype=np.int64)
    for rows, block in blocks():  # pass 2: each row's margins, and the label it is confused with
        zs, ex = _row_standardised(block @ label_vectors.T), _row_standardised(block @ centroids.T)
        own = np.clip(code[rows], 0, None)
        at = np.arange(len(block))
        for scores, margin in ((zs, zero_shot_margin), (ex, example_margin)):
            others = scores.copy()
            others[at, own] = -np.inf
            margin[rows] = scores[at, own] - others.max(axis=1)
        both = zs + ex
        both[at, own] = -np.inf
        confused_with[rows] = both.argmax(axis=1)

    wordiness = rankdata(_word_counts(texts))  # fewer words: less for any model to go on
    difficulty = 1.0 - (rankdata(zero_shot_margin) + rankdata(example_margin) + wordiness) / (3 * n)
    hardness = (1 - jitter) * difficulty + jitter * _draw(texts, seed, "hard")
    wrong = np.zeros(n, dtype=bool)
    n_wrong = int(round((1 - accuracy) * known.sum()))
    if n_wrong:
        order = np.argsort(-np.where(known, hardness, -np.inf), kind="stable")
        wrong[order[:n_wrong]] = True
    most_frequent = np.argsort(-counts, kind="stable")[:2]
    frequent = np.where(code == most_frequent[0], most_frequent[1], most_frequent[0])
    # a draw is never below 0: without a lean no row leans, and a million hashes are spared
    leans = _draw(texts, seed, "lean") < lean if lean > 0 else np.zeros(n, dtype=bool)
    wrong_code = np.where(leans, frequent, confused_with)
    answers = np.asarray(gold, dtype=object).copy()
    answers[wrong] = np.asarray(names, dtype=object)[wrong_code[wrong]]
    return HardAnswers(answers, wrong, hardness, difficulty)


@lru_cache(maxsize=1)
def _static_embedder():
    from scalellm_dagster.embedders.static import StaticEmbedder

    return StaticEmbedder(threads=1)  # loaded once a process: a teacher is built for every session


def static_embed(texts: list[str]) -> np.ndarray:
    return _static_embedder().embed(texts)


def corpus_key(ids: pd.Series, texts: pd.Series, gold: pd.Series, *settings) -> str:
    """What the simulation's answers for a corpus depend on: every row's position, id, text and gold label (two
    64-bit hashes folded over the rows by DuckDB, no Python object per row), and the settings."""
    import duckdb

    rows = pa.table(
        {
            "pos": pa.array(np.arange(len(ids))),
            "id": pa.array(ids.astype(str), pa.large_string()),
            "text": as_text_array(texts),
            "gold": pa.array(gold.astype(object).where(gold.notna(), None), pa.large_string()),
        }
    )
    with duckdb.connect() as conn:
        conn.register("_rows", rows)
        folded = conn.execute(
            "SELECT count(*), bit_xor(hash(pos, id, text, gold)), bit_xor(hash(gold, text, id, pos, 'x')) FROM _rows"
        ).fetchone()
    return hashlib.sha256(repr((folded, settings)).encode()).hexdigest()


class AnswersById:
    """The simulation's answer per corpus id, looked up by the teacher's key (the id as text)."""

    def __init__(self, ids: pd.Series, answers: np.ndarray):
        self._numeric = pd.api.types.is_integer_dtype(ids.dtype)
        self._index = pd.Index(ids.to_numpy())
        self._answers = answers

    def __getitem__(self, key: str) -> str:
        return self._answers[self._index.get_loc(int(key) if self._numeric else key)]


# The answers for the latest corpus, shared by every teacher built in this process: the sample, its re-asks, the
# cascade and the audit of one run compute them once (a Dagster run executes its steps in one process by default).
_MEMO: dict[str, AnswersById] = {}
_MEMO_LOCK = threading.Lock()


class HardRowsTeacher(SimulatedTeacher):
    """The `simulated_hard` kind: answers computed for the whole corpus by `hard_answers`, at the first question
    the answer cache cannot answer (a run whose answers are all cached never computes them), once per corpus and
    settings in a process."""

    provider = "simulated_hard"

    def __init__(
        self,
        task: TaskSpec,
        answer_by_key: dict[str, str] | AnswersById | Callable[[], AnswersById],
        accuracy: float,
        lean: float = 0.0,
        **kwargs,
    ):
        super().__init__(task, {}, {}, accuracy=accuracy, **kwargs)
        self._answers = answer_by_key
        self._lock = threading.Lock()
        self.log = lambda message: None  # a session sets its run's log: the first miss may read a million rows
        self.lean = lean
        self.model = f"simulated-hard-acc{accuracy:.3f}-seed{self.seed}" + (f"-lean{lean:.2f}" if lean else "")

    @property
    def answer_by_key(self) -> dict[str, str] | AnswersById:
        with self._lock:
            if callable(self._answers):
                self._answers = self._answers()
            return self._answers

    @classmethod
    def from_texts(
        cls,
        task: TaskSpec,
        ids: pd.Series,
        texts: pd.Series,
        gold: pd.Series,
        accuracy: float = 0.9,
        seed: int = 0,
        *,
        lean: float = 0.0,
        embed=static_embed,
        stored: StoredVectors | None = None,
        **kwargs,
    ) -> HardRowsTeacher:
        """`stored`: the static vectors the warehouse keeps for these rows (read instead of embedding again)."""

        def compute() -> AnswersById:
            key = corpus_key(ids, texts, gold, task.labels, accuracy, seed, lean, _static_embedder().name)
            with _MEMO_LOCK:
                if key in _MEMO:
                    return _MEMO[key]
                started = time.perf_counter()
                source = "the stored static vectors" if stored is not None else "the static embedder"
                teacher.log(f"simulated_hard: reading {len(ids):,} corpus rows ({source}) to place its mistakes")
                phase(f"placing the simulated_hard teacher's mistakes over {len(ids):,} rows")
                found = hard_answers(
                    texts,
                    gold.astype(object).tolist(),
                    task.labels,
                    embed,
                    accuracy,
                    seed,
                    lean=lean,
                    stored=stored,
                    ids=ids.to_numpy(),
                )
                _MEMO.clear()  # one corpus at a time
                _MEMO[key] = AnswersById(ids, found.answers)
                teacher.log(f"simulated_hard: answers for {len(ids):,} rows in {time.perf_counter() - started:.1f}s")
                return _MEMO[key]

        teacher = cls(task, compute, accuracy=accuracy, lean=lean, seed=seed, **kwargs)
        return teacher

    def answer(self, key: str, text: str) -> str:
        return self.answer_by_key[key]
