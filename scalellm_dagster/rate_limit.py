"""Keeping the teacher and the embedder under an endpoint's rate limits: requests and tokens per minute, paced,
and adaptive.

Every request (and every retry) passes `RateLimiter.slot(tokens)` before it is sent (`send`: one request, its 429s
waited out and its transient faults retried):
- **Pacing.** With a limit of R requests/min, sends are spaced 60/R s apart; with T tokens/min, a request of t tokens
  holds the next send back t·60/T s. No burst is taken, so a server that enforces the same limits with any bucket
  of at least one request never refuses one, and the sent rate stays at the limit (BENCHMARKS.md: issue #38).
  Tokens are counted as the endpoint counts them before answering: prompt characters / 4 plus `max_tokens`.
- **Limits learned from headers.** A limit not configured is taken from the `x-ratelimit-limit-requests/-tokens`
  headers of the first reply that carries them (OpenAI, Azure, vLLM behind a gateway...); with none configured,
  the first request is sent alone, so the others wait for what its reply says. A reply whose
  `x-ratelimit-remaining-*` is 0 holds every send until its `x-ratelimit-reset-*` has passed.
- **429.** Every send waits out the `Retry-After` (or `retry-after-ms`, or the reset header; else an exponential
  backoff), not just the refused one, so threads do not storm back together; the requests allowed in flight are
  halved, and grow back by one per that many successes (additive increase, multiplicative decrease). An endpoint
  that states no limit but refuses: the limiter paces at 80 % of the rate it was sending at when refused, and
  speeds up 1 % per reply (the same rule, on the rate: a fast server admits any concurrency).
- **Across processes.** With a `pace_file` (in the warehouse's folder: `<warehouse>.pace/`), the next send time and
  any 429 pause live in that file, under an exclusive lock: every process on the machine (the steps of a
  `--multiprocess` run, a second run) takes its turn from the same schedule, so together they keep to the limit.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import random
import re
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import openai

from scalellm_dagster.core.cost_estimate import CHARS_PER_TOKEN  # the fault server counts the same way

MAX_BACKOFF_S = 30.0
# 429s one request may wait out before it counts as failed: at the limiter's backoff cap, about ten minutes.
MAX_RATE_LIMITED = 20


def request_tokens(kwargs: dict) -> int:
    """What a chat request counts against a tokens/min limit before it is answered."""
    chars = sum(len(str(m.get("content", ""))) for m in kwargs.get("messages", []))
    return math.ceil(chars / CHARS_PER_TOKEN) + int(kwargs.get("max_tokens") or 0)


def input_tokens(texts: list[str]) -> int:
    """What an embeddings request of `texts` counts against a tokens/min limit."""
    return sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts)


def send(limiter: RateLimiter, create, tokens: int, max_retries: int, retry_faults: bool = True):
    """`create()` (a request returning (reply, headers)) through `limiter`: its 429s waited out (every send held,
    up to `MAX_RATE_LIMITED`), its transient faults (connection, 5xx, 409) retried `max_retries` times with backoff
    honouring `Retry-After` when `retry_faults`; returns the reply. The client's own retries must be off: they
    would bypass the limiter."""
    delay, faults, limited = 0.5, 0, 0
    while True:
        with limiter.slot(tokens):
            try:
                reply, headers = create()
            except openai.RateLimitError as exc:
                limited += 1
                limiter.rate_limited(exc.response.headers)
                if limited > MAX_RATE_LIMITED:
                    raise
                continue
            except (openai.APIConnectionError, openai.InternalServerError, openai.ConflictError) as exc:
                if not retry_faults or faults >= max_retries:
                    raise
                faults += 1
                wait = retry_after(getattr(getattr(exc, "response", None), "headers", None))
                time.sleep(min(wait, 60.0) if wait is not None else delay * (0.5 + random.random()))
                delay = min(delay * 2, 8.0)
                continue
        limiter.observe(headers)
        return reply


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def parse_duration(value: str | None) -> float | None:
    """Seconds in a reset header: "1s", "6m0s", "20ms", "1h2m3.5s", or a bare number of seconds."""
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    match = _DURATION.match(value)
    if not match or not any(match.groups()):
        return None
    h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def retry_after(headers) -> float | None:
    """Seconds a 429 (or 503) asks to wait: `retry-after-ms`, `retry-after` (seconds), or the later reset."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    seconds = parse_duration(headers.get("retry-after"))
    if seconds is not None:
        return seconds
    resets = [parse_duration(headers.get(f"x-ratelimit-reset-{k}")) for k in ("requests", "tokens")]
    resets = [r for r in resets if r is not None]
    return max(resets) if resets else None


@dataclass
class LimiterStats:
    rate_limited: int = 0  # 429s received
    waited_s: float = 0.0  # time sends were held back, summed over requests
    learned: str = ""  # limits taken from the endpoint's headers


class _MemoryPace:
    """The send schedule of one process: the next send time and the end of any 429 pause."""

    clock = staticmethod(time.monotonic)

    def __init__(self):
        self.next_send = self.paused_until = 0.0

    def reserve(self, spacing: float) -> float:
        """Take the next send slot; seconds until it comes."""
        now = self.clock()
        at = max(now, self.next_send, self.paused_until)
        self.next_send = at + spacing
        return at - now

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def paused_for(self) -> float:
        return max(self.paused_until - self.clock(), 0.0)


class FilePace(_MemoryPace):
    """The same schedule in a file every process on the machine shares (wall-clock times, an exclusive lock)."""

    clock = staticmethod(time.time)

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _update(self, change):
        with open(self.path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            try:
                state = json.loads(f.read() or "{}")
            except json.JSONDecodeError:  # a file cut by a crash: start the schedule again
                state = {}
            self.next_send, self.paused_until = state.get("next_send", 0.0), state.get("paused_until", 0.0)
            out = change()
            f.seek(0)
            f.truncate()
            f.write(json.dumps({"next_send": self.next_send, "paused_until": self.paused_until}))
            return out

    def reserve(self, spacing: float) -> float:
        return self._update(lambda: _MemoryPace.reserve(self, spacing))

    def pause(self, seconds: float) -> None:
        self._update(lambda: _MemoryPace.pause(self, seconds))

    def paused_for(self) -> float:
        return self._update(lambda: _MemoryPace.paused_for(self))


class RateLimiter:
    def __init__(
        self,
        requests_per_minute: float = 0,
        tokens_per_minute: float = 0,
        concurrency: int = 8,
        pace_file: str | Path | None = None,
    ):
        self.rpm, self.tpm = float(requests_per_minute or 0), float(tokens_per_minute or 0)
        self.max_in_flight = max(1, int(concurrency))
        # with no limit configured, the first request goes alone: its reply's headers may state the limits
        self._first_reply = not (requests_per_minute or tokens_per_minute)
        self.allowed = 1 if self._first_reply else self.max_in_flight
        self.stats = LimiterStats()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._pace = FilePace(Path(pace_file)) if pace_file else _MemoryPace()
        self._successes = 0
        self._backoff = 0.5
        self._configured = (self.rpm > 0, self.tpm > 0)
        self._adaptive_rpm = 0.0  # the pace found by refusals, while no limit is configured or stated
        self._sent: deque[float] = deque(maxlen=256)

    @contextmanager
    def slot(self, tokens: int):
        """Hold a request until the limits allow it to be sent; the body sends it."""
        waited = self._acquire(tokens)
        try:
            yield waited
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def _acquire(self, tokens: int) -> float:
        start = time.monotonic()
        with self._cond:
            while self._in_flight >= self.allowed:
                self._cond.wait(0.5)
            self._in_flight += 1
        while True:
            with self._cond:
                # take this send's share of the minute: the next send waits for it
                rpm = self.rpm or self._adaptive_rpm
                spacing = max(60.0 / rpm if rpm else 0.0, tokens * 60.0 / self.tpm if self.tpm else 0.0)
                delay = self._pace.reserve(spacing)
            time.sleep(max(delay, 0.0))
            with self._cond:
                paused = self._pace.paused_for()  # a 429 arrived meanwhile: its pause first, then a new slot
            if paused <= 0:
                break
            time.sleep(paused)
        with self._cond:
            self._sent.append(time.monotonic())
        waited = time.monotonic() - start
        self.stats.waited_s += waited
        return waited

    def observe(self, headers) -> None:
        """A reply arrived: learn limits, respect an exhausted quota, and widen the window after a streak."""
        with self._cond:
            self._learn(headers)
            for kind in ("requests", "tokens"):
                remaining = _number(headers, f"x-ratelimit-remaining-{kind}")
                reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}")) if headers else None
                if remaining is not None and remaining <= 0 and reset:
                    self._pace.pause(reset)
            self._backoff = 0.5
            if self._first_reply:
                self._first_reply, self.allowed = False, self.max_in_flight
            if self._adaptive_rpm:
                self._adaptive_rpm *= 1.01
            self._successes += 1
            if self.allowed < self.max_in_flight and self._successes >= self.allowed:
                self.allowed += 1
                self._successes = 0
            self._cond.notify_all()

    def rate_limited(self, headers) -> float:
        """A 429: every send waits; fewer requests in flight. Returns the wait imposed."""
        with self._cond:
            self._learn(headers)
            self.stats.rate_limited += 1
            wait = retry_after(headers)
            if wait is None:
                wait, self._backoff = self._backoff, min(self._backoff * 2, MAX_BACKOFF_S)
            self._pace.pause(min(wait, MAX_BACKOFF_S * 4))
            self._first_reply = False  # refused: concurrency grows back from here, one per streak of successes
            self.allowed = max(1, self.allowed // 2)
            self._successes = 0
            if not self.rpm:
                recent = [t for t in self._sent if t >= time.monotonic() - 5.0]
                if len(recent) >= 2:
                    sending = (len(recent) - 1) * 60.0 / max(recent[-1] - recent[0], 1e-3)
                    self._adaptive_rpm = 0.8 * min(sending, self._adaptive_rpm or sending)
            self._cond.notify_all()
            return wait

    def _learn(self, headers) -> None:
        learned = []
        if not self._configured[0]:
            limit = _number(headers, "x-ratelimit-limit-requests")
            if limit and limit != self.rpm:
                self.rpm = limit
                learned.append(f"{limit:,.0f} requests/min")
        if not self._configured[1]:
            limit = _number(headers, "x-ratelimit-limit-tokens")
            if limit and limit != self.tpm:
                self.tpm = limit
                learned.append(f"{limit:,.0f} tokens/min")
        if learned:
            self.stats.learned = ", ".join(learned)

    def describe(self) -> str:
        limits = [
            f"{self.rpm:,.0f} requests/min" if self.rpm else "",
            f"{self.tpm:,.0f} tokens/min" if self.tpm else "",
        ]
        limits = [x for x in limits if x]
        return ", ".join(limits) if limits else "no rate limit known"


_SHARED: dict[tuple, RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(
    endpoint: str,
    requests_per_minute: float,
    tokens_per_minute: float,
    concurrency: int,
    pace_dir: str | None = None,
    scope: str = "chat",
) -> RateLimiter:
    """One limiter per endpoint, `scope` and limits in this process: every task's teacher on that endpoint shares its
    pace, what it learned from headers, and its 429 pauses; with `pace_dir`, every process on the machine shares the
    pace (a file per endpoint, scope and limits). Scopes ("chat", "embeddings") pace apart: endpoints limit each
    model on its own."""
    key = (endpoint, scope, float(requests_per_minute or 0), float(tokens_per_minute or 0), int(concurrency), pace_dir)
    with _SHARED_LOCK:
        if key not in _SHARED:
            name = hashlib.sha256(repr(key[:4]).encode()).hexdigest()[:16]
            pace_file = Path(pace_dir) / f"{name}.json" if pace_dir else None
            _SHARED[key] = RateLimiter(requests_per_minute, tokens_per_minute, concurrency, pace_file)
        return _SHARED[key]


def _number(headers, name: str) -> float | None:
    if not headers:
        return None
    value = headers.get(name)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
