from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from smsgate.providers import available_providers
from smsgate.providers.base import Capabilities
from smsgate.providers.table import (
    COLUMNS,
    END,
    README_END,
    README_START,
    START,
    current_table,
    main,
    render,
    render_readme,
    replace_table,
    row,
)
from smsgate.providers.vonage import VonageProvider

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"
README = Path(__file__).resolve().parents[2] / "README.md"


def test_committed_table_is_the_generated_one() -> None:
    assert current_table(DOC.read_text(encoding="utf-8")) == render(), (
        "docs/providers.md is out of date: run python -m smsgate.providers.table --write"
    )


def test_every_available_provider_has_one_row() -> None:
    table = render()
    for provider in available_providers():
        assert table.count(f"| {provider.display_name} (`{provider.scheme}`) |") == 1
    lines = [line for line in table.strip().splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(available_providers())
    assert all(line.count(" | ") == len(COLUMNS) - 1 for line in lines[2:])


def test_each_providers_url_options_are_listed_with_their_doc() -> None:
    table = render()
    for provider in available_providers():
        section = table.split(f"**{provider.display_name}** (`{provider.scheme}://`)")[1]
        section = section.split("\n\n**")[0]
        for option in provider.declared_options().values():
            assert f"- `{option.name}` ({option.kind}): {option.doc}" in section


def test_rows_follow_the_declared_capabilities() -> None:
    class Changed(VonageProvider):
        capabilities = dataclasses.replace(
            VonageProvider.capabilities,
            mms=True,
            hlr=True,
            reconcile=True,
            dedupes=True,
            url_form="vonage://X|Y@Z",
        )

    before, after = row(VonageProvider), row(Changed)
    index = {name: i for i, name in enumerate(COLUMNS)}
    assert before[index["MMS"]] == "—" and after[index["MMS"]] == "yes"
    assert after[index["HLR"]] == "yes"
    assert (before[index["Reconcile"]], after[index["Reconcile"]]) == ("—", "yes")
    assert "deduplicated" in after[index["Idempotency"]]
    assert "X\\|Y" in render([Changed])  # a pipe cannot break the table

    class Silent(VonageProvider):
        capabilities = dataclasses.replace(Capabilities(), url_form="")

    silent = row(Silent)
    assert silent[index["Delivery webhooks (verification)"]] == "—"
    assert silent[index["URL form"]] == "—" and silent[index["Idempotency"]] == "—"


def test_write_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "providers.md"
    doc.write_text(f"# notes\n\n{START}\nstale\n{END}\n\nmore notes\n", encoding="utf-8")
    assert main(["--check", "--doc", str(doc)]) == 1
    assert main(["--write", "--doc", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# notes\n") and text.endswith("more notes\n")
    assert current_table(text) == render()
    assert main(["--check", "--doc", str(doc)]) == 0
    (tmp_path / "bare.md").write_text("no markers\n", encoding="utf-8")
    assert main(["--write", "--doc", str(tmp_path / "bare.md")]) == 2
    with pytest.raises(ValueError):
        replace_table("no markers", "x")


def test_module_entry_point_prints_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "smsgate.providers.table"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert out == render()


def test_the_readme_table_is_the_generated_one() -> None:
    assert current_table(README.read_text(encoding="utf-8")) == render_readme(), (
        "README.md's provider table is out of date: run python -m smsgate.providers.table --write"
    )


def test_the_readme_table_has_each_providers_url_and_emulator() -> None:
    table = render_readme()
    for provider in available_providers():
        line = next(x for x in table.splitlines() if x.startswith(f"| {provider.display_name} ("))
        assert f"`{provider.capabilities.url_form}`" in line
        assert f"`smsgate emulate {provider.scheme}`" in line

    class NoMms(VonageProvider):
        capabilities = dataclasses.replace(VonageProvider.capabilities, mms=False, hlr=True)

    assert "HLR" in render_readme([NoMms]) and "MMS" not in render_readme([NoMms])


def test_write_and_check_cover_the_readme(tmp_path: Path) -> None:
    docs, readme = tmp_path / "providers.md", tmp_path / "README.md"
    docs.write_text(f"# docs\n{START}\nstale\n{END}\n", encoding="utf-8")
    readme.write_text(f"# readme\n{README_START}\nstale\n{README_END}\ntail\n", encoding="utf-8")
    both = ["--doc", str(docs), "--doc", str(readme)]
    assert main(["--check", *both]) == 1
    docs.write_text(replace_table(docs.read_text(encoding="utf-8"), render()), encoding="utf-8")
    assert main(["--check", *both]) == 1  # the README alone is stale: still a failure
    assert main(["--write", *both]) == 0
    assert main(["--check", *both]) == 0
    text = readme.read_text(encoding="utf-8")
    assert current_table(text) == render_readme() and text.endswith("tail\n")
