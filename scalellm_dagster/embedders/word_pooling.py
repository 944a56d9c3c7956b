"""A static model's text vectors, pooled word by word: model2vec's vectors without tokenising every text.

model2vec tokenises each text (BERT's uncased WordPiece) and averages its tokens' rows. The tokenizer's normaliser
and pre-tokenizer act character by character and always split at a space, so a text's tokens are the tokens of its
space-separated words, in order. Words repeat (Zipf): each distinct word is tokenised once and remembered as its
token ids, and a batch of texts is pooled as two sparse products, (texts x words) @ ((words x vocabulary) @ rows).

What model2vec does besides, done the same here: unknown tokens are dropped from the average; a text cut by its
character limit or longer than its token limit is handed to model2vec itself, as is any text when the model is not
a plain uncased WordPiece one. `tests/test_static_embedder.py` compares the two on real and adversarial texts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from scalellm_dagster.embedders.protocol import as_string_array


class WordPooler:
    """Pools texts with `model` (a model2vec StaticModel, float32 rows, no weights or token mapping). Thread-safe:
    batches may be pooled on several threads, sharing the words learnt."""

    def __init__(self, model, max_words: int = 2_000_000):
        from tokenizers import Tokenizer

        self.model = model
        # A copy without truncation: a word's tokens are counted whole, and texts over the limit are found by count.
        self._tokenizer = Tokenizer.from_str(model.tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._unk = model.unk_token_id
        self._max_tokens = model.max_length
        self._max_chars = None if model.max_length is None else model.max_length * model.median_token_length
        self._max_words = max_words  # memory bound: the word table is cleared when it holds this many words
        self._lock = threading.Lock()
        self._clear()

    @staticmethod
    def supports(model) -> bool:
        """Whether word-by-word pooling reproduces `model.encode`: a WordPiece tokenizer behind BERT's normaliser and
        pre-tokenizer (both split at every space), mean pooling with no per-token weights."""
        import json

        spec = json.loads(model.tokenizer.to_str())
        return (
            model.weights is None
            and model.token_mapping is None
            and (spec.get("model") or {}).get("type") == "WordPiece"
            and (spec.get("normalizer") or {}).get("type") == "BertNormalizer"
            and (spec.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
        )

    def _clear(self) -> None:
        self._row_of: dict[str, int] = {}
        self._tokens = np.zeros(0, np.int32)  # every known word's token ids, unknown tokens left out, end to end
        self._starts = np.zeros(1, np.int64)  # word w's tokens are _tokens[_starts[w]:_starts[w + 1]]
        self._raw_counts = np.zeros(0, np.int64)  # its token count with unknown tokens, for the token limit

    def pool(self, texts: pa.Array | Sequence[str], normalize: bool | None = None) -> np.ndarray:
        """(len(texts), dim) float32: what `model.encode(texts)` gives, within float32 rounding."""
        texts = as_string_array(texts)
        normalize = self.model.normalize if normalize is None else normalize
        words = pc.split_pattern(texts, " ")
        local = pc.dictionary_encode(words.flatten())
        starts, tokens, raw = self._tokens_of(local.dictionary.to_pylist())
        rows = self.model.embedding
        word_sums = (
            sp.csr_matrix((np.ones(len(tokens), np.float32), tokens, starts), shape=(len(starts) - 1, rows.shape[0]))
            @ rows
        )
        word_counts = np.diff(starts).astype(np.float32)
        membership = sp.csr_matrix(
            (np.ones(len(local.indices), np.float32), local.indices.to_numpy(), _offsets(words)),
            shape=(len(texts), len(starts) - 1),
        )
        sums = np.asarray(membership @ word_sums, dtype=np.float32)
        counts = membership @ word_counts
        out = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
        long = np.asarray(membership @ raw.astype(np.float32)) > (self._max_tokens or np.inf)
        if self._max_chars is not None:
            long |= pc.greater(pc.utf8_length(texts), self._max_chars).to_numpy(zero_copy_only=False)
        if long.any():  # truncated by model2vec: its own encoder, which knows where it cuts
            picked = np.flatnonzero(long)
            out[picked] = self.model.encode(texts.take(picked).to_pylist(), use_multiprocessing=False, normalize=False)
        if normalize:
            out /= np.sqrt(np.einsum("ij,ij->i", out, out))[:, None] + 1e-32
        return out

    def _tokens_of(self, words: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(starts, token ids, raw counts) of `words` in their order, as a CSR row layout; new words tokenised."""
        with self._lock:
            if len(self._row_of) + len(words) > self._max_words:
                self._clear()
            new = [w for w in dict.fromkeys(words) if w not in self._row_of]
            if new:
                self._learn(new)
            rows = np.fromiter((self._row_of[w] for w in words), np.int64, len(words))
            tokens, starts_all, raw_all = self._tokens, self._starts, self._raw_counts
        lengths = starts_all[rows + 1] - starts_all[rows]
        starts = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=starts[1:])
        gather = np.repeat(starts_all[rows] - starts[:-1], lengths) + np.arange(starts[-1])
        return starts, tokens[gather], raw_all[rows]

    def _learn(self, words: list[str]) -> None:
        ids = [e.ids for e in self._tokenizer.encode_batch_fast(words, add_special_tokens=False)]
        raw = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.fromiter((t for word in ids for t in word), np.int32, int(raw.sum()))
        owner = np.repeat(np.arange(len(ids)), raw)
        known = flat != self._unk if self._unk is not None else np.ones(len(flat), bool)
        counts = np.bincount(owner[known], minlength=len(ids))
        self._row_of.update(zip(words, range(len(self._row_of), len(self._row_of) + len(words)), strict=True))
        self._tokens = np.concatenate([self._tokens, flat[known]])
        self._starts = np.concatenate([self._starts, self._starts[-1] + np.cumsum(counts)])
        self._raw_counts = np.concatenate([self._raw_counts, raw])


def _offsets(lists: pa.Array) -> np.ndarray:
    """The list array's offsets as numpy, relative to its first element (a slice's offsets do not start at 0)."""
    offsets = lists.offsets.to_numpy()
    return offsets - offsets[0]
