"""The code blocks of docs/integrations/*.md marked ``<!-- tested: NAME -->``, for the tests that
run them (so the documentation shows exactly what is tested)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs" / "integrations"
_BLOCK = re.compile(r"<!-- tested: ([\w-]+) -->\n```python\n(.*?)```", re.S)


def snippet(page: str, name: str) -> str:
    text = (DOCS / page).read_text(encoding="utf-8")
    found = dict(_BLOCK.findall(text))
    if name not in found:
        raise AssertionError(f"docs/integrations/{page} has no block marked 'tested: {name}'")
    return found[name]


def run(page: str, name: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute the block in ``namespace`` (a fresh one by default) and return it."""
    scope: dict[str, Any] = {"__name__": f"docs_{page.removesuffix('.md')}_{name}"}
    scope.update(namespace or {})
    exec(compile(snippet(page, name), f"docs/integrations/{page}:{name}", "exec"), scope)
    return scope
