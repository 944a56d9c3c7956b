"""A small OpenAI-compatible server on 127.0.0.1 for offline tests, with fault injection.

Chat completions answer the labelling prompt: each row's label comes from `labeler(text)`. Embeddings are
hashed bags of words. `faults` is a queue of what to do to the next requests, consumed one per chat request;
when it is empty, a seeded share `fault_rate` of requests get a fault drawn from `fault_mix`. Faults:
  HTTP errors:   "429" (Retry-After: 0.2), "429_bare" (no Retry-After), "500", "503"
  transport:     "slow" (2 s), "hang" (past any test timeout: 6 s), "drop" (connection closed mid-body)
  bad 200s:      "html" (text/html page), "cut_json" (JSON content type, body cut), "off_schema" (JSON that is
                 no chat completion), "empty_choices"
  bad answers:   "malformed" (answer JSON cut), "truncate" (half the rows), "no_label" (items without a label),
                 "out_of_set" (labels outside the set), "case" (labels in another case, padded)
  format:        "reject_schema" (400 naming response_format)
`limits` (a `Limits`) makes it enforce requests and tokens per minute as a token bucket holding `burst_seconds` of
each limit, as OpenAI does ("a 60,000 RPM limit may be enforced as 1,000 requests per second"): a chat or embeddings
request the buckets cannot pay for is answered 429 with `Retry-After`/`retry-after-ms` (when it is refused), and every
reply carries `x-ratelimit-limit/remaining/reset-requests/-tokens` unless `send_headers` is off. A chat request costs
one request and (message characters / 4, rounded up) + max_tokens tokens; an embeddings request one request and each
input's characters / 4. Admitted requests are in `admitted`. `embed_faults` queues faults ("500", "503", "drop")
for the next embeddings requests.
The Batch API (`/v1/files`: multipart upload, content download; `/v1/batches`: create, retrieve, list, cancel) answers
each line as a chat request. A batch's status moves one step per retrieve (validating, in_progress, finalizing,
then its ending) and stays in_progress while `hold_batches` is set. `batch_faults` queues what happens to the next
batches created: "failed_lines" (every third line answered 500, in the error file), "invalid_body" (every other
line's answer cut), "expired" (the first half of the lines answered, then expired), "failed" (validation failed,
no output). `supports_batches=False`: /files answers 404, as servers without a Batch API do.
`schema_support`: "json_schema" (OpenAI-like), "llama_cpp" (json_schema answered with HTTP 500 naming
response_format, json_object with a schema accepted) or "none" (any response_format: 400). `api_key`: when set,
other keys get 401.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


@dataclass
class Limits:
    rpm: float = 0
    tpm: float = 0
    burst_seconds: float = 1.0
    send_headers: bool = True


class _Bucket:
    def __init__(self, per_minute: float, burst_seconds: float, at_least: float = 1.0):
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate * burst_seconds, at_least)
        self.level, self.stamp = self.capacity, time.monotonic()

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        return max(cost - self.level, 0.0) / self.rate

    def reset_s(self) -> float:
        return (self.capacity - self.level) / self.rate


def request_cost(body: dict) -> int:
    if "input" in body:  # embeddings: each input's characters / 4
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return sum(math.ceil(len(str(t)) / 4) for t in inputs)
    chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    return math.ceil(chars / 4) + int(body.get("max_tokens") or 0)


class FakeOpenAI:
    def __init__(
        self,
        labeler: Callable[[str], str],
        latency_s: float = 0.0,
        embed_dim: int = 32,
        supports_schema: bool = True,
        schema_support: str | None = None,
        api_key: str | None = None,
        fault_rate: float = 0.0,
        fault_mix: tuple[str, ...] = (),
        seed: int = 0,
        limits: Limits | None = None,
        supports_batches: bool = True,
    ):
        self.labeler = labeler
        self.latency_s = latency_s
        self.embed_dim = embed_dim
        self.schema_support = schema_support or ("json_schema" if supports_schema else "none")
        self.api_key = api_key
        self.fault_rate, self.fault_mix = fault_rate, fault_mix
        self._rng = random.Random(seed)
        self.injected: list[str] = []  # every fault injected, in order
        self.faults: list[str] = []
        self.embed_faults: list[str] = []  # "500", "503" or "drop" for the next embeddings requests, in order
        self.requests: list[dict] = []  # every request body received, for assertions
        self.headers: list[dict] = []
        self.delivered: list[tuple[float, list[str]]] = []  # (monotonic time the reply was sent, its rows' texts)
        self.lock = threading.Lock()
        self.limits = limits
        self.admitted: list[tuple[float, int]] = []  # (monotonic time, tokens) of each request the limits let in
        self.arrivals: list[tuple[float, int]] = []  # (monotonic time, tokens) of every limited request received
        self.refused = 0  # requests answered 429 by the limits (not by injected faults)
        self._buckets: dict[str, _Bucket] = {}
        if limits and limits.rpm:
            self._buckets["requests"] = _Bucket(limits.rpm, limits.burst_seconds)
        if limits and limits.tpm:
            self._buckets["tokens"] = _Bucket(limits.tpm, limits.burst_seconds, at_least=limits.tpm / 60)
        self.supports_batches = supports_batches
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}  # batch id -> the batch object, plus "_lines" (its answers) and "_step"
        self.batch_faults: list[str] = []
        self.batch_lines: list[dict] = []  # every line of every batch created, for assertions
        self.hold_batches = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def chat_requests(self) -> list[dict]:
        return [r for r in self.requests if "messages" in r]

    def _admit(self, body: dict) -> tuple[float, dict]:
        """(seconds to wait, 0 when admitted, and the rate-limit headers) for a request under `limits`."""
        if not self._buckets:
            return 0.0, {}
        costs = {"requests": 1, "tokens": request_cost(body)}
        with self.lock:
            now = time.monotonic()
            self.arrivals.append((now, costs["tokens"]))
            for bucket in self._buckets.values():
                bucket.refill(now)
            wait = max(b.wait_for(costs[k]) for k, b in self._buckets.items())
            if wait > 0:
                self.refused += 1
            else:
                for kind, bucket in self._buckets.items():
                    bucket.level -= costs[kind]
                self.admitted.append((now, costs["tokens"]))
            headers = {}
            if self.limits.send_headers:
                limits = {"requests": self.limits.rpm, "tokens": self.limits.tpm}
                for kind, bucket in self._buckets.items():
                    headers[f"x-ratelimit-limit-{kind}"] = f"{limits[kind]:g}"
                    headers[f"x-ratelimit-remaining-{kind}"] = str(max(int(bucket.level), 0))
                    headers[f"x-ratelimit-reset-{kind}"] = f"{bucket.reset_s():.3f}s"
            return wait, headers

    def _next_fault(self) -> str | None:
        with self.lock:
            if self.faults:
                fault = self.faults.pop(0)
            elif self.fault_mix and self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.fault_mix)
            else:
                fault = None
            if fault:
                self.injected.append(fault)
            return fault

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                route = fake._batch_get(self.path)
                return self._json(*route) if isinstance(route[1], dict) else self._raw(*route)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "/files" in self.path or "/batches" in self.path:
                    return self._json(*fake._batch_post(self.path, raw, self.headers.get("Content-Type", "")))
                body = json.loads(raw)
                with fake.lock:
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.endswith("/embeddings"):
                    wait, limit_headers = fake._admit(body)
                    if wait > 0:
                        return self._refuse(wait, limit_headers)
                    with fake.lock:
                        fault = fake.embed_faults.pop(0) if fake.embed_faults else None
                    if fault in ("500", "503"):
                        return self._json(int(fault), {"error": {"message": "boom"}})
                    if fault == "drop":
                        return self._raw(200, b'{"object": "list", "data": [', "application/json", cut=True)
                    return self._json(200, fake._embeddings(body), limit_headers)
                if not self.path.endswith("/chat/completions"):
                    return self._json(404, {"error": {"message": "not found"}})
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    return self._json(
                        401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
                    )
                wait, limit_headers = fake._admit(body)
                if wait > 0:
                    return self._refuse(wait, limit_headers)
                self.limit_headers = limit_headers
                fault = fake._next_fault()
                if fault in ("429", "429_bare"):
                    return self._json(
                        429, {"error": {"message": "rate limited"}}, {"Retry-After": "0.2"} if fault == "429" else {}
                    )
                if fault in ("500", "503"):
                    return self._json(int(fault), {"error": {"message": "boom"}})
                if fault in ("slow", "hang"):
                    time.sleep(2.0 if fault == "slow" else 6.0)
                if fault == "drop":
                    return self._raw(200, b'{"id": "chatcmpl-x", "choices": [', "application/json", cut=True)
                if fault == "html":
                    return self._raw(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
                if fault == "cut_json":
                    return self._raw(
                        200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choi', "application/json"
                    )
                if fault == "off_schema":
                    return self._json(200, {"status": "ok", "detail": "queued"})
                rejection = fake._reject_format(body.get("response_format"), fault)
                if rejection:
                    return self._json(*rejection)
                time.sleep(fake.latency_s)
                reply = fake._chat(body, fault)
                if fault == "empty_choices":
                    reply["choices"] = []
                self._json(200, reply, self.limit_headers)
                with fake.lock:  # answered: when, and which texts
                    fake.delivered.append((time.monotonic(), _texts(body)))

            def _raw(self, status, data: bytes, content_type: str, cut: bool = False):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data) + (500 if cut else 0)))
                self.end_headers()
                self.wfile.write(data)
                if cut:  # the connection drops before the promised body is complete
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _refuse(self, wait: float, limit_headers: dict):
                return self._json(
                    429,
                    {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
                    {**limit_headers, "Retry-After": f"{wait:.3f}", "retry-after-ms": f"{wait * 1000:.0f}"},
                )

            def _json(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _reject_format(self, fmt: dict | None, fault: str | None):
        """(status, body) refusing the response_format, as servers of each kind do; None when it is accepted."""
        if fmt is None:
            return None
        if fault == "reject_schema" or self.schema_support == "none":
            return 400, {"error": {"message": "response_format json_schema is not supported"}}
        if self.schema_support == "llama_cpp" and fmt.get("type") != "json_object":
            return 500, {
                "error": {
                    "message": "1 validation error: ('body', 'response_format', 'type') Input should "
                    "be 'text' or 'json_object'",
                    "type": "internal_server_error",
                }
            }
        return None

    def label_for(self, text: str, body: dict) -> str:
        """One row's answer; a server answering several tasks' prompts tells them apart by `body`'s system prompt."""
        return self.labeler(text)

    def _chat(self, body: dict, fault: str | None) -> dict:
        user = body["messages"][-1]["content"]
        rows = [json.loads(line) for line in user.splitlines()[1:] if line.startswith("{")]
        questions = _questions(body.get("response_format"))
        if questions:  # a joint request (teachers/multi_task.py): one field per task, answered by `labeler(text, task)`
            answers = [{"id": r["id"], **{q: self.labeler(r["text"], q) for q in questions}} for r in rows]
        else:
            answers = [{"id": r["id"], "label": self.label_for(r["text"], body)} for r in rows]
        if fault == "truncate":
            answers = answers[: len(answers) // 2]
        elif fault == "no_label":
            answers = [{"id": a["id"]} for a in answers]
        elif fault == "out_of_set":
            answers = [{**a, "label": "maybe"} for a in answers]
        elif fault == "case":
            answers = [{**a, "label": f"  {a['label'].upper()} "} for a in answers]
        content = json.dumps({"answers": answers})
        if fault == "malformed":
            content = content[: len(content) // 2]
        elif "response_format" not in body:  # servers without schema support wrap the JSON in prose
            content = f"Sure! Here are the labels:\n{content}\nHope this helps."
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {
                "prompt_tokens": len(user) // 4,
                "completion_tokens": len(content) // 4,
                "total_tokens": len(user) // 4 + len(content) // 4,
            },
        }

    # The Batch API ---------------------------------------------------------------------------------------------
    def _batch_post(self, path: str, raw: bytes, content_type: str) -> tuple[int, dict]:
        if not self.supports_batches:
            return 404, {"error": {"message": f"Invalid URL (POST {path})"}}
        with self.lock:
            if path.endswith("/files"):
                parts = _multipart(raw, content_type)
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = parts["file"]
                return 200, {
                    "id": file_id,
                    "object": "file",
                    "bytes": len(parts["file"]),
                    "created_at": 0,
                    "filename": "batch.jsonl",
                    "purpose": parts["purpose"].decode(),
                    "status": "processed",
                }
            if path.endswith("/batches"):
                body = json.loads(raw)
                batch_id = f"batch_{len(self.batches) + 1}"
                fault = self.batch_faults.pop(0) if self.batch_faults else None
                lines = [json.loads(x) for x in self.files[body["input_file_id"]].decode().splitlines() if x]
                self.batch_lines.extend(lines)
                self.batches[batch_id] = {
                    "id": batch_id,
                    "object": "batch",
                    "endpoint": body["endpoint"],
                    "errors": None,
                    "input_file_id": body["input_file_id"],
                    "completion_window": body["completion_window"],
                    "status": "validating",
                    "output_file_id": None,
                    "error_file_id": None,
                    "created_at": 0,
                    "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                    "metadata": body.get("metadata"),
                    "_fault": fault,
                    "_step": 0,
                    "_answers": [self._batch_answer(line, i, fault) for i, line in enumerate(lines)],
                }
                return 200, _public(self.batches[batch_id])
            if path.endswith("/cancel"):
                batch = self.batches[path.split("/")[-2]]
                if batch["status"] not in ("completed", "expired", "failed", "cancelled"):
                    batch["status"] = "cancelling"
                return 200, _public(batch)
        return 404, {"error": {"message": "not found"}}

    def _batch_get(self, path: str):
        path = path.split("?")[0]
        with self.lock:
            if path.endswith("/content"):
                return 200, self.files[path.split("/")[-2]], "application/octet-stream"
            if path.endswith("/batches"):
                data = [_public(b) for b in reversed(self.batches.values())]
                return 200, {"object": "list", "data": data, "has_more": False}
            if "/batches/" in path:
                return 200, _public(self._advance(self.batches[path.split("/")[-1]]))
        return 404, {"error": {"message": "not found"}}

    def _batch_answer(self, line: dict, index: int, fault: str | None) -> dict:
        """One line's outcome: ("ok", chat completion) or ("error", status, message)."""
        body = line["body"]
        if fault == "failed_lines" and index % 3 == 2:
            return {"error": (500, "The server had an error processing your request")}
        rejection = self._reject_format(body.get("response_format"), None)
        if rejection:
            return {"error": (rejection[0], rejection[1]["error"]["message"])}
        return {"ok": self._chat(body, "malformed" if fault == "invalid_body" and index % 2 == 1 else None)}

    def _advance(self, batch: dict) -> dict:
        """One step of the batch's life per retrieve; its output and error files are written when it ends."""
        if batch["status"] in ("completed", "expired", "failed", "cancelled"):
            return batch
        if batch["status"] == "cancelling":
            return self._end(batch, "cancelled", len(batch["_answers"]) // 2)
        batch["_step"] += 1
        fault = batch["_fault"]
        if batch["_step"] == 1:
            if fault == "failed":
                batch["status"] = "failed"
                batch["errors"] = {
                    "object": "list",
                    "data": [
                        {
                            "code": "invalid_request",
                            "line": 1,
                            "message": "Model 'nope' does not exist or you do not have access to it.",
                        }
                    ],
                }
                return batch
            batch["status"] = "in_progress"
        elif self.hold_batches:
            batch["request_counts"]["completed"] = len(batch["_answers"]) // 3
        elif batch["_step"] == 2:
            batch["status"] = "finalizing"
        else:
            return self._end(
                batch,
                "expired" if fault == "expired" else "completed",
                len(batch["_answers"]) // 2 if fault == "expired" else len(batch["_answers"]),
            )
        return batch

    def _end(self, batch: dict, status: str, answered: int) -> dict:
        out, errors = [], []
        for answer, line in zip(batch["_answers"][:answered], self.batch_lines_of(batch)):
            if "ok" in answer:
                response = {"status_code": 200, "request_id": "req", "body": answer["ok"]}
                out.append({"id": "batch_req", "custom_id": line["custom_id"], "response": response, "error": None})
            else:
                code, message = answer["error"]
                response = {"status_code": code, "request_id": "req", "body": {"error": {"message": message}}}
                errors.append({"id": "batch_req", "custom_id": line["custom_id"], "response": response, "error": None})
        for name, lines in (("output_file_id", out), ("error_file_id", errors)):
            if lines:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode()
                batch[name] = file_id
        batch["status"] = status
        batch["request_counts"].update(completed=len(out), failed=len(errors))
        return batch

    def batch_lines_of(self, batch: dict) -> list[dict]:
        return [json.loads(x) for x in self.files[batch["input_file_id"]].decode().splitlines() if x]

    def _embeddings(self, body: dict) -> dict:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            vec = np.zeros(self.embed_dim)
            for word in str(text).lower().split():
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                vec[h % self.embed_dim] += 1.0 if (h >> 64) & 1 else -1.0
            if not vec.any():
                vec[0] = 1.0
            data.append({"object": "embedding", "index": i, "embedding": vec.tolist()})
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }


def _questions(fmt: dict | None) -> list[str]:
    """The task fields of a joint request's schema (every item property but id), or [] for a single task's."""
    schema = (fmt or {}).get("json_schema", {}).get("schema") or (fmt or {}).get("schema") or {}
    items = schema.get("properties", {}).get("answers", {}).get("items") or {}
    fields = [f for f in items.get("properties", {}) if f != "id"]
    return [] if fields == ["label"] else fields


def _texts(body: dict) -> list[str]:
    user = body["messages"][-1]["content"]
    return [json.loads(line)["text"] for line in user.splitlines()[1:] if line.startswith("{")]


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _multipart(raw: bytes, content_type: str) -> dict[str, bytes]:
    """The fields of a multipart/form-data body, by name."""
    from email.parser import BytesParser
    from email.policy import default

    message = BytesParser(policy=default).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }
