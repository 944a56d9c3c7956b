"""The embedder resource: which kind (`embedders.embedder_kinds`: `static` by default) and its options."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from scalellm_dagster.embedders.embedder_kinds import EmbedderKind, embedder_kind
from scalellm_dagster.embedders.protocol import Embedder


class EmbedderResource(ConfigurableResource):
    kind: str = Field(default="static", description="An embedder kind of `embedders.embedder_kinds`.")
    dim: int = Field(default=384, description="LSA dimensions (static, minilm and openai give their model's).")
    model: str = "text-embedding-3-small"
    base_url: str | None = None
    api_key: str | None = None
    batch_size: int = 256
    concurrency: int = Field(default=4, description="Requests in flight at once (at most; fewer after a 429).")
    requests_per_minute: float = Field(
        default=0, description="The embeddings endpoint's request limit; 0: learned from its x-ratelimit headers."
    )
    tokens_per_minute: float = Field(
        default=0, description="The embeddings endpoint's token limit (input characters / 4); 0: learned."
    )
    pace_dir: str | None = Field(
        default=None,
        description="Folder of the send schedules every process on this machine shares (set beside the warehouse).",
    )
    timeout_seconds: float = 60.0
    max_retries: int = 4
    seed: int = 0
    refit: bool = Field(default=False, description="Refit LSA on the whole corpus and re-embed every row.")

    @property
    def spec(self) -> EmbedderKind:
        return embedder_kind(self.kind)

    def build(self) -> Embedder:
        return self.spec.build(self)
