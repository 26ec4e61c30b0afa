"""The documentation site builds in strict mode and documents every public name."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import smsgate

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs tools come with the [docs] and [test] extras")
    pytest.importorskip("mkdocstrings", reason="the docs tools come with the [docs] extra")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    # rendered from the docstrings, not written by hand
    assert 'id="smsgate.gateway.Gateway.send"' in api
    assert "one bad recipient never raises" in api
    for page in ("quickstart", "architecture", "outbox", "postgresql", "gateway", "cli"):
        assert (tmp_path / "site" / page / "index.html").exists(), page


def public_names() -> list[str]:
    return [name for name in smsgate.__all__ if name != "__version__"]


def test_every_public_name_is_in_the_api_reference() -> None:
    text = (DOCS / "reference" / "api.md").read_text(encoding="utf-8")
    documented = dict(
        (path.rsplit(".", 1)[1], path) for path in re.findall(r"^::: ([\w.]+)$", text, re.M)
    )
    assert sorted(documented) == sorted(public_names())
    for name, path in documented.items():
        module, _, attribute = path.rpartition(".")
        assert getattr(__import__(module, fromlist=[attribute]), attribute) is getattr(
            smsgate, name
        )


@pytest.mark.parametrize("name", public_names())
def test_every_public_name_and_method_has_a_docstring(name: str) -> None:
    value = getattr(smsgate, name)
    assert inspect.getdoc(value), name
    if not inspect.isclass(value):
        return
    for attribute, member in vars(value).items():
        if attribute.startswith("_"):
            continue
        if isinstance(member, classmethod | staticmethod):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if inspect.isfunction(member):
            assert inspect.getdoc(member), f"{name}.{attribute}"


def test_one_tutorial_page_per_seed_and_no_page_reaches_outside_the_repository() -> None:
    tutorials = sorted((DOCS / "tutorials").glob("*.md"))
    assert len(tutorials) == 5  # the five seed tutorials
    for page in DOCS.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert "../shared" not in text and "/work/" not in text, page
    for tutorial in tutorials:
        text = tutorial.read_text(encoding="utf-8")
        assert text.count("**The tutorial**") >= 2 and "**With smsgate**" in text, tutorial


def test_code_comments_cite_the_architecture_page_not_a_file_outside() -> None:
    for path in (ROOT / "src").rglob("*.py"):
        assert "DESIGN.md" not in path.read_text(encoding="utf-8"), path


def test_the_published_config_schema_is_up_to_date() -> None:
    import json

    from smsgate.config import json_schema

    published = json.loads((DOCS / "smsgate.schema.json").read_text(encoding="utf-8"))
    assert published == json_schema(), (
        "regenerate it: smsgate config schema > docs/smsgate.schema.json"
    )
