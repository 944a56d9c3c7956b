"""Rebuild the bundled demo corpus from the banking77 dataset (developer tool, not needed at run time).

    python scripts/build_demo_data.py ../shared/datasets/banking77/data.parquet

Writes ``scalellm_dagster/demo/banking77.parquet`` with columns ``id, text, intent, topic, split``:
``intent`` is banking77's label, ``topic`` its coarse category from ``scalellm_dagster/demo/topics.py``.
"""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scalellm_dagster.demo.topics import topic_of_intent  # noqa: E402


def main(source: str) -> None:
    df = pd.read_parquet(source)
    out = pd.DataFrame(
        {
            "id": df["id"].astype("int64"),
            "text": df["text"].astype(str),
            "intent": df["label"].astype(str),
            "topic": df["label"].map(topic_of_intent),
            "split": df["split"].astype(str),
        }
    )
    target = Path(__file__).resolve().parents[1] / "scalellm_dagster" / "demo" / "banking77.parquet"
    out.to_parquet(target, index=False, compression="zstd")
    print(f"wrote {len(out):,} rows to {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/banking77/data.parquet")
