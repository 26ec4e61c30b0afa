"""``manage.py smsgate_worker``: send the outbox's messages (``smsgate worker`` with Django's
settings) until SIGTERM/SIGINT, or with ``--until-idle`` until nothing is left to do."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from smsgate.errors import SmsgateError


class Command(BaseCommand):
    help = "Send the smsgate outbox's messages with the providers and routes of settings.SMSGATE."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--concurrency", type=int, default=None, help="Sends in flight.")
        parser.add_argument(
            "--until-idle", action="store_true", help="Exit when no message is waiting."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from smsgate.config import receipts_requested
        from smsgate.eventloop import run
        from smsgate.integrations import core
        from smsgate.integrations.django import conf
        from smsgate.outbox.cli_support import build_worker

        config = conf.settings().config
        concurrency = options.get("concurrency")
        if concurrency is not None and concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        try:
            outbox = core.open_outbox(config)
        except SmsgateError as exc:
            raise CommandError(str(exc)) from None
        try:
            try:
                worker = build_worker(
                    outbox,
                    config,
                    concurrency=concurrency,
                    receipts=receipts_requested(config.server),
                )
            except SmsgateError as exc:
                raise CommandError(str(exc)) from None

            async def main() -> Any:
                worker.install_signal_handlers()
                return await worker.run(until_idle=bool(options.get("until_idle")))

            stats = run(main())
            self.stdout.write(f"smsgate worker stopped: {stats}")
        finally:
            outbox.close()
