"""``smsgate emulate NAME``: run a provider emulator on loopback until interrupted."""

from __future__ import annotations

import typer

from smsgate.cli.common import fail
from smsgate.emulators import EMULATORS


def register(app: typer.Typer) -> None:
    app.command("emulate")(emulate_command)


def emulate_command(
    name: str = typer.Argument(..., help="One of: " + ", ".join(EMULATORS) + "."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(0, "--port", help="Port (0 picks a free one)."),
    credentials: str = typer.Option(
        None, "--credentials", help="As in the provider URL, e.g. SID:TOKEN."
    ),
    latency: float = typer.Option(0.0, "--latency", help="Seconds added to every API response."),
    error_rate: float = typer.Option(0.0, "--error-rate", help="Fraction answered 503."),
    rate_limit_rate: float = typer.Option(0.0, "--rate-limit-rate", help="Fraction answered 429."),
    retry_after: float = typer.Option(1.0, "--retry-after", help="Retry-After seconds on a 429."),
    reset_rate: float = typer.Option(
        0.0, "--reset-rate", help="Fraction accepted, then the connection dropped."
    ),
    hang_rate: float = typer.Option(
        0.0, "--hang-rate", help="Fraction accepted, then never answered."
    ),
    seed: int = typer.Option(None, "--seed", help="Seed for the fault and outcome draws."),
    callback_delay: float = typer.Option(
        0.2, "--callback-delay", help="Seconds before a delivery callback."
    ),
    outcomes: str = typer.Option(
        "delivered=1", "--outcomes", help="Callback mix, e.g. delivered=0.9,undelivered=0.1."
    ),
    inbound_url: str = typer.Option(
        None, "--inbound-url", help="Where POST /_emulator/inbound sends messages."
    ),
    spool: str = typer.Option(
        None, "--spool", help="smtp: write every mail received here, one .eml file each."
    ),
    option: list[str] = typer.Option(
        [], "--option", help="Emulator-specific KEY=VALUE (repeatable)."
    ),
) -> None:
    """Run NAME's emulator: the provider's API, signed callbacks and fault injection."""
    import asyncio
    import signal

    from smsgate.emulators import emulator_class
    from smsgate.emulators.base import Callbacks, Faults

    if name not in EMULATORS:
        fail(f"unknown emulator {name!r}; choose one of {', '.join(EMULATORS)}")
    extra: dict[str, str] = {}
    for item in option:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--option {item!r} must be KEY=VALUE")
        extra[key.replace("-", "_")] = value
    if spool is not None:
        if name != "smtp":
            fail(f"--spool is an smtp emulator option; {name} records messages in memory only")
        extra["spool"] = spool
    try:
        faults = Faults(
            latency=latency,
            error_rate=error_rate,
            rate_limit_rate=rate_limit_rate,
            retry_after=retry_after,
            reset_rate=reset_rate,
            hang_rate=hang_rate,
            seed=seed,
        )
        mix = Callbacks(delay=callback_delay, outcomes=Callbacks.parse_outcomes(outcomes))
        emulator = emulator_class(name)(
            credentials=credentials, faults=faults, callbacks=mix, inbound_url=inbound_url, **extra
        )
    except (TypeError, ValueError) as exc:
        fail(f"bad emulator option: {exc}")

    async def serve() -> None:
        try:
            await emulator.start(host, port)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror}", 1)
        for line in emulator.describe():
            print(line, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await emulator.stop()

    from smsgate.eventloop import run

    run(serve())
