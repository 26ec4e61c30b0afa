"""Capture what any :class:`~smsgate.Gateway` or outbox worker sends, instead of sending it.

:class:`SmsOutbox` is the ``sms_outbox`` pytest fixture's value (:mod:`smsgate.testing.plugin`).
While one is installed, ``Provider.asend`` and ``asend_many`` on every provider class record the
message and answer with a ``sent`` result (``provider_message_id`` ``captured-N``) without any
network traffic, so a Gateway, an outbox worker and the framework integrations behave as they do
in production up to the provider's door. Messages stored in an outbox (or handed to a remote
``smsgate serve``) are listed in :attr:`SmsOutbox.queued` until a worker sends them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from smsgate.message import Message, SendResult, Status


@dataclass(frozen=True)
class Captured:
    """One captured send: the message, who would have sent it, and the result it was given."""

    message: Message
    provider: str
    result: SendResult


class SmsOutbox:
    """Every message sent while installed, in order; see :meth:`assert_sent`."""

    def __init__(self) -> None:
        self.captured: list[Captured] = []
        self.queued: list[Message] = []
        self._lock = threading.Lock()
        self._patches: list[tuple[type[Any], str, Any]] = []
        self._counter = 0

    # -- what was sent ------------------------------------------------------------------------

    @property
    def messages(self) -> list[Message]:
        return [c.message for c in self.captured]

    def __len__(self) -> int:
        return len(self.captured)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __getitem__(self, index: int) -> Message:
        return self.captured[index].message

    def clear(self) -> None:
        with self._lock:
            self.captured.clear()
            self.queued.clear()

    def assert_sent(
        self,
        to: str | None = None,
        body_contains: str | None = None,
        *,
        count: int | None = None,
        sender: str | None = None,
        purpose: str | None = None,
        queued: bool = False,
    ) -> Message:
        """The last message matching every given condition; ``AssertionError`` listing what was
        sent when none (or, with ``count``, not exactly ``count``) match. ``to`` is compared as
        E.164 (``"+1 555 555 0100"`` matches ``"+15555550100"``). ``queued`` also looks at
        messages stored in an outbox but not sent yet."""
        pool = self.messages + (self.queued if queued else [])
        wanted = _e164(to) if to is not None else None
        found = [
            m
            for m in pool
            if (wanted is None or _e164(m.to) == wanted)
            and (body_contains is None or body_contains in m.body)
            and (sender is None or m.sender == sender)
            and (purpose is None or m.purpose.value == purpose)
        ]
        if (count is None and not found) or (count is not None and len(found) != count):
            conditions = ", ".join(
                f"{name}={value!r}"
                for name, value in (
                    ("to", to),
                    ("body_contains", body_contains),
                    ("sender", sender),
                    ("purpose", purpose),
                )
                if value is not None
            )
            expected = "a message" if count is None else f"{count} message(s)"
            raise AssertionError(
                f"expected {expected} with {conditions or 'any content'}, found {len(found)}; "
                f"sent: {_describe(self.messages)}"
                + (f"; queued: {_describe(self.queued)}" if queued else "")
            )
        return found[-1]

    def assert_nothing_sent(self) -> None:
        if self.captured:
            raise AssertionError(f"expected no message, sent: {_describe(self.messages)}")

    # -- installing ---------------------------------------------------------------------------

    def install(self) -> None:
        """Capture sends from now on (every provider class, the integrations' senders)."""
        from smsgate.integrations import core
        from smsgate.providers import available_providers
        from smsgate.providers.base import Provider

        capture = self

        async def asend(provider: Provider, message: Message) -> SendResult:
            provider.check_features(message)
            return capture._record(provider.name, message)

        async def asend_many(provider: Provider, messages: Sequence[Message]) -> list[SendResult]:
            return [await provider.asend_result(m) for m in messages]

        classes: list[type[Any]] = [Provider, *available_providers()]
        self._patch(Provider, "asend", asend)
        for cls in classes:
            if "asend_many" in vars(cls):
                self._patch(cls, "asend_many", asend_many)
        core.add_observer(self._observe)

    def uninstall(self) -> None:
        from smsgate.integrations import core

        core.remove_observer(self._observe)
        while self._patches:
            cls, name, original = self._patches.pop()
            setattr(cls, name, original)

    def __enter__(self) -> SmsOutbox:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _patch(self, cls: type[Any], name: str, replacement: Any) -> None:
        self._patches.append((cls, name, vars(cls)[name]))
        setattr(cls, name, replacement)

    def _record(self, provider: str, message: Message) -> SendResult:
        from smsgate.encoding import segments

        info = segments(message.body) if message.body else None
        with self._lock:
            self._counter += 1
            result = SendResult(
                id=message.id,
                to=message.to,
                status=Status.SENT,
                provider=provider,
                provider_message_id=f"captured-{self._counter}",
                segments=info.segments if info else 1,
                encoding=info.encoding if info else None,
            )
            self.captured.append(Captured(message, provider, result))
        return result

    def _observe(self, kind: str, message: Message, result: SendResult) -> None:
        with self._lock:
            if kind in ("outbox", "http"):
                self.queued.append(message)
            else:
                self.captured.append(Captured(message, kind, result))


def _e164(number: str) -> str:
    from smsgate.errors import SmsgateError
    from smsgate.phone import normalize

    try:
        return normalize(number, strict=False)
    except SmsgateError:
        return number


def _describe(messages: list[Message]) -> str:
    if not messages:
        return "nothing"
    return "; ".join(f"to {m.to}: {m.body[:60]!r}" for m in messages)
