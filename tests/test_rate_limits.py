"""The `openai` teacher at a rate-limited endpoint: the repository's fault server enforcing requests and tokens per
minute as a token bucket, answering 429 with Retry-After and sending x-ratelimit headers. The run finishes with every
row answered once, sends never exceed the limit by more than one request in any window, and throughput stays at
>= 90 % of the limit (the figures at larger sizes: benchmarks/rate_limits.py, BENCHMARKS.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalellm_dagster.embedders.openai_embed import OpenAIEmbedder
from scalellm_dagster.flow import MemoryCache
from scalellm_dagster.openai_client import make_client
from scalellm_dagster.rate_limit import RateLimiter, parse_duration, retry_after
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
from scalellm_dagster.teachers.runner import label_with_cache
from tests.fake_openai import FakeOpenAI, Limits, request_cost
from tests.test_openai_teacher import TASK, rule

ROWS = pd.DataFrame({"id": range(400), "text": [f"review {i} is {'good' if i % 3 else 'bad'}" for i in range(400)]})


def label(server: FakeOpenAI, limiter: RateLimiter, rows=ROWS, batch_size=4, concurrency=8):
    client = make_client(server.base_url, "sk-test", 10.0, 3)
    teacher = OpenAIChatTeacher(TASK, client, "test-model", limiter=limiter)
    cache = MemoryCache()
    out, stats = label_with_cache(
        teacher, rows, cache.lookup, cache.store, batch_size=batch_size, concurrency=concurrency
    )
    return out, stats, cache


def most_in_window(events: list[tuple[float, int]], window: float, weight=lambda e: 1) -> float:
    """The most requests (or tokens, with `weight`) sent in any `window` seconds."""
    times = [t for t, _ in events]
    best, j, total = 0.0, 0, 0.0
    for i, (t, _) in enumerate(events):
        total += weight(events[i])
        while times[j] < t - window:
            total -= weight(events[j])
            j += 1
        best = max(best, total)
    return best


def rate(events: list[tuple[float, int]], weight=lambda e: 1) -> float:
    """Sent per second from the first send to the last (the first send's amount is its own burst)."""
    span = events[-1][0] - events[0][0]
    return sum(weight(e) for e in events[1:]) / span


def test_configured_request_limit_is_never_exceeded_and_throughput_holds():
    limit = 1200  # requests/min: 20/s, so 100 requests take about 5 s
    with FakeOpenAI(rule, limits=Limits(rpm=limit)) as server:
        out, stats, cache = label(server, RateLimiter(requests_per_minute=limit, concurrency=8))
    assert out["valid"].all() and stats.requests == len(cache.ledger) == 100 and stats.failed_requests == 0
    assert server.refused == 0 and len(server.arrivals) == 100  # never refused: nothing sent twice
    per_second = limit / 60
    assert most_in_window(server.arrivals, 1.0) <= per_second + 1
    assert most_in_window(server.arrivals, 3.0) <= per_second * 3 + 1
    assert rate(server.arrivals) >= 0.9 * per_second


def test_configured_token_limit_is_never_exceeded_and_throughput_holds():
    with FakeOpenAI(rule) as probe:  # the cost of one request, as the server counts it
        label(probe, RateLimiter(), rows=ROWS.head(4))
        cost = request_cost(probe.chat_requests()[0])
    limit = cost * 15 * 60  # about 15 requests a second
    with FakeOpenAI(rule, limits=Limits(tpm=limit)) as server:
        out, stats, _ = label(server, RateLimiter(tokens_per_minute=limit, concurrency=8))
    assert out["valid"].all() and stats.failed_requests == 0 and server.refused == 0
    tokens = lambda e: e[1]  # noqa: E731
    biggest = max(c for _, c in server.arrivals)
    assert most_in_window(server.arrivals, 1.0, tokens) <= limit / 60 + biggest
    assert rate(server.arrivals, tokens) >= 0.9 * limit / 60


def test_limits_learned_from_the_endpoints_headers():
    limit = 1200
    with FakeOpenAI(rule, limits=Limits(rpm=limit)) as server:
        limiter = RateLimiter(concurrency=8)  # nothing configured
        out, stats, cache = label(server, limiter)
    assert out["valid"].all() and len(cache.ledger) == 100 and stats.failed_requests == 0
    assert limiter.stats.learned == "1,200 requests/min" and limiter.rpm == limit
    # before the first reply nothing is known: the first sends go out together (here within the bucket)
    assert server.refused <= 2
    assert most_in_window(server.arrivals, 1.0) <= limit / 60 + 1
    assert rate(server.arrivals) >= 0.9 * limit / 60


def test_429s_without_headers_are_waited_out_together_no_storm_no_lost_or_doubled_answer():
    """An endpoint that only answers 429 + Retry-After (no x-ratelimit headers, no limit configured): concurrency
    narrows, every send waits out the Retry-After, and the run still answers every row exactly once."""
    with FakeOpenAI(rule, limits=Limits(rpm=600, burst_seconds=0.5, send_headers=False)) as server:
        limiter = RateLimiter(concurrency=8)
        out, stats, cache = label(server, limiter)
    assert out["valid"].all() and stats.failed_requests == 0
    assert len(cache.ledger) == 100 and sum(r["rows_answered"] for r in cache.ledger) == 400  # each paid once
    assert limiter.stats.rate_limited == server.refused > 0
    # a storm would refuse a request for every thread at every Retry-After: AIMD keeps refusals to a fraction
    assert server.refused <= 0.5 * len(cache.ledger)


@pytest.mark.parametrize(
    "value, seconds",
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.25", 0.25), ("soon", None)],
)
def test_reset_durations_parse(value, seconds):
    assert parse_duration(value) == seconds


def test_retry_after_prefers_milliseconds_then_seconds_then_reset():
    assert retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "500ms"}) == 2.0
    assert retry_after({}) is None


TWO_PROCESSES = """
import sys
import pandas as pd
from scalellm_dagster.flow import MemoryCache
from scalellm_dagster.openai_client import make_client
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
from scalellm_dagster.rate_limit import shared_limiter
from scalellm_dagster.teachers.runner import label_with_cache
from tests.test_openai_teacher import TASK

base_url, rpm, pace_dir, tag = sys.argv[1], float(sys.argv[2]), sys.argv[3] or None, sys.argv[4]
rows = pd.DataFrame({"id": range(200), "text": [f"{tag} review {i} is good" for i in range(200)]})
limiter = shared_limiter(base_url, rpm, 0, 8, pace_dir)
teacher = OpenAIChatTeacher(TASK, make_client(base_url, "sk-test", 10.0, 3), "test-model", limiter=limiter)
cache = MemoryCache()
out, stats = label_with_cache(teacher, rows, cache.lookup, cache.store, batch_size=4, concurrency=8)
assert out["valid"].all() and len(cache.ledger) == 50, (stats, len(cache.ledger))
"""


@pytest.mark.parametrize("shared_pace", [True, False])
def test_two_processes_share_one_pace_through_the_pace_file(tmp_path, shared_pace):
    """Two processes at one endpoint (say two steps of a --multiprocess run): with the pace file beside the
    warehouse they keep to the limit together; each pacing alone, they send twice the limit and are refused."""
    import subprocess
    import sys
    from pathlib import Path

    limit = 600  # 10/s: 100 ms between sends, so a late wake-up on a loaded machine shifts few into one second
    pace_dir = str(tmp_path / "wh.pace") if shared_pace else ""
    with FakeOpenAI(rule, limits=Limits(rpm=limit)) as server:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", TWO_PROCESSES, server.base_url, str(limit), pace_dir, tag],
                cwd=Path(__file__).resolve().parents[1],
            )
            for tag in ("a", "b")
        ]
        assert [p.wait(120) for p in procs] == [0, 0]  # every row answered in both, however often refused
    if shared_pace:
        assert server.refused == 0 and len(server.arrivals) == 100
        # the server times arrivals: three busy processes on two cores wake a send up to ~0.1 s late, which lets
        # one more of the previous second's slots arrive inside the next (the schedule itself is exact)
        assert most_in_window(server.arrivals, 1.0) <= limit / 60 + 2
        assert rate(server.admitted) >= 0.9 * limit / 60
    else:
        assert server.refused > 0 or most_in_window(server.arrivals, 1.0) > limit / 60 + 2


TEXTS = [f"row {i} asks about {'a card payment' if i % 2 else 'a transfer'} made {i % 7} days ago" for i in range(200)]


def embed(server: FakeOpenAI, **limits) -> tuple[np.ndarray, OpenAIEmbedder]:
    embedder = OpenAIEmbedder(
        make_client(server.base_url, "sk-test", 10.0, 3), "embed-model", batch_size=4, concurrency=4, **limits
    )
    return embedder.fit_embed(TEXTS), embedder


def test_embedder_keeps_to_a_configured_request_limit_and_its_vectors_are_unchanged():
    with FakeOpenAI(rule) as plain:
        expected, _ = embed(plain)
    limit = 1200
    with FakeOpenAI(rule, limits=Limits(rpm=limit)) as server:
        vectors, _ = embed(server, requests_per_minute=limit)
    assert np.array_equal(vectors, expected)  # every row's vector, in order
    assert server.refused == 0 and len(server.arrivals) == 50
    assert most_in_window(server.arrivals, 1.0) <= limit / 60 + 1
    assert rate(server.arrivals) >= 0.9 * limit / 60


def test_embedder_learns_a_token_limit_from_headers():
    with FakeOpenAI(rule) as probe:
        embed(probe)
        cost = request_cost(probe.requests[0])
    limit = cost * 15 * 60  # about 15 requests a second
    with FakeOpenAI(rule, limits=Limits(tpm=limit)) as server:
        _, embedder = embed(server)
    assert embedder.limiter.stats.learned == f"{limit:,.0f} tokens/min"
    assert server.refused == 0  # the first request went alone, the rest after its headers were read
    tokens = lambda e: e[1]  # noqa: E731
    sent = server.arrivals
    assert most_in_window(sent, 1.0, tokens) <= limit / 60 + max(c for _, c in sent)
    assert rate(sent, tokens) >= 0.9 * limit / 60


def test_embedder_waits_out_429s_and_retries_faults_without_losing_a_vector():
    """An embeddings endpoint that only answers 429 (no headers, no limit configured) and fails three requests on the
    way: the step finishes with every vector (with only the client's own retries, the 429s failed it)."""
    with FakeOpenAI(rule) as plain:
        expected, _ = embed(plain)
    with FakeOpenAI(rule, limits=Limits(rpm=600, burst_seconds=0.5, send_headers=False)) as server:
        server.embed_faults = ["503", "drop", "500"]
        vectors, embedder = embed(server)
    assert np.array_equal(vectors, expected)
    assert not server.embed_faults  # all three were met
    assert embedder.limiter.stats.rate_limited == server.refused > 0
    assert server.refused <= 0.5 * len(server.admitted)  # no storm


def test_limits_and_the_shared_schedule_come_from_the_settings(tmp_path):
    from scalellm_dagster.resources.from_settings import build_resources
    from scalellm_dagster.settings import Settings
    from tests.test_openai_teacher import TASK

    env = {
        "SCALELLM_DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
        "SCALELLM_TEACHER": "openai",
        "SCALELLM_EMBEDDER": "openai",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "SCALELLM_TEACHER_RPM": "500",
        "SCALELLM_TEACHER_TPM": "200000",
        "SCALELLM_EMBEDDING_RPM": "3000",
    }
    resources = build_resources(Settings.from_env(env))
    teacher = resources["teacher"].build(TASK, pd.DataFrame({"id": [], "text": []}), None)
    embedder = resources["embedder"].build()
    assert (teacher.limiter.rpm, teacher.limiter.tpm) == (500, 200000)
    assert (embedder.limiter.rpm, embedder.limiter.tpm) == (3000, 0)
    assert teacher.limiter is not embedder.limiter  # each model is limited on its own
    pace_dir = tmp_path / "wh.pace"
    assert embedder.limiter._pace.path.parent == teacher.limiter._pace.path.parent == pace_dir
