"""An LSA embedder that takes half a second per call, so a test can kill a worker while it embeds. It is pickled
to the workers by reference, so they import this module (the test cluster puts the repo on PYTHONPATH)."""

from __future__ import annotations

import time

from scalellm_dagster.embedders.lsa import LsaEmbedder


class SlowLsa(LsaEmbedder):
    def embed(self, texts, log=lambda _m: None):
        time.sleep(0.5)
        return super().embed(texts, log)
