"""Which form of structured output an OpenAI-compatible server accepts, and how to tell a rejection of the form
from a real error.

Servers differ: OpenAI, vLLM, Ollama and LM Studio take `json_schema`; llama-cpp-python's server answers it with
HTTP 500 ("Input should be 'text' or 'json_object'") and takes `json_object` with a `schema` (decoding under a
grammar); some take only plain `json_object`; a few take none. The teacher probes once per run, in this order.
"""

from __future__ import annotations

import copy
import json

import openai

FORMS = ("json_schema", "json_object+schema", "json_object", "plain")

_REJECTION_WORDS = ("response_format", "json_schema", "json_object", "guided_", "structured output")


def response_format(form: str, schema: dict, keys: list[str]) -> dict | None:
    if form == "json_schema":
        return {"type": "json_schema", "json_schema": schema}
    if form == "json_object+schema":
        # Under a grammar the answer can be pinned down further: exactly one item per row, in the rows' order, each
        # with its row's id (a small model otherwise repeats ids, or lists every label again and again), so the
        # model chooses only the labels. OpenAI's strict schemas take none of these keywords: this form only.
        body = copy.deepcopy(schema["schema"])
        item = body["properties"]["answers"].pop("items")
        body["properties"]["answers"].update(
            prefixItems=[{**item, "properties": {**item["properties"], "id": {"const": key}}} for key in keys],
            items=False,
            minItems=len(keys),
            maxItems=len(keys),
        )
        return {"type": "json_object", "schema": body}
    if form == "json_object":
        return {"type": "json_object"}
    if form == "plain":
        return None
    raise ValueError(f"unknown structured-output form {form!r}; expected one of {', '.join(FORMS)}")


def is_format_rejection(exc: Exception) -> bool:
    """A server refusing the `response_format` we sent, which servers report as 400, 422 or even 500."""
    return (
        isinstance(exc, openai.APIStatusError)
        and exc.status_code in (400, 422, 500)
        and any(word in str(exc).lower() for word in _REJECTION_WORDS)
    )


def answer_token_bound(keys: list[str], labels: list[str]) -> int:
    """Enough completion tokens for a batch's answer and no more: a model writing without bound (a small one
    often does without a grammar) is cut off instead of running into the timeout.

    Counted as if every token were 2 characters (JSON punctuation tokenises poorly), plus room for whitespace.
    """
    longest = max((len(label) for label in labels), default=8)
    chars = len('{"answers": []}') + sum(len(json.dumps({"id": k, "label": "x" * longest})) + 2 for k in keys)
    return chars // 2 + 32
