"""Screenshot the Dagster UI pages README's tour shows, with headless Chromium (Debian's `chromium` package).

    .venv/bin/scalellm demo                       # so the pages have runs and materializations to show
    .venv/bin/python scripts/screenshot_ui.py     # writes docs/asset_graph.png and docs/ui/*.png

Starts dagster-webserver on 127.0.0.1 with the demo's DAGSTER_HOME, waits for it, screenshots each page and stops
the server. One page only: `scripts/screenshot_ui.py <path> <out.png>`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# Everything downstream of the corpus: both task branches hanging off the one embeddings asset.
GRAPH = "assets/corpus?view=lineage&lineageScope=downstream&lineageDepth=10"
PAGES = [
    (GRAPH, "docs/asset_graph.png"),
    ("overview/activity/timeline", "docs/ui/timeline.png"),
    ("assets/intent/model_selection_report", "docs/ui/report_overview.png"),
    ("assets/intent/model_selection_report?view=events", "docs/ui/report_events.png"),
    ("assets/intent/predictions?view=checks", "docs/ui/predictions_checks.png"),
    ("assets/intent/labeled_sample", "docs/ui/sample_overview.png"),
    ("assets/intent/labeled_sample?view=events", "docs/ui/sample_events.png", 3400),  # tall: the suspects are last
    ("assets/topic/drift_audit?view=events", "docs/ui/drift_audit_events.png"),
]
PLOTS = ["intent_learning_curves.png", "intent_accuracy_vs_time.png"]


def main(*page: str) -> None:
    pages = [tuple(page)] if page else PAGES
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("chromium not found: apt-get install chromium")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DAGSTER_HOME": os.environ.get("DAGSTER_HOME", str(ROOT / "data" / "dagster_home"))}
    sys.path.insert(0, str(ROOT))
    from scalellm_dagster.settings import ensure_dagster_home

    ensure_dagster_home(Path(env["DAGSTER_HOME"]))
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        for path, out, *height in pages:
            (ROOT / out).parent.mkdir(parents=True, exist_ok=True)
            _shoot(chromium, f"http://127.0.0.1:{port}/{path}", ROOT / out, height[0] if height else 1000)
            print(f"wrote {out}")
        # The Data Docs page the predictions check links to (`validation_result`): the demo's latest validation.
        site = ROOT / "data" / "gx" / "uncommitted" / "data_docs" / "local_site" / "validations"
        pages = sorted(site.glob("intent/predictions/predictions_cover_corpus/*/*/*.html"), key=lambda p: p.parent.name)
        if pages and not page:
            _shoot(chromium, pages[-1].as_uri(), ROOT / "docs" / "ui" / "data_docs_validation.png", 2300)
            print("wrote docs/ui/data_docs_validation.png")
        # The plots the report's metadata opens (Show Markdown), as the demo wrote them beside the warehouse.
        for name in PLOTS:
            source = ROOT / "data" / "reports" / name
            if source.exists():
                shutil.copyfile(source, ROOT / "docs" / "ui" / name)
                print(f"copied docs/ui/{name}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def _shoot(chromium: str, url: str, out: Path, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                f"--window-size=1600,{height}",
                "--virtual-time-budget=20000",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
