"""A small OpenAI-compatible server on 127.0.0.1 for offline tests, with fault injection.

Chat completions answer the labelling prompt: each row's label comes from `labeler(text)`. Embeddings are
hashed bags of words. `faults` is a queue of what to do to the next requests ("429", "500", "slow",
"malformed", "truncate", "reject_schema"), consumed one per chat request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


class FakeOpenAI:
    def __init__(self, labeler: Callable[[str], str], latency_s: float = 0.0, embed_dim: int = 32,
                 supports_schema: bool = True):
        self.labeler = labeler
        self.latency_s = latency_s
        self.embed_dim = embed_dim
        self.supports_schema = supports_schema
        self.faults: list[str] = []
        self.requests: list[dict] = []  # every request body received, for assertions
        self.headers: list[dict] = []
        self.lock = threading.Lock()
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

    def _next_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.endswith("/embeddings"):
                    return self._json(200, fake._embeddings(body))
                if not self.path.endswith("/chat/completions"):
                    return self._json(404, {"error": {"message": "not found"}})
                fault = fake._next_fault()
                if fault == "429":
                    return self._json(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0.2"})
                if fault == "500":
                    return self._json(500, {"error": {"message": "boom"}})
                if fault == "slow":
                    time.sleep(2.0)
                if "response_format" in body and (not fake.supports_schema or fault == "reject_schema"):
                    return self._json(400, {"error": {"message": "response_format json_schema is not supported"}})
                time.sleep(fake.latency_s)
                return self._json(200, fake._chat(body, fault))

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

    def _chat(self, body: dict, fault: str | None) -> dict:
        user = body["messages"][-1]["content"]
        rows = [json.loads(line) for line in user.splitlines()[1:] if line.startswith("{")]
        answers = [{"id": r["id"], "label": self.labeler(r["text"])} for r in rows]
        if fault == "truncate":
            answers = answers[: len(answers) // 2]
        content = json.dumps({"answers": answers})
        if fault == "malformed":
            content = content[: len(content) // 2]
        elif "response_format" not in body:  # servers without schema support wrap the JSON in prose
            content = f"Sure! Here are the labels:\n{content}\nHope this helps."
        return {
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": len(user) // 4, "completion_tokens": len(content) // 4,
                      "total_tokens": len(user) // 4 + len(content) // 4},
        }

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
        return {"object": "list", "data": data, "model": body["model"],
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}
