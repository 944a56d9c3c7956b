"""Writes docs/configuration.md from the settings' own metadata (`Settings`, `DOCS`)."""

from pathlib import Path

from scalellm_dagster.settings import reference_markdown

TARGET = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

if __name__ == "__main__":
    TARGET.write_text(reference_markdown())
    print(f"wrote {TARGET}")
