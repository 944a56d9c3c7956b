#!/usr/bin/env bash
# Debian's chromium, for the test that opens the checks' Data Docs pages in a real headless browser (and for
# scripts/screenshot_ui.py). Where apt-get is not usable (not root, not Debian), says so; that test then skips.
set -uo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium (the Data Docs browser test)"
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
        || echo "apt-get could not install chromium: the Data Docs browser test will be skipped" >&2
else
    echo "chromium not found and apt-get needs root: the Data Docs browser test will be skipped" \
        "(install chromium to run it)" >&2
fi
