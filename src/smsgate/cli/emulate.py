"""``smsgate emulate NAME``: run a provider emulator on loopback until interrupted."""

from __future__ import annotations

from typing import Any

import typer

from smsgate.cli.common import fail, require_extra


def register(app: typer.Typer) -> None:
    app.command("emulate")(emulate_command)


def emulate_command(
    name: str = typer.Argument(
        ..., help="A provider's scheme: every registered provider declares its emulator."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port (0 picks a free one)."),
    credentials: str = typer.Option(
        None, "--credentials", help="As in the provider URL, e.g. SID:TOKEN."
    ),
    latency: float = typer.Option(
        0.0, "--latency", min=0.0, max=600.0, help="Seconds added to every API response."
    ),
    error_rate: float = typer.Option(
        0.0, "--error-rate", min=0.0, max=1.0, help="Fraction answered 503 (0 to 1)."
    ),
    rate_limit_rate: float = typer.Option(
        0.0, "--rate-limit-rate", min=0.0, max=1.0, help="Fraction answered 429 (0 to 1)."
    ),
    retry_after: float = typer.Option(
        1.0, "--retry-after", min=0.0, max=86400.0, help="Retry-After seconds on a 429."
    ),
    reset_rate: float = typer.Option(
        0.0,
        "--reset-rate",
        min=0.0,
        max=1.0,
        help="Fraction accepted, then the connection dropped (0 to 1).",
    ),
    hang_rate: float = typer.Option(
        0.0, "--hang-rate", min=0.0, max=1.0, help="Fraction accepted, then never answered."
    ),
    seed: int = typer.Option(None, "--seed", help="Seed for the fault and outcome draws."),
    callback_delay: float = typer.Option(
        0.2, "--callback-delay", min=0.0, max=3600.0, help="Seconds before a delivery callback."
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

    from smsgate.emulators import emulator_class, emulators

    if name not in emulators():
        fail(f"unknown emulator {name!r}; choose one of {', '.join(emulators())}")
    require_extra("aiohttp", "emulators", "smsgate emulate")
    if name == "smtp":
        require_extra("aiosmtpd", "emulators", "smsgate emulate smtp")
    from smsgate.emulators.base import Callbacks, Faults

    cls = emulator_class(name)
    accepted = _options_of(cls)
    extra: dict[str, str] = {}
    for item in option:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--option {item!r} must be KEY=VALUE")
        key = key.strip().replace("-", "_")
        if key not in accepted:
            known = ", ".join(sorted(accepted)) or "none"
            fail(f"--option {key}: the {name} emulator has no such option; its options: {known}")
        default = accepted[key]
        if isinstance(default, int) and not isinstance(default, bool):
            if not value.strip().isdigit():
                fail(f"--option {key}={value!r}: expected a whole number, e.g. {key}={default}")
        elif isinstance(default, bool) and value.lower() not in ("true", "false", "1", "0"):
            fail(f"--option {key}={value!r}: expected true or false")
        extra[key] = value
    mix = _outcomes(outcomes, cls.outcome_names)
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
        emulator = cls(
            credentials=credentials,
            faults=faults,
            callbacks=Callbacks(delay=callback_delay, outcomes=mix),
            inbound_url=inbound_url,
            **extra,
        )
    except (TypeError, ValueError) as exc:
        fail(f"bad emulator option for {name}: {exc}; see smsgate emulate --help")

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


#: constructor arguments every emulator takes from their own flags, not from --option
_COMMON_ARGUMENTS = {"self", "credentials", "faults", "callbacks", "inbound_url"}


def _options_of(cls: type[Any]) -> dict[str, object]:
    """The emulator-specific keyword arguments ``--option KEY=VALUE`` may set, with defaults."""
    import inspect

    parameters = inspect.signature(cls).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.name not in _COMMON_ARGUMENTS
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def _outcomes(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """``--outcomes delivered=0.9,failed=0.1``: known outcomes, weights 0..1, some above 0."""
    import math

    mix: dict[str, float] = {}
    for item in text.split(","):
        name, _, weight_text = item.partition("=")
        name = name.strip()
        if name not in names:
            fail(f"--outcomes: {name!r} is not an outcome; use {', '.join(names)}")
        try:
            weight = float(weight_text or 1)
        except ValueError:
            fail(f"--outcomes: {name}={weight_text!r} is not a number; write e.g. {name}=0.5")
        if not math.isfinite(weight) or not 0 <= weight <= 1:
            fail(f"--outcomes: {name}={weight_text} is not between 0 and 1")
        mix[name] = weight
    if not any(mix.values()):
        fail("--outcomes: every weight is 0; give one outcome a weight, e.g. delivered=1")
    return mix
