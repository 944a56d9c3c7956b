"""Screenshot the Dagster UI's asset graph with headless Chromium (Debian's `chromium` package).

    .venv/bin/scalellm demo                       # so the graph has materializations to show
    .venv/bin/python scripts/screenshot_ui.py     # writes docs/asset_graph.png

Starts dagster-webserver on 127.0.0.1 with the demo's DAGSTER_HOME, waits for it, screenshots the global asset
lineage page and stops the server.
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


def main(path: str = GRAPH, out: str = "docs/asset_graph.png") -> None:
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
    server = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1",
                               "-p", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
                            "--window-size=1600,1000", "--virtual-time-budget=20000",
                            f"--screenshot={ROOT / out}", f"http://127.0.0.1:{port}/{path}"],
                           check=True, capture_output=True, timeout=120)
        print(f"wrote {out}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main(*sys.argv[1:])
