"""Direct sending: validate, pick a provider, send; no store.

``Gateway`` is the one-import way to send a text. Its sync methods are twins of the async ones:
each sync call runs the async code on a private event-loop thread owned by the gateway, so both
share one behaviour and the keep-alive pools survive between calls. Providers are tried in order;
on a provider-side error (``error.failover``) the next one is tried, never on a recipient error.
Retries, schedules and durability belong to :class:`smsgate.Outbox`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

from smsgate.errors import ConfigError, SmsgateError, UnsupportedFeature
from smsgate.eventloop import new_event_loop
from smsgate.ids import new_id
from smsgate.message import Message, SendResult, Status
from smsgate.providers import create_provider
from smsgate.providers.base import Provider

T = TypeVar("T")


class _LoopThread:
    """An event loop on a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError(
                "the sync Gateway methods cannot run inside an event loop; use the a* twins"
            )
        loop = self._ensure()
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="smsgate-sync", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def stop(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if not thread.is_alive():
            loop.close()


class Gateway:
    """Send through one provider or an ordered failover chain of providers."""

    def __init__(
        self, providers: Provider | Sequence[Provider], *, default_region: str | None = None
    ) -> None:
        chain = [providers] if isinstance(providers, Provider) else list(providers)
        if not chain:
            raise ConfigError("a Gateway needs at least one provider", field="providers")
        names = [p.name for p in chain]
        if len(set(names)) != len(names):
            raise ConfigError(f"provider names must be unique, got {names}", field="providers")
        self.providers: dict[str, Provider] = {p.name: p for p in chain}
        self.default_region = default_region
        self._runner = _LoopThread()

    @classmethod
    def from_url(cls, *urls: str, default_region: str | None = None, **overrides: Any) -> Self:
        """``Gateway.from_url("twilio://SID:TOKEN@+1...", "smsroute://KEY@MyApp")``: a chain."""
        providers: list[Provider] = []
        for i, url in enumerate(urls):
            provider = create_provider(url, **overrides)
            if any(p.name == provider.name for p in providers):
                provider.name = f"{provider.name}{i + 1}"
            providers.append(provider)
        return cls(providers, default_region=default_region)

    @classmethod
    def from_env(cls, variable: str = "SMSGATE_PROVIDER", **overrides: Any) -> Self:
        """Providers from an environment variable (several URLs separated by spaces or commas)."""
        value = os.environ.get(variable, "").strip()
        if not value:
            raise ConfigError(
                f"{variable} is not set; set it to a provider URL such as twilio://SID:TOKEN@+15017122661",
                field=variable,
            )
        urls = [u for u in value.replace(",", " ").split() if u]
        return cls.from_url(*urls, **overrides)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> Self:
        """Providers (in declaration order) from a ``smsgate.toml`` file."""
        from smsgate.config import load_config

        config = load_config(path)
        providers = [create_provider(p.url, name=name) for name, p in config.providers.items()]
        return cls(providers)

    def __repr__(self) -> str:
        return f"Gateway(providers={list(self.providers.values())!r})"

    # -- building messages ----------------------------------------------------------------------

    def message(self, to: str | Message, body: str = "", **fields: Any) -> Message:
        """Build the :class:`Message` a send would use: a recipient and fields, or ``to`` itself."""
        if isinstance(to, Message):
            if body or fields:
                return to.replace(**({"body": body} if body else {}), **fields)
            return to
        if self.default_region and isinstance(to, str) and not to.strip().startswith(("+", "00")):
            from smsgate.phone import normalize

            to = normalize(to, self.default_region, strict=False)
        return Message(to=to, body=body, **fields)

    # -- async API ----------------------------------------------------------------------------

    async def asend(
        self,
        to: str | Message,
        body: str = "",
        *,
        provider: str | None = None,
        **fields: Any,
    ) -> SendResult:
        """Send one message now; raise the last provider's error if every provider failed."""
        message = self.message(to, body, **fields)
        _refuse_future_send_at(message)
        last: SmsgateError | None = None
        for candidate in self._chain(provider, message):
            try:
                return await candidate.asend(message)
            except SmsgateError as exc:
                if not exc.failover:
                    raise
                last = exc
        assert last is not None
        raise last

    async def asend_many(
        self,
        messages: Iterable[Message | str],
        *,
        provider: str | None = None,
        body: str = "",
        **fields: Any,
    ) -> list[SendResult]:
        """Send many; results in input order; never raises because of one recipient.

        ``messages`` are :class:`Message` objects or recipients (each sent ``body`` and
        ``fields``). A recipient that is not a number gives a ``rejected`` result whose
        ``error`` says why, in its place. Messages a provider refuses for provider-side reasons
        go to the next provider in the chain.
        """
        results: list[SendResult | None] = []
        batch: list[Message] = []
        positions: list[int] = []
        for item in messages:
            try:
                message = item if isinstance(item, Message) else self.message(item, body, **fields)
            except SmsgateError as exc:
                results.append(
                    SendResult(id=new_id(), to=str(item), status=Status.REJECTED, error=exc)
                )
                continue
            if message.send_at is not None:
                _refuse_future_send_at(message)
            positions.append(len(results))
            results.append(None)
            batch.append(message)
        sent = await self._send_batch(batch, provider) if batch else []
        for position, result in zip(positions, sent, strict=True):
            results[position] = result
        return [result for result in results if result is not None]

    async def _send_batch(self, batch: list[Message], provider: str | None) -> list[SendResult]:
        chain = self._chain(provider, None)
        results: list[SendResult] = await chain[0].asend_many(batch)
        for candidate in chain[1:]:
            retry = [i for i, r in enumerate(results) if r.error is not None and r.error.failover]
            if not retry:
                break
            again = await candidate.asend_many([batch[i] for i in retry])
            for i, result in zip(retry, again, strict=True):
                results[i] = result
        return results

    async def afetch_status(
        self, provider_message_id: str, *, provider: str | None = None
    ) -> SendResult:
        """Ask the provider for a message's current status by its id (async)."""
        return await self._chain(provider, None)[0].afetch_status(provider_message_id)

    async def alookup_hlr(self, number: str, *, provider: str | None = None) -> dict[str, Any]:
        """Ask an HLR-capable provider whether a number is live (smsroute ``/v1/hlr``)."""
        for candidate in self._chain(provider, None):
            lookup = getattr(candidate, "alookup_hlr", None)
            if candidate.capabilities.hlr and lookup is not None:
                result: dict[str, Any] = await lookup(number)
                return result
        raise UnsupportedFeature("no configured provider offers HLR lookups (smsroute does)")

    async def aclose(self) -> None:
        """Close every provider's connections (async)."""
        for provider in self.providers.values():
            await provider.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sync twins ---------------------------------------------------------------------------

    def send(
        self, to: str | Message, body: str = "", *, provider: str | None = None, **fields: Any
    ) -> SendResult:
        """Send one message now and return what the provider said.

        ``to`` is a recipient (E.164, or national with the gateway's ``default_region``) or a
        whole :class:`Message`; ``fields`` are the other :class:`Message` fields (``sender``,
        ``media``, ``purpose``, ...). ``provider`` picks one provider of the chain by name;
        otherwise each is tried in order while the error says to fail over.

        Raises :class:`~smsgate.errors.SmsgateError` (its subclasses say whether to retry or
        fail over) when the message is refused or every provider failed. The async twin is
        :meth:`asend`.
        """
        return self._runner.run(self.asend(to, body, provider=provider, **fields))

    def send_many(
        self,
        messages: Iterable[Message | str],
        *,
        provider: str | None = None,
        body: str = "",
        **fields: Any,
    ) -> list[SendResult]:
        """Send many now: results in input order, and one bad recipient never raises.

        ``gw.send_many(["+15555550100", "not-a-number"], body="Your order shipped")`` gives two
        results; the second is ``rejected`` with the reason in ``error``. See :meth:`asend_many`.
        """
        return self._runner.run(
            self.asend_many(list(messages), provider=provider, body=body, **fields)
        )

    def fetch_status(self, provider_message_id: str, *, provider: str | None = None) -> SendResult:
        """Ask the provider for a message's current status by the provider's id."""
        return self._runner.run(self.afetch_status(provider_message_id, provider=provider))

    def lookup_hlr(self, number: str, *, provider: str | None = None) -> dict[str, Any]:
        """Ask an HLR-capable provider whether a number is live; see :meth:`alookup_hlr`."""
        return self._runner.run(self.alookup_hlr(number, provider=provider))

    def close(self) -> None:
        """Close every provider's connections and the gateway's event-loop thread."""
        self._runner.run(self.aclose())
        self._runner.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _chain(self, name: str | None, message: Message | None) -> list[Provider]:
        del message  # routing by purpose and country is the Outbox's Router's job
        if name is not None:
            if name not in self.providers:
                raise ConfigError(
                    f"no provider named {name!r}; configured: {', '.join(self.providers)}",
                    field="provider",
                )
            return [self.providers[name]]
        return list(self.providers.values())


def _refuse_future_send_at(message: Message) -> None:
    if message.send_at is not None and message.send_at > datetime.now(UTC):
        raise UnsupportedFeature(
            "direct sends go out now; submit the message to an smsgate.Outbox to schedule it",
            field="send_at",
        )


def run_sync(awaitable: Awaitable[T]) -> T:
    """Run an awaitable to completion from sync code (CLI helpers)."""

    async def wrap() -> T:
        return await awaitable

    return asyncio.run(wrap())
