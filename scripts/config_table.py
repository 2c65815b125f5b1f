"""Print the configuration table of docs/configuration.md from Pulumi.yaml (a test keeps
them equal).

    python scripts/config_table.py            # print it
    python scripts/config_table.py --write    # replace the table in docs/configuration.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HEADER = "| key | type | default | description |\n|---|---|---|---|\n"


def _default(value) -> str:
    if value in ("", None):
        return "(empty)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`" if value != [] else "`[]`"


def table() -> str:
    config = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    rows = []
    for name, entry in config.items():
        text = entry["description"].replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
        rows.append(f"| `{name}` | {entry['type']} | {_default(entry.get('default'))} | {text} |")
    return HEADER + "\n".join(rows) + "\n"


def replace_in(readme: str) -> str:
    start = readme.index(HEADER)
    end = readme.index("\n\n", start)
    return readme[:start] + table().rstrip("\n") + readme[end:]


if __name__ == "__main__":
    if "--write" in sys.argv:
        path = REPO / "docs" / "configuration.md"
        path.write_text(replace_in(path.read_text()))
    else:
        print(table(), end="")
