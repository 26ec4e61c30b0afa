"""The provider tables of ``docs/providers.md`` and ``README.md``, generated from each
provider's descriptor (``Capabilities``, URL form, URL options, emulator).

The tables are written from the classes the registry can import, so they cannot drift from the
code (a test compares the committed tables with fresh ones)::

    python -m smsgate.providers.table            # print the docs/providers.md table
    python -m smsgate.providers.table --write    # replace both tables in their documents
    python -m smsgate.providers.table --check    # exit 1 when either document is stale

Only the part between each document's two markers is generated; the text around it is written
by hand. ``--doc FILE`` works on one document (its markers say which table it holds).
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
README_START = (
    "<!-- readme-provider-table:start (generated: python -m smsgate.providers.table --write) -->"
)
README_END = "<!-- readme-provider-table:end -->"
README = Path("README.md")

COLUMNS = (
    "Provider",
    "SMS",
    "MMS",
    "Bulk",
    "Status fetch",
    "Delivery webhooks (verification)",
    "Inbound",
    "Idempotency",
    "Reconcile",
    "HLR",
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
        _flag(caps.reconcile),
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


def render_readme(providers: Iterable[type[Provider]] | None = None) -> str:
    """The README's short table: URL form, what each provider does, and its emulator."""
    if providers is None:
        from smsgate.providers import available_providers

        providers = available_providers()
    lines = ["| Provider | URL | does | emulator |", "|---|---|---|---|"]
    for provider in providers:
        caps: Capabilities = provider.capabilities
        does = [
            name
            for name, present in (
                ("SMS", caps.sms),
                ("MMS", caps.mms),
                ("bulk endpoint", caps.bulk),
                ("status fetch", caps.status_fetch),
                (
                    "authenticated receipts" if caps.webhook_verification else "receipts",
                    caps.delivery_webhooks,
                ),
                ("inbound", caps.inbound),
                ("idempotency key", bool(caps.idempotency)),
                ("lookup", caps.reconcile),
                ("HLR", caps.hlr),
            )
            if present
        ]
        emulator = f"`smsgate emulate {provider.scheme}`" if provider.emulator else NO
        url = f"`{caps.url_form}`" if caps.url_form else NO
        cells = [f"{provider.display_name} (`{provider.scheme}`)", url, ", ".join(does), emulator]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _markers(document: str) -> tuple[str, str]:
    """The marker pair ``document`` holds (the docs' table or the README's)."""
    if README_START in document:
        return README_START, README_END
    return START, END


def _table_for(document: str) -> str:
    return render_readme() if README_START in document else render()


def replace_table(document: str, table: str) -> str:
    """``document`` with the text between the markers replaced by ``table``."""
    start_marker, end_marker = _markers(document)
    start, end = document.find(start_marker), document.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(
            f"the document has no {start_marker!r} ... {end_marker!r} block to replace"
        )
    return document[: start + len(start_marker)] + "\n" + table + document[end:]


def current_table(document: str) -> str:
    """The table the document holds now (between the markers)."""
    start_marker, end_marker = _markers(document)
    start, end = document.find(start_marker), document.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"the document has no {start_marker!r} ... {end_marker!r} block")
    return document[start + len(start_marker) : end].lstrip("\n")


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
        action="append",
        help=f"the document to update or check (default {DEFAULT_DOC} and {README})",
    )
    args = parser.parse_args(argv)
    if not args.write and not args.check:
        sys.stdout.write(render())
        return 0
    status = 0
    for doc in args.doc or [DEFAULT_DOC, README]:
        try:
            document = doc.read_text(encoding="utf-8")
            table = _table_for(document)
            if args.check:
                if current_table(document) != table:
                    print(
                        f"{doc} is out of date; run python -m smsgate.providers.table --write",
                        file=sys.stderr,
                    )
                    status = max(status, 1)
                continue
            doc.write_text(replace_table(document, table), encoding="utf-8")
        except (OSError, ValueError) as exc:
            print(f"cannot update {doc}: {exc}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
