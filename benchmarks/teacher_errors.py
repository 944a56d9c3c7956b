"""Where each simulated teacher is wrong (issue #36): its errors against a text-difficulty measure it never used.

Per dataset (`<name>/data.parquet`: text, label; `demo` for the bundled banking77 intents) and teacher kind at
accuracy `--accuracy`, seed 0, every row answered as the simulation answers a corpus:

- `model_wrong`: the difficulty measure, independent of both simulations (they read rows with the static embedder):
  whether a TF-IDF logistic regression trained on the *gold* labels gets the row wrong out of fold (5 folds).
  Reported: the teacher's error rate on those rows and on the others, and their ratio (1: errors blind to difficulty).
- error rate by text length (words), shortest fifth against longest fifth;
- how concentrated the wrong answers are: the share going to the single most frequent wrong label, and the top
  confusion pairs (gold -> answer) with their share of all errors.

    .venv/bin/python -m benchmarks.teacher_errors demo ../shared/datasets/ag_news \\
        ../shared/datasets/tweet_eval_offensive --out benchmarks/results/teacher_errors.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from benchmarks.simulated_teachers import KINDS, answers_for


def load(path: str) -> tuple[str, pd.DataFrame]:
    from scalellm_dagster.settings import DEMO_CORPUS

    if path == "demo":
        return "banking77 (bundled demo, intent)", pd.read_parquet(DEMO_CORPUS).rename(columns={"intent": "label"})
    return Path(path).name, pd.read_parquet(Path(path) / "data.parquet")


def structure(name: str, df: pd.DataFrame, accuracy: float) -> list[dict]:
    from scalellm_dagster.embedders.static import StaticEmbedder

    texts, gold = df["text"].tolist(), df["label"].astype(str).to_numpy()
    labels = sorted(set(gold))
    X = StaticEmbedder().embed(texts)
    words = TfidfVectorizer(min_df=2, sublinear_tf=True).fit_transform(texts)
    model_wrong = cross_val_predict(LogisticRegression(max_iter=3000), words, gold, cv=5) != gold
    length = pd.Series([len(t.split()) for t in texts]).rank(method="first")
    fifth = pd.qcut(length, 5, labels=False).to_numpy()
    out = []
    for kind in KINDS:
        answers = answers_for(kind, texts, gold, labels, X, 0, accuracy)
        wrong = answers != gold
        pairs = pd.Series([f"{g} -> {a}" for g, a in zip(gold[wrong], answers[wrong])]).value_counts(normalize=True)
        out.append(
            {
                "dataset": name,
                "teacher": kind,
                "rows": len(df),
                "accuracy": round(float(1 - wrong.mean()), 4),
                "tfidf_model_wrong_share": round(float(model_wrong.mean()), 4),
                "error_rate_where_model_wrong": round(float(wrong[model_wrong].mean()), 4),
                "error_rate_where_model_right": round(float(wrong[~model_wrong].mean()), 4),
                "ratio": round(float(wrong[model_wrong].mean() / max(wrong[~model_wrong].mean(), 1e-9)), 2),
                "error_rate_shortest_fifth": round(float(wrong[fifth == 0].mean()), 4),
                "error_rate_longest_fifth": round(float(wrong[fifth == 4].mean()), 4),
                "top_wrong_label_share": round(
                    float(pd.Series(answers[wrong]).value_counts(normalize=True).iloc[0]), 3
                ),
                "top_pairs": {k: round(float(v), 3) for k, v in pairs.head(3).items()},
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--accuracy", type=float, default=0.9)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = [row for path in args.datasets for row in structure(*load(path), args.accuracy)]
    table = pd.DataFrame(rows).drop(columns=["top_pairs"])
    print(table.to_markdown(index=False))
    if args.out:
        Path(args.out).write_text(json.dumps({"accuracy": args.accuracy, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
