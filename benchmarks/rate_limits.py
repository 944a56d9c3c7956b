"""Throughput under rate limits (issue #38): the `openai` teacher, and the `openai` embedder, against the repository's
fault server enforcing requests or tokens per minute (a token bucket holding one second of the limit, 429 +
Retry-After when empty).

Per scenario: requests sent and refused, the most sent (refused ones included) in any 1 s (and 60 s) window
against the limit, and the throughput (requests admitted from the first to the last) as a share of the limit.
Teacher: server latency 0.1 s a request, batches of 4 rows, concurrency 8. Embedder: batches of 16 texts,
concurrency 4.

    .venv/bin/python -m benchmarks.rate_limits [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from scalellm_dagster.embedders.openai_embed import OpenAIEmbedder
from scalellm_dagster.flow import MemoryCache
from scalellm_dagster.openai_client import make_client
from scalellm_dagster.rate_limit import RateLimiter
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
from scalellm_dagster.teachers.runner import label_with_cache
from tests.fake_openai import FakeOpenAI, Limits, request_cost
from tests.test_openai_teacher import TASK, rule
from tests.test_rate_limits import most_in_window, rate

RESULTS = Path(__file__).resolve().parent / "results" / "rate_limits.json"
BATCH = 4
EMBED_BATCH = 16


def rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": range(n), "text": [f"review {i} is {'good' if i % 3 else 'bad'}" for i in range(n)]})


def scenario(name: str, limits: Limits, limiter: RateLimiter, requests: int) -> dict:
    """The teacher: `requests` requests of BATCH rows."""
    with FakeOpenAI(rule, latency_s=0.1, limits=limits) as server:
        client = make_client(server.base_url, "sk-bench", 30.0, 3)
        teacher = OpenAIChatTeacher(TASK, client, "bench-model", limiter=limiter)
        cache = MemoryCache()
        start = time.perf_counter()
        out, stats = label_with_cache(
            teacher, rows(requests * BATCH), cache.lookup, cache.store, batch_size=BATCH, concurrency=8
        )
        wall = time.perf_counter() - start
        sent, admitted = list(server.arrivals), list(server.admitted)
    answered = {"requests_answered": len(cache.ledger), "rows_answered": int(out["valid"].sum())}
    return report(name, limits, limiter, sent, admitted, answered, wall, stats.failed_requests)


def embed_scenario(name: str, limits: Limits, rpm: float, tpm: float, requests: int) -> dict:
    """The `openai` embedder: `requests` requests of EMBED_BATCH texts, 4 in flight."""
    texts = [f"row {i} asks about {'a card payment' if i % 2 else 'a transfer'}" for i in range(requests * EMBED_BATCH)]
    with FakeOpenAI(rule, limits=limits) as server:
        client = make_client(server.base_url, "sk-bench", 30.0, 3)
        embedder = OpenAIEmbedder(client, "bench-embed", EMBED_BATCH, 4, requests_per_minute=rpm, tokens_per_minute=tpm)
        start = time.perf_counter()
        vectors = embedder.fit_embed(texts)
        wall = time.perf_counter() - start
        sent, admitted = list(server.arrivals), list(server.admitted)
    answered = {"requests_answered": len(admitted), "rows_answered": len(vectors)}
    return report(name, limits, embedder.limiter, sent, admitted, answered, wall, 0)


def report(name, limits, limiter, sent, admitted, answered, wall, failed) -> dict:
    tokens = limits.tpm > 0
    weight = (lambda e: e[1]) if tokens else (lambda e: 1)
    per_s = (limits.tpm if tokens else limits.rpm) / 60
    biggest = max(c for _, c in sent) if tokens else 1
    result = {
        "scenario": name,
        "limit": f"{limits.tpm:,.0f} tokens/min" if tokens else f"{limits.rpm:,.0f} requests/min",
        "client_knows": limiter.describe() if limiter.rpm or limiter.tpm else "nothing",
        "learned_from_headers": limiter.stats.learned or "-",
        **answered,
        "requests_sent": len(sent),
        "refused_429": len(sent) - len(admitted),
        "max_in_1s": round(most_in_window(sent, 1.0, weight)),
        "limit_in_1s_plus_one": round(per_s + biggest),
        "max_in_60s": round(most_in_window(sent, 60.0, weight)) if sent[-1][0] - sent[0][0] >= 60 else None,
        # what the endpoint answered, from its first admission to its last, against the limit
        "throughput_share_of_limit": round(rate(admitted, weight) / per_s, 3),
        "wall_s": round(wall, 1),
        "failed_requests": failed,
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (no 60 s window)")
    args = parser.parse_args()
    long = 150 if args.quick else 700
    with FakeOpenAI(rule) as probe:  # one request's tokens as the server counts them
        client = make_client(probe.base_url, "sk-bench", 30.0, 3)
        cache = MemoryCache()
        label_with_cache(OpenAIChatTeacher(TASK, client, "m"), rows(BATCH), cache.lookup, cache.store, BATCH, 1)
        cost = request_cost(probe.chat_requests()[0])
    tpm = cost * 10 * 60  # about 10 requests a second
    embed_tpm = 16 * 10 * 60 * 10  # about 10 embeddings requests of 16 texts (~10 tokens each) a second
    results = [
        scenario("configured RPM", Limits(rpm=600), RateLimiter(600, 0, 8), long),
        scenario("configured RPM, fast", Limits(rpm=3000), RateLimiter(3000, 0, 8), 250),
        scenario("configured TPM", Limits(tpm=tpm), RateLimiter(0, tpm, 8), 250),
        scenario("learned from x-ratelimit headers", Limits(rpm=1200), RateLimiter(0, 0, 8), 250),
        scenario("429 + Retry-After only, no headers", Limits(rpm=600, send_headers=False), RateLimiter(0, 0, 8), 250),
        embed_scenario("embedder: configured TPM", Limits(tpm=embed_tpm), 0, embed_tpm, 250),
        embed_scenario("embedder: learned from headers", Limits(rpm=1200), 0, 0, 250),
        embed_scenario("embedder: 429 + Retry-After only", Limits(rpm=600, send_headers=False), 0, 0, 250),
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"batch_rows": BATCH, "tokens_per_request": cost, "runs": results}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
