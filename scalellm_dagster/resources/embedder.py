"""The embedder resource: `static` offline (default: MiniLM distilled to static token vectors, shipped), `lsa`
offline (fitted on the corpus), `minilm` offline with the optional extra, or `openai` (any OpenAI-compatible
endpoint)."""

from __future__ import annotations

from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from scalellm_dagster.embedders.lsa import LsaEmbedder
from scalellm_dagster.embedders.minilm import MiniLmEmbedder
from scalellm_dagster.embedders.openai_embed import OpenAIEmbedder
from scalellm_dagster.embedders.static import StaticEmbedder
from scalellm_dagster.resources.openai_client import make_client


class EmbedderResource(ConfigurableResource):
    kind: Literal["static", "lsa", "minilm", "openai"] = "static"
    dim: int = Field(default=384, description="LSA dimensions (static, minilm and openai give their model's).")
    model: str = "text-embedding-3-small"
    base_url: str | None = None
    api_key: str | None = None
    batch_size: int = 256
    concurrency: int = 4
    timeout_seconds: float = 60.0
    max_retries: int = 4
    seed: int = 0
    refit: bool = Field(default=False, description="Refit LSA on the whole corpus and re-embed every row.")

    def build(self) -> StaticEmbedder | LsaEmbedder | MiniLmEmbedder | OpenAIEmbedder:
        if self.kind == "static":
            return StaticEmbedder()
        if self.kind == "lsa":
            return LsaEmbedder(dim=self.dim, seed=self.seed)
        if self.kind == "minilm":
            return MiniLmEmbedder()
        client = make_client(self.base_url, self.api_key, self.timeout_seconds, self.max_retries)
        return OpenAIEmbedder(client, self.model, batch_size=self.batch_size, concurrency=self.concurrency)
