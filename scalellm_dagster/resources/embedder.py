"""The embedder resource: which kind (`embedders.embedder_kinds`: `static` by default) and its options (an
`openai` embedder's endpoint and limits: `EndpointOptions`)."""

from __future__ import annotations

from pydantic import Field

from scalellm_dagster.core.cost_estimate import Estimate, PromptSizes, estimate_labelling
from scalellm_dagster.embedders.embedder_kinds import EmbedderKind, embedder_kind
from scalellm_dagster.embedders.protocol import Embedder
from scalellm_dagster.resources.endpoint import EndpointOptions


class EmbedderResource(EndpointOptions):
    kind: str = Field(default="static", description="An embedder kind of `embedders.embedder_kinds`.")
    dim: int = Field(default=384, description="LSA dimensions (static, minilm and openai give their model's).")
    model: str = "text-embedding-3-small"
    batch_size: int = 256
    concurrency: int = Field(default=4, description="Requests in flight at once (at most; fewer after a 429).")
    price_per_mtok: float = Field(default=0.02, description="USD per million input tokens (text-embedding-3-small).")
    expected_seconds_per_request: float = Field(
        default=0.5, description="Assumed request latency for the dry-run time estimate of a remote embedder."
    )
    seed: int = 0
    refit: bool = Field(default=False, description="Refit LSA on the whole corpus and re-embed every row.")

    @property
    def spec(self) -> EmbedderKind:
        return embedder_kind(self.kind)

    def build(self) -> Embedder:
        return self.spec.build(self)

    def cost_estimate(self, texts: list[str], rows: int) -> Estimate | None:
        """What embedding `rows` rows like `texts` (a sample) costs at a remote endpoint, paced by its limits; None for
        an offline embedder (no requests)."""
        if not self.spec.remote:
            return None
        per_row = sum(len(t) for t in texts) / max(len(texts), 1)
        return estimate_labelling(
            PromptSizes(per_request_chars=0, per_row_chars=per_row, answer_chars_per_row=0),
            rows,
            self.batch_size,
            self.concurrency,
            self.expected_seconds_per_request,
            self.price_per_mtok,
            price_out_per_mtok=0.0,
            label=f"embeddings ({self.batch_size} rows/request, every row once)",
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
        )
