"""``smsgate segments``: how a text will be encoded and split before it is sent.

Only typer is imported at module level; the encoder and rich load inside the command so the rest
of the CLI starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from smsgate.encoding import SegmentInfo


def register(app: typer.Typer) -> None:
    """Add the ``segments`` command to ``app``."""

    @app.command("segments")
    def segments_command(
        text: Annotated[
            str, typer.Argument(help='The message text; "-" reads it from standard input.')
        ],
        smart: Annotated[
            bool,
            typer.Option(
                "--smart", help="Replace look-alikes (curly quotes, dashes, ...) to stay GSM-7."
            ),
        ] = False,
        shift: Annotated[
            list[str] | None,
            typer.Option(
                "--shift",
                metavar="TABLE",
                help="Enable a national language table: turkish, spanish or portuguese "
                "(repeatable).",
            ),
        ] = None,
        gsm_c_cedilla: Annotated[
            bool,
            typer.Option("--gsm-c-cedilla", help="Send lowercase ç as GSM-7 0x09, the code of Ç."),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Show the encoding, units and parts of a message text."""
        from smsgate.cli.common import checked_text, fail, print_json, read_stdin_text
        from smsgate.encoding import segments
        from smsgate.errors import InvalidMessage

        body = read_stdin_text() if text == "-" else checked_text(text)
        try:
            info = segments(
                body, smart=smart, shift_tables=tuple(shift or ()), gsm_c_cedilla=gsm_c_cedilla
            )
        except InvalidMessage as exc:
            fail(exc.message)
        if as_json:
            print_json(info.to_dict())
        else:
            _print_table(info)


def _print_table(info: SegmentInfo) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    unit_name = "septets" if info.encoding == "GSM-7" else "UTF-16 units"
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("encoding", info.encoding)
    summary.add_row("units", f"{info.units} {unit_name}")
    summary.add_row("segments", f"{info.segments} (up to {info.part_limit} {unit_name} each)")
    if info.shift_tables:
        tables = [
            f"{info.locking_shift} locking shift" if info.locking_shift else "",
            f"{info.single_shift} single shift" if info.single_shift else "",
        ]
        summary.add_row("shift tables", ", ".join(t for t in tables if t))
    if info.ucs2_chars:
        forced = ", ".join(f"{ch!r} U+{ord(ch):04X}" for ch in info.ucs2_chars)
        summary.add_row("forced UCS-2", Text(forced))
    if info.replacements:
        replaced = ", ".join(f"{old!r} -> {new!r}" for old, new in info.replacements)
        summary.add_row("replaced", Text(replaced))

    parts = Table(show_edge=False)
    parts.add_column("part", justify="right")
    parts.add_column("units", justify="right")
    parts.add_column("text", overflow="fold")
    for number, (part, units) in enumerate(zip(info.parts, info.part_units, strict=True), 1):
        # Text(), not a markup string: a "[" in the message must not be read as rich markup.
        parts.add_row(str(number), str(units), Text(part))

    console = Console(highlight=False)
    console.print(summary)
    if info.parts:
        console.print(parts)
