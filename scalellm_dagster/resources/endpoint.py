"""The options every resource that may call an OpenAI-compatible endpoint shares: where, the key, and its limits."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field


class EndpointOptions(ConfigurableResource):
    base_url: str | None = None
    api_key: str | None = None
    concurrency: int = Field(default=8, description="Requests in flight at once (at most; fewer after a 429).")
    requests_per_minute: float = Field(
        default=0, description="The endpoint's request limit; 0: learned from its x-ratelimit headers, if any."
    )
    tokens_per_minute: float = Field(
        default=0,
        description="The endpoint's token limit, counted as it counts before answering (characters / 4, plus a "
        "chat request's max_tokens); 0: learned from its headers.",
    )
    pace_dir: str | None = Field(
        default=None,
        description="Folder of the send schedules every process on this machine shares, so that together they keep "
        "to the limits (set beside the warehouse); unset: each process paces alone.",
    )
    timeout_seconds: float = 60.0
    max_retries: int = 4

    def limits_note(self) -> str:
        """ "; paced to …" for a message, when limits are configured; else ""."""
        if not (self.requests_per_minute or self.tokens_per_minute):
            return ""
        return (
            f"; paced to {self.requests_per_minute:,.0f} requests/min, {self.tokens_per_minute:,.0f} tokens/min "
            "(0: learned from the endpoint's headers)"
        )
