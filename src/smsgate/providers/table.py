"""The provider table of ``docs/providers.md``, generated from each provider's descriptor
(``Capabilities`` and URL options).

The table is written from the classes the registry can import, so it cannot drift from the code
(a test compares the committed table with a fresh one)::

    python -m smsgate.providers.table            # print the table
    python -m smsgate.providers.table --write    # replace it in docs/providers.md
    python -m smsgate.providers.table --check    # exit 1 when docs/providers.md is stale

Only the part between the two markers is generated; the notes around it are written by hand.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smsgate.providers.base import Capabilities, Provider

START = "<!-- provider-table:start (generated: python -m smsgate.providers.table --write) -->"
END = "<!-- provider-table:end -->"
DEFAULT_DOC = Path("docs/providers.md")

COLUMNS = (
    "Provider",
    "SMS",
    "MMS",
    "Bulk",
    "Status fetch",
    "Delivery webhooks (verification)",
    "Inbound",
    "Idempotency",
    "HLR / lookup",
    "URL form",
)
YES, NO = "yes", "—"


def _flag(value: bool) -> str:
    return YES if value else NO


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row(provider: type[Provider]) -> list[str]:
    """One provider's cells, in :data:`COLUMNS` order."""
    caps: Capabilities = provider.capabilities
    webhooks = NO
    if caps.delivery_webhooks:
        webhooks = f"yes: {caps.webhook_verification}" if caps.webhook_verification else "yes"
    idempotency = caps.idempotency or NO
    if caps.dedupes:
        idempotency += "; repeats deduplicated by the provider"
    return [
        f"{provider.display_name} (`{provider.scheme}`)",
        _flag(caps.sms),
        _flag(caps.mms),
        _flag(caps.bulk),
        _flag(caps.status_fetch),
        webhooks,
        _flag(caps.inbound),
        idempotency,
        _flag(caps.hlr),
        f"`{caps.url_form}`" if caps.url_form else NO,
    ]


def render(providers: Iterable[type[Provider]] | None = None) -> str:
    """The Markdown table for ``providers`` (every provider in this build by default)."""
    if providers is None:
        from smsgate.providers import available_providers

        providers = available_providers()
    providers = list(providers)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(c) for c in row(p)) + " |" for p in providers]
    lines += ["", "### URL options", ""]
    lines.append(
        "Any other option is refused where the URL is read, naming the closest one. Options "
        "marked secret, and the user part where it is a key, never appear in logs, errors or "
        "`config check`."
    )
    for provider in providers:
        lines += ["", f"**{provider.display_name}** (`{provider.scheme}://`)", ""]
        for option in sorted(provider.declared_options().values(), key=lambda o: o.name):
            lines.append(f"- `{option.name}` ({option.kind}): {option.doc}")
    return "\n".join(lines) + "\n"


def replace_table(document: str, table: str) -> str:
    """``document`` with the text between the markers replaced by ``table``."""
    start, end = document.find(START), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document has no {START!r} ... {END!r} block to replace")
    return document[: start + len(START)] + "\n" + table + document[end:]


def current_table(document: str) -> str:
    """The table the document holds now (between the markers)."""
    start, end = document.find(START), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document has no {START!r} ... {END!r} block")
    return document[start + len(START) : end].lstrip("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m smsgate.providers.table",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--write", action="store_true", help="update the table in the document")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the document's table is not the generated one",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=DEFAULT_DOC,
        help=f"the document to update or check (default {DEFAULT_DOC})",
    )
    args = parser.parse_args(argv)
    table = render()
    if not args.write and not args.check:
        sys.stdout.write(table)
        return 0
    try:
        document = args.doc.read_text(encoding="utf-8")
        if args.check:
            if current_table(document) == table:
                return 0
            print(
                f"{args.doc} is out of date; run python -m smsgate.providers.table --write",
                file=sys.stderr,
            )
            return 1
        args.doc.write_text(replace_table(document, table), encoding="utf-8")
    except (OSError, ValueError) as exc:
        print(f"cannot update {args.doc}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
