"""``smsgate bulk --dry-run``: counts, encodings, segments, countries and cost; nothing stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SMSGATE = str(Path(sys.executable).parent / "smsgate")

CONFIG = """
[providers.twilio]
url = "twilio://ACx:token@+15017122661"
[providers.uk]
url = "smsroute://KEY@MyApp"

[[routes]]
name = "uk"
countries = ["+44"]
providers = ["uk"]
[[routes]]
name = "default"
providers = ["twilio"]

[pricing]
currency = "EUR"
[pricing.per_segment.twilio]
"+1" = 0.01
"*" = 0.05
[pricing.per_segment.uk]
"+44" = 0.03
"""

ROWS = [
    ("+15555550100", "Ann"),
    ("+15555550101", "Bob"),
    ("+447700900123", "Chloe"),
    ("+33612345678", "Dédé 🎉"),  # an emoji: UCS-2
    ("+15555550102", "x" * 200),  # past 160 GSM-7 characters: two segments
    ("not-a-number", "Eve"),
    ("+4915123456789", "Franz"),  # no route-specific price: the "*" price of twilio
]


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SMSGATE_CONFIG"}
    return subprocess.run(
        [SMSGATE, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "smsgate.toml").write_text(CONFIG, encoding="utf-8")
    lines = ["phone,name", *(f"{to},{name}" for to, name in ROWS)]
    (tmp_path / "people.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def dry_run_json(folder: Path, *extra: str) -> dict[str, Any]:
    result = run(folder, "bulk", "people.csv", "--body", "Hi {name}", "--dry-run", "--json", *extra)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_counts_encodings_segments_countries_and_cost(folder: Path) -> None:
    before = sorted(os.listdir(folder))
    data = dry_run_json(folder)
    assert (data["total"], data["accepted"], data["refused"]) == (7, 6, 1)
    assert data["encodings"] == {
        "GSM-7": {"messages": 5, "segments": 6},
        "UCS-2": {"messages": 1, "segments": 1},
    }
    assert data["segments"] == 7
    assert data["segments_per_message"] == {"1": 5, "2": 1}
    countries = data["countries"]
    assert countries["US"] == {"messages": 3, "segments": 4, "cost": 0.04, "unpriced": 0}
    assert countries["GB"] == {"messages": 1, "segments": 1, "cost": 0.03, "unpriced": 0}
    assert countries["FR"]["cost"] == 0.05 and countries["DE"]["cost"] == 0.05
    assert data["cost"] == pytest.approx(0.04 + 0.03 + 0.05 + 0.05)
    assert data["currency"] == "EUR" and data["unpriced"] == 0
    assert data["reasons"] == {"to: not a phone number (letters or symbols)": 1}
    # nothing stored: no database, no rejects file
    assert sorted(os.listdir(folder)) == before


def test_the_text_summary(folder: Path) -> None:
    result = run(folder, "bulk", "people.csv", "--body", "Hi {name}", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("dry run, nothing stored: 7 rows; 6 would be queued, 1 refused")
    assert "  GSM-7: 5 message(s), 6 segment(s)" in out
    assert "  UCS-2: 1 message(s), 1 segment(s)" in out
    assert "estimated cost: 0.1700 EUR" in out
    assert "refused: 1 x to: not a phone number" in out


def test_without_prices_the_cost_is_unknown_and_says_what_to_add(folder: Path) -> None:
    (folder / "bare.toml").write_text('[providers.twilio]\nurl = "twilio://ACx:t@+1501"\n')
    result = run(
        folder, "bulk", "people.csv", "--body", "Hi", "--dry-run", "-c", str(folder / "bare.toml")
    )
    assert result.returncode == 0, result.stderr
    assert "estimated cost: unknown; add prices per segment" in result.stdout


def test_without_any_provider_a_dry_run_still_counts(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("phone\n+15555550100\n", encoding="utf-8")
    result = run(tmp_path, "bulk", "people.csv", "--body", "Hi", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accepted"] == 1
    assert os.listdir(tmp_path) == ["people.csv"]


def test_every_row_refused_exits_1(folder: Path) -> None:
    (folder / "bad.csv").write_text("phone\nnope\nnada\n", encoding="utf-8")
    result = run(folder, "bulk", "bad.csv", "--body", "Hi", "--dry-run")
    assert result.returncode == 1
    assert "0 would be queued, 2 refused" in result.stdout
