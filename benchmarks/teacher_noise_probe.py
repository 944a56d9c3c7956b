"""How well the teacher-noise estimate behind the learning curves' floor finds injected teacher mistakes.

    .venv/bin/python -m benchmarks.teacher_noise_probe

On the bundled banking77 demo (1,500 random rows, static embeddings), labels from gold with 0 %, 10 % and 20 % of
them flipped to another label at random (a simulated teacher's mistakes), for the 6-topic and the 77-intent task:
the share `estimate_teacher_noise` flags, and the precision and recall of its flags against the flips.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from scalellm_dagster.core.students import out_of_fold
from scalellm_dagster.core.teacher_noise import estimate_teacher_noise
from scalellm_dagster.embedders.static import StaticEmbedder
from scalellm_dagster.settings import DEMO_CORPUS


def main(rows: int = 1500, seed: int = 0) -> None:
    df = pd.read_parquet(DEMO_CORPUS).sample(rows, random_state=seed)
    X = StaticEmbedder().embed(df["text"].tolist())
    out = []
    for column, student in (("topic", "logistic_regression"), ("intent", "linear_svm")):
        gold = df[column].to_numpy()
        labels = np.unique(gold)
        rng = np.random.default_rng(seed)
        for rate in (0.0, 0.1, 0.2):
            y = gold.copy()
            flipped = rng.random(len(y)) < rate
            y[flipped] = [rng.choice(labels[labels != g]) for g in y[flipped]]
            start = time.perf_counter()
            noise = estimate_teacher_noise(y, out_of_fold(student, X, y, 5, seed))
            out.append(
                {
                    "task": column,
                    "classes": len(labels),
                    "student": student,
                    "labels_flipped": round(flipped.mean(), 3),
                    "flagged": round(noise.rate, 3),
                    "precision": round(flipped[noise.suspect].mean(), 2) if noise.flagged else None,
                    "recall": round(noise.suspect[flipped].mean(), 2) if flipped.any() else None,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
    print(pd.DataFrame(out).to_markdown(index=False))


if __name__ == "__main__":
    main()
