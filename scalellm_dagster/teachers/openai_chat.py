"""An LLM teacher over any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, LM Studio,
llama.cpp), or over an in-process llama.cpp model through the same interface (`teachers.local`)."""

from __future__ import annotations

import json
import random
import threading
import time

import openai

from scalellm_dagster.rate_limit import RateLimiter, parse_duration, request_tokens, send
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.base import BatchResult, MalformedReplyError, TeacherFatalError, TeacherRequestError
from scalellm_dagster.teachers.prompts import (
    PromptedTeacher,
    answer_schema,
    parse_answers,
    system_prompt,
    user_prompt,
)
from scalellm_dagster.teachers.structured_output import (
    FORMS,
    answer_token_bound,
    is_format_rejection,
    response_format,
)

# No retry fixes these: the key, the permissions, the model name or the request itself is wrong.
_FATAL = (
    openai.AuthenticationError,
    openai.PermissionDeniedError,
    openai.NotFoundError,
    openai.BadRequestError,
    openai.UnprocessableEntityError,
)
_ADVICE = {
    401: "set OPENAI_API_KEY to a key this endpoint accepts",
    403: "the key lacks permission for this model or endpoint",
    404: "check OPENAI_BASE_URL (it usually ends in /v1) and SCALELLM_TEACHER_MODEL",
}


class OpenAIChatTeacher(PromptedTeacher):
    """Asks for a JSON answer whose label field is an enum of the task's labels (and id an enum of the batch's).

    Structured output: the first request probes the forms in `structured_output.FORMS` order, without
    retrying a refusal, and the first the server accepts is kept for the rest of the run (recorded per request).
    Completion tokens are bounded by what the batch's answer can need. Every send passes the `RateLimiter`
    (requests and tokens per minute, configured or learned from the endpoint's headers; a 429 holds every send for
    its `Retry-After` and narrows concurrency): a 429 is waited out, not counted as a failure, up to
    `MAX_RATE_LIMITED` times a request. 5xx, timeouts and dropped connections are retried `max_retries` times with
    backoff (honouring `Retry-After`), as are replies that are not a chat completion (HTML, a cut body, no choices).
    The `openai` client's own retries are off: they would bypass the limiter.
    """

    provider = "openai"

    def __init__(
        self,
        task: TaskSpec,
        client: openai.OpenAI,
        model: str,
        price_in_per_mtok: float = 0.0,
        price_out_per_mtok: float = 0.0,
        forms: tuple[str, ...] = FORMS,
        *,
        endpoint: str | None = None,
        limiter: RateLimiter | None = None,
    ):
        self.task = task
        self.client = client
        self.model = model
        self.endpoint = endpoint or str(getattr(client, "base_url", "the endpoint"))
        self._prices = (price_in_per_mtok, price_out_per_mtok)
        self._system = system_prompt(task)
        self._forms = tuple(forms)
        self._form: str | None = self._forms[0] if len(self._forms) == 1 else None
        self._probe_lock = threading.Lock()
        self._fatal: str | None = None  # once the endpoint refuses us for good, no request is sent again
        self.max_retries = int(getattr(client, "max_retries", 2))
        self.sender = client.with_options(max_retries=0)
        self.limiter = limiter or RateLimiter()

    def label_batch(self, rows: list[tuple[str, str]]) -> BatchResult:
        if self._fatal:
            raise TeacherFatalError(self._fatal)
        keys = [k for k, _ in rows]
        request = self._request(rows, keys)
        schema = self._schema(keys)
        formats = {form: response_format(form, schema, keys) for form in self._forms}
        start = time.perf_counter()
        try:
            response, form, notes = self._complete(request, formats)
        except _FATAL as exc:
            self._fatal = self._fatal_line(exc)
            raise TeacherFatalError(self._fatal) from exc
        except openai.APIError as exc:  # 429, 5xx, timeouts, dropped connections: the client retried them
            raise TeacherRequestError(
                f"{self.endpoint}: {type(exc).__name__}: {_describe(exc)} (after {self.max_retries} retries)"
                + (
                    f"; {self.limiter.stats.rate_limited} rate-limited replies so far"
                    if self.limiter.stats.rate_limited
                    else ""
                )
            ) from exc
        usage = getattr(response, "usage", None)
        return self._result(
            response.choices[0].message.content,
            keys,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            seconds=time.perf_counter() - start,
            notes=notes,
            response_format=form,
        )

    def request_body(self, rows: list[tuple[str, str]]) -> dict:
        """The body `label_batch` sends for `rows`, in the structured-output form this run settled on (before any
        answer: the first form to try). The Batch API's lines are these bodies, so answers match the synchronous
        path's and share its cache."""
        keys = [k for k, _ in rows]
        fmt = response_format(self.settled_form, self._schema(keys), keys)
        return {**self._request(rows, keys), **({"response_format": fmt} if fmt else {})}

    @property
    def settled_form(self) -> str:
        return self._form or self._forms[0]

    def reply_result(self, reply: dict, keys: list[str], seconds: float = 0.0) -> BatchResult:
        """A chat completion received another way (a Batch API output line) read as `label_batch` reads its own;
        a reply that is no chat completion answers no row."""
        choices = reply.get("choices") if isinstance(reply, dict) else None
        message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
        usage = (reply.get("usage") if isinstance(reply, dict) else None) or {}
        return self._result(
            message.get("content") if isinstance(message, dict) else None,
            keys,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            seconds=seconds,
            response_format=self.settled_form,
        )

    def _request(self, rows: list[tuple[str, str]], keys: list[str]) -> dict:
        return {
            "model": self.model,
            "messages": [{"role": "system", "content": self._system}, {"role": "user", "content": user_prompt(rows)}],
            "temperature": 0,
            "max_tokens": self._max_tokens(keys),
        }

    # What a subclass asking another question changes (teachers.multi_task: every task's question at once).
    def _max_tokens(self, keys: list[str]) -> int:
        return answer_token_bound(keys, self.task.label_names)

    def _schema(self, keys: list[str]) -> dict:
        return answer_schema(self.task, keys)

    def _result(self, content: str | None, keys: list[str], **measured) -> BatchResult:
        return BatchResult(answers=parse_answers(content, keys, self.task.label_names), **measured)

    def _complete(self, request: dict, formats: dict):
        if self._form is None:
            with self._probe_lock:  # one probe per run; concurrent requests wait for its outcome
                if self._fatal:
                    raise TeacherFatalError(self._fatal)
                if self._form is None:
                    return self._probe(request, formats)
        return self._call(request, formats[self._form]), self._form, []

    def _probe(self, request: dict, formats: dict):
        notes = []
        for form in self._forms:
            try:
                response = self._call(request, formats[form], retry_faults=False)  # a rejection: no retry
            except openai.APIStatusError as exc:
                if form != self._forms[-1] and is_format_rejection(exc):
                    notes.append(f"server rejected response_format {form} (HTTP {exc.status_code}); trying the next")
                    continue
                if isinstance(exc, _FATAL):
                    raise
                _wait_retry_after(exc)
                response = self._call(request, formats[form])  # a passing fault: the usual retries
            except (openai.APIConnectionError, openai.APITimeoutError):
                response = self._call(request, formats[form])
            self._form = form
            notes.append(f"structured output: {form}")
            return response, form, notes
        raise AssertionError("unreachable: the last form is always tried for real")

    def _call(self, request: dict, fmt: dict | None, retry_faults: bool = True):
        kwargs = {**request, **({"response_format": fmt} if fmt else {})}
        delay, last = 0.5, ""
        for attempt in range(self.max_retries + 1):
            try:
                response = self._send(kwargs, retry_faults)
                choices = getattr(response, "choices", None)
                if choices and getattr(choices[0], "message", None) is not None:
                    return response
                last = f"a {type(response).__name__} that is not a chat completion" + (
                    f": {response[:80]!r}" if isinstance(response, str) else " (no choices)"
                )
            except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
                last = f"an unreadable body ({type(exc).__name__}: {str(exc)[:80]})"
            if attempt < self.max_retries:
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 8.0)
        raise MalformedReplyError(f"{self.endpoint}: malformed reply after {self.max_retries} retries: {last}")

    def _send(self, kwargs: dict, retry_faults: bool):
        return send(
            self.limiter, lambda: _create(self.sender, kwargs), request_tokens(kwargs), self.max_retries, retry_faults
        )

    def _fatal_line(self, exc: openai.APIStatusError) -> str:
        advice = _ADVICE.get(exc.status_code, "the server rejected the request; retrying cannot help")
        return (
            f"teacher endpoint {self.endpoint} (model {self.model}): HTTP {exc.status_code} {_describe(exc)} — {advice}"
        )


def _create(client, kwargs: dict):
    """(the reply, its headers); a client without raw responses (the local model's) has no headers."""
    raw = getattr(client.chat.completions, "with_raw_response", None)
    if raw is None:
        return client.chat.completions.create(**kwargs), {}
    reply = raw.create(**kwargs)
    return reply.parse(), reply.headers


def _wait_retry_after(exc: openai.APIStatusError, cap: float = 60.0) -> None:
    """Honour a `Retry-After` (seconds) that came with a fault the probe did not retry itself."""
    seconds = parse_duration(exc.response.headers.get("retry-after"))
    if seconds:
        time.sleep(min(seconds, cap))


def _describe(exc: openai.APIError) -> str:
    """The server's own message, first line only."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or getattr(exc, "message", None) or exc).strip().splitlines()[0][:200]
