"""`python -m scalellm_dagster.teachers.llama_smoke`: after installing the llm extra, one completion with the
packaged model, in a child process; a crash (a llama.cpp built for another CPU) fails the install in one line."""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wheelhouse", default="", help="where the llama-cpp-python wheel came from (for the hint)")
    args = parser.parse_args(argv)
    from scalellm_dagster.teachers.local import model_worker
    from scalellm_dagster.teachers.local_worker import LocalModelDied, LocalModelError

    rebuild = (
        f"remove {args.wheelhouse} and run `make llm` again to rebuild it portably"
        if args.wheelhouse
        else "rebuild llama-cpp-python with CMAKE_ARGS=-DGGML_NATIVE=OFF"
    )
    start = time.perf_counter()
    worker = model_worker(None, timeout_seconds=120)
    try:
        out = worker.request(messages=[{"role": "user", "content": "Say OK."}], temperature=0, max_tokens=4)
    except (LocalModelDied, LocalModelError) as exc:
        print(
            f"llm smoke test FAILED: {exc}. The llama-cpp-python wheel does not run on this CPU: {rebuild}",
            file=sys.stderr,
        )
        return 1
    finally:
        worker.close()
    text = out["choices"][0]["message"]["content"]
    print(
        f"llm smoke test: SmolLM2 answered {text!r} in a child process ({time.perf_counter() - start:.1f}s, "
        "model load included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
