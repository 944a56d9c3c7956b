"""The README and docs/ link to each other by file and heading: every relative link must land on a file that exists
and, with a #fragment, on one of its headings (as GitHub makes the anchors)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    anchors, fenced = set(), False
    for line in path.read_text().splitlines():
        fenced ^= line.startswith("```")
        if not fenced and re.match(r"^#{1,6} ", line):
            text = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_relative_link_of_the_docs_lands_on_a_file_and_heading():
    broken = []
    for page in [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif fragment and file.suffix == ".md" and fragment not in _anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_the_code_keeps_its_shape():
    """No function takes more than 6 positional parameters; no asset module imports another (they share the task's
    state through the TaskStore resource); the README stays a page a newcomer reads (the rest is in docs/)."""
    import ast

    crowded, coupled = [], []
    for path in (ROOT / "scalellm_dagster").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(positional) > 6:
                    crowded.append(f"{path.relative_to(ROOT)}: {node.name}")
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if (
                path.name.endswith("_asset.py")
                and module
                and re.fullmatch(r"scalellm_dagster\.assets\.\w+_asset", module)
            ):
                coupled.append(f"{path.relative_to(ROOT)} imports {module}")
    assert crowded == [] and coupled == []
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
