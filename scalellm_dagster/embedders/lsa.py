"""Offline default: LSA (TF-IDF + truncated SVD), fitted on the corpus itself. No download, no torch."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from scalellm_dagster.embedders.protocol import Log, Texts, as_text_list, no_log


class LsaEmbedder:
    """Character n-gram (2-5, within word boundaries) TF-IDF reduced to `dim` dimensions.

    Character n-grams make it tolerant of typos and inflections, which is most of what a small neural encoder
    adds on short texts (BENCHMARKS.md compares them with word n-grams).
    On tiny corpora the dimension shrinks to what the data allows (recorded in `dim`). Once fitted, `embed`
    places new texts in the same space, so a grown corpus need not be re-embedded.
    """

    threads = 1

    def __init__(
        self,
        dim: int = 384,
        seed: int = 0,
        max_features: int = 200_000,
        fit_rows: int = 100_000,
        chunk_rows: int = 50_000,
    ):
        self.requested_dim = dim
        self.dim = dim
        self.seed = seed
        self.max_features = max_features
        self.fit_rows = fit_rows  # the model is fitted on at most this many texts (a seeded sample) ...
        self.chunk_rows = chunk_rows  # ... and every text is embedded in chunks, so memory stays flat
        self.vectorizer: TfidfVectorizer | None = None
        self.svd: TruncatedSVD | None = None

    @property
    def name(self) -> str:
        return f"lsa-tfidf-svd{self.requested_dim}" + (f"-seed{self.seed}" if self.seed else "")

    def fit_embed(self, texts: Texts, log: Log = no_log) -> np.ndarray:
        texts = as_text_list(texts)
        self.fit(texts, log)
        return self.embed(texts, log)

    def fit(self, texts: Texts, log: Log = no_log) -> LsaEmbedder:
        texts = as_text_list(texts)
        if len(texts) < 3:
            raise ValueError(f"LSA needs at least 3 texts to fit, got {len(texts)}")
        vectorizer = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 5),
            sublinear_tf=True,
            min_df=2 if len(texts) > 50 else 1,
            max_features=self.max_features,
            dtype=np.float32,
        )
        fit_texts = texts
        if len(texts) > self.fit_rows:
            pick = np.random.default_rng(self.seed).choice(len(texts), self.fit_rows, replace=False)
            fit_texts = [texts[i] for i in np.sort(pick)]
        tfidf = vectorizer.fit_transform(fit_texts)
        log(
            f"TF-IDF fitted on {tfidf.shape[0]:,} of {len(texts):,} rows: {tfidf.shape[1]:,} n-grams; "
            f"reducing to {self.requested_dim} dims"
        )
        self.dim = min(self.requested_dim, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
        svd = TruncatedSVD(n_components=self.dim, random_state=self.seed, algorithm="randomized", n_iter=5)
        svd.fit(tfidf)
        self.vectorizer, self.svd = vectorizer, svd
        return self

    @property
    def fitted(self) -> bool:
        return self.svd is not None

    def embed(self, texts: Texts, log: Log = no_log) -> np.ndarray:
        """Texts in the space fitted by `fit_embed` (an unfitted embedder fits on these texts instead)."""
        if not self.fitted:
            return self.fit_embed(texts, log)
        texts = as_text_list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.chunk_rows):
            chunk = self.vectorizer.transform(texts[start : start + self.chunk_rows])
            out[start : start + self.chunk_rows] = normalize(self.svd.transform(chunk))
            if len(texts) > self.chunk_rows:
                log(f"embedded {min(start + self.chunk_rows, len(texts)):,}/{len(texts):,} rows")
        return out
