"""The embedder resource: which kind (`embedders.embedder_kinds`: `static` by default) and its options (an
`openai` embedder's endpoint and limits: `EndpointOptions`)."""

from __future__ import annotations

from pydantic import Field

from scalellm_dagster.embedders.embedder_kinds import EmbedderKind, embedder_kind
from scalellm_dagster.embedders.protocol import Embedder
from scalellm_dagster.resources.endpoint import EndpointOptions


class EmbedderResource(EndpointOptions):
    kind: str = Field(default="static", description="An embedder kind of `embedders.embedder_kinds`.")
    dim: int = Field(default=384, description="LSA dimensions (static, minilm and openai give their model's).")
    model: str = "text-embedding-3-small"
    batch_size: int = 256
    concurrency: int = Field(default=4, description="Requests in flight at once (at most; fewer after a 429).")
    seed: int = 0
    refit: bool = Field(default=False, description="Refit LSA on the whole corpus and re-embed every row.")

    @property
    def spec(self) -> EmbedderKind:
        return embedder_kind(self.kind)

    def build(self) -> Embedder:
        return self.spec.build(self)
