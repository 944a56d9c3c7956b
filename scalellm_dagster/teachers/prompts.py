"""The labelling prompt, its version, the JSON schema of the answer, and a tolerant parser for it."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.base import Answer

# Bump when the wording below changes: it is part of every cache key, so old answers are not reused.
PROMPT_TEMPLATE_VERSION = "v1"


def system_prompt(task: TaskSpec) -> str:
    lines = [
        "You are a careful data labeller.",
        task.instruction,
        "",
        "Allowed labels (answer with the label name exactly as written):",
        *[f"- {name}: {desc}" for name, desc in task.labels.items()],
    ]
    if task.few_shot:
        lines += ["", "Examples:"]
        lines += [f"- text: {json.dumps(ex.text)} -> label: {ex.label}" for ex in task.few_shot]
    lines += [
        "",
        'Reply with JSON only: {"answers": [{"id": "<row id>", "label": "<label>"}, ...]}, '
        "one entry for every row, with each row's id exactly as given.",
    ]
    return "\n".join(lines)


def user_prompt(rows: list[tuple[str, str]]) -> str:
    body = "\n".join(json.dumps({"id": key, "text": text}, ensure_ascii=False) for key, text in rows)
    return f"Label these rows:\n{body}"


def prompt_version(task: TaskSpec) -> str:
    return hashlib.sha256(f"{PROMPT_TEMPLATE_VERSION}\n{system_prompt(task)}".encode()).hexdigest()[:12]


def answer_schema(task: TaskSpec, keys: list[str] | None = None) -> dict:
    """The answer's JSON schema; with `keys`, ids are limited to the batch's (a grammar-constrained small model
    otherwise invents ids, and its answer then matches no row)."""
    return answers_schema({"label": task.label_names}, keys)


def answers_schema(fields: dict[str, list[str]], keys: list[str] | None = None) -> dict:
    """`{"answers": [{"id": ..., <field>: <one of its labels>, ...}]}`: one field per question asked."""
    properties = {"id": {"type": "string", **({"enum": list(keys)} if keys else {})}}
    properties.update({name: {"type": "string", "enum": labels} for name, labels in fields.items()})
    return {
        "name": "labels",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "answers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": properties,
                        "required": list(properties),
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["answers"],
            "additionalProperties": False,
        },
    }


_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_LINE = re.compile(r'^\s*"?(?P<id>[^":\s]+)"?\s*[:=\-]+>?\s*"?(?P<label>[^"\n]+?)"?\s*,?\s*$')


def parse_answers(content: str | None, keys: list[str], labels: list[str]) -> dict[str, Answer]:
    """Answers for the rows named in `content`; rows it does not mention, or mentions without a label, are left
    out (not answers: they are asked again).

    An answer is matched to the task's labels exactly first, then through `LabelMatcher`'s documented
    normalisations, one at a time. Anything else outside the set is kept as an invalid answer with its raw text: it
    is never mapped to a near label, because that would hide the teacher's mistakes from the checks.
    """
    content = content or ""
    wanted = set(keys)
    stripped = {k.strip(): k for k in keys if k.strip() not in wanted}  # a key padded with spaces, echoed bare
    match = LabelMatcher(labels)
    pairs = _json_pairs(content)
    if pairs is None:
        pairs = [(m.group("id"), m.group("label")) for m in map(_LINE.match, content.splitlines()) if m]
    answers: dict[str, Answer] = {}
    for key, label in pairs:
        key = str(key)
        key = key if key in wanted else stripped.get(key.strip(), key.strip())
        if key not in wanted or key in answers or not isinstance(label, str):
            continue
        answers[key] = Answer(label=match(label), raw=label)
    return answers


_QUOTES = "\"'`“”‘’«»"


class LabelMatcher:
    """The label an answer names, or None. Tried in order, each only when it names exactly one label:
    1. the label exactly as written;
    2. the same in Unicode normal form NFC (an answer in decomposed form, NFD, names the composed label);
    3. and with surrounding whitespace set aside;
    4. and case set aside (`casefold`);
    5. and surrounding quote marks set aside, on both the answer and the label (a label that is itself quoted
       still matches its unquoted answer, and the quotes inside a label are always kept).
    Two labels that look the same at a level (`Yes` and `yes` at 4) are told apart only at the levels above."""

    LEVELS = (
        lambda t: unicodedata.normalize("NFC", t),
        lambda t: unicodedata.normalize("NFC", t).strip(),
        lambda t: unicodedata.normalize("NFC", t).strip().casefold(),
        lambda t: unicodedata.normalize("NFC", t).strip().strip(_QUOTES).strip().casefold(),
    )

    def __init__(self, labels: list[str]):
        self.labels = set(labels)
        self.tables = []
        for level in self.LEVELS:
            keys = [level(label) for label in labels]
            self.tables.append({k: label for k, label in zip(keys, labels) if keys.count(k) == 1})

    def __call__(self, answer: str) -> str | None:
        if answer in self.labels:
            return answer
        for level, table in zip(self.LEVELS, self.tables):
            found = table.get(level(answer))
            if found is not None:
                return found
        return None


def _json_pairs(content: str) -> list[tuple[str, str]] | None:
    match = _JSON_OBJECT.search(content)
    if not match:
        return None
    try:
        doc = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    items = doc.get("answers") if isinstance(doc, dict) else None
    if isinstance(items, list):
        return [(str(i.get("id")), i.get("label")) for i in items if isinstance(i, dict) and "id" in i]
    if isinstance(doc, dict):  # {"<id>": "<label>", ...} is a common shape from servers without schema support
        return [(str(k), v) for k, v in doc.items() if isinstance(v, str)]
    return None


class PromptedTeacher:
    """What every teacher of a task asked with this module's prompt shares: the prompt's version (part of every
    cache key) and the price of its tokens. Subclasses set `task` and `_prices` (USD per million in, out)."""

    task: TaskSpec
    _prices: tuple[float, float]

    @property
    def prompt_version(self) -> str:
        return prompt_version(self.task)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self._prices[0] + completion_tokens * self._prices[1]) / 1e6
