"""A text's digest: the key of every teacher answer and cached vector, and how a refresh tells changed rows."""

from __future__ import annotations

import hashlib


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


TEXT_HASH_SQL = "left(sha256({column}), 32)"  # `text_hash` in DuckDB SQL: the same digest, on every core
