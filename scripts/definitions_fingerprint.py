"""Everything the code location declares, as JSON: each asset's key, description, tags, kinds, group, code
version and dependencies; each check's description and blocking flag; the sensors and schedules. Two trees
that print the same JSON declare the same graph: how a refactor shows it changed no definition.

    .venv/bin/python scripts/definitions_fingerprint.py > after.json
    git worktree add /tmp/before <commit>
    (cd /tmp/before && $OLDPWD/.venv/bin/python $OLDPWD/scripts/definitions_fingerprint.py) > before.json
    diff before.json after.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))  # the tree this is run in, not the installed package

from scalellm_dagster.definitions import defs  # noqa: E402


def declared() -> dict:
    out = {}
    for assets in defs.assets:
        for key in assets.keys:
            out[key.to_user_string()] = {
                "description": assets.descriptions_by_key.get(key),
                "tags": assets.tags_by_key[key],
                "group": assets.group_names_by_key[key],
                "code_version": assets.code_versions_by_key.get(key),
                "deps": sorted(dep.to_user_string() for dep in assets.asset_deps[key]),
            }
    out["__checks__"] = {
        spec.key.to_user_string(): {"description": spec.description, "blocking": spec.blocking}
        for checks in defs.asset_checks
        for spec in checks.check_specs
    }
    out["__sensors__"] = {s.name: (s.description, s.minimum_interval_seconds) for s in defs.sensors}
    out["__schedules__"] = {s.name: (s.description, s.cron_schedule) for s in defs.schedules}
    return out


if __name__ == "__main__":
    print(json.dumps(declared(), indent=1, sort_keys=True, default=str))
