"""SMPP 3.4 on asyncio: ``smpp://SYSTEM_ID:PASSWORD@host:2775?from=SENDER&...``.

An SMPP client (ESME) holding one bind to an SMSC, on the project's own PDU codec
(:mod:`smsgate.smpp.pdu`; its docstring says why no library was taken: smpplib is thread-based
and barely maintained, aiosmpplib is a partial client, smpp.pdu needs Twisted). What it does:

- binds as a transceiver (``bind=transceiver``, the default) or as a transmitter plus a receiver
  (``bind=pair``), or as a transmitter only (``bind=transmitter``: no receipts, no inbound);
- keeps a window of ``window`` submit_sm outstanding at once (default 10), paces them to
  ``throughput`` per second when set, sends ``enquire_link`` every ``enquire_link`` seconds
  (default 30) and drops a link that does not answer, reconnects with exponential back-off
  (``backoff`` to ``backoff_max`` seconds) and unbinds gracefully on :meth:`aclose`;
- writes GSM-7 (data_coding 0, unpacked unless ``gsm7=packed``), Latin-1 (data_coding 3, when
  ``latin1=true`` and the text needs it) or UCS-2 (data_coding 8), with smsgate's encoder;
- sends a long text as parts with an 8-bit UDH reference (``long=udh8``, the default), a 16-bit
  one (``long=udh16``), SAR TLVs (``long=sar``) or as one submit_sm carrying
  ``message_payload`` (``long=payload``);
- asks for receipts (``registered_delivery=1`` by default, 0 to not), and reads them from both
  the text form (``id:... stat:DELIVRD err:...``) and the ``receipted_message_id`` /
  ``message_state`` TLVs, matching ids in hex or decimal form; the receipts of every part of a
  long message are folded into one status for the message, reported once all parts have one;
- reassembles concatenated inbound deliver_sm (UDH or SAR) into one message.

Receipts and inbound messages have no webhook here: they arrive on the bind. They go to the
:class:`~smsgate.providers.base.EventSink` given to :meth:`SmppProvider.alisten` (the server
gives its receipt recorder and inbound handler, the same path webhooks take). A deliver_sm is
acknowledged only after the sink took it; without a sink, or when the sink fails, it is answered
``ESME_RX_T_APPN`` so the SMSC keeps it and delivers it again later.

Failures: a submit_sm written but not answered within ``timeout`` seconds, or written on a
connection that then broke, is :class:`~smsgate.errors.AmbiguousSend`; one still waiting for
the window when the connection broke is sent on the next connection (it never left). The parts
of a long message after the first that fail make the whole send ambiguous (the first parts went
out). ``ESME_RTHROTTLED`` and ``ESME_RMSGQFUL`` are :class:`~smsgate.errors.RateLimited`, and
the provider pauses all submits for ``throttle_backoff`` seconds (doubling while they last);
every other command status maps through :func:`error_for_status`. With ``tls=true`` the bind
is wrapped in TLS with the transport's context (``ca_file``, ``client_cert``); a certificate
that cannot be trusted is :class:`~smsgate.errors.ProviderUnavailable` at once (field
``ca_file``), not retried until ``connect_timeout``.

Kept by the provider, so across reconnects but not a restart (docs/smpp.md, "What survives a
reconnect and a restart"): the part ids of long messages awaiting receipts (after a restart the
server folds part receipts from the ids the outbox stored with the send, see
:mod:`smsgate.server.part_receipts`) and inbound parts awaiting their siblings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import re
import socket
import ssl
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Self

from smsgate.errors import (
    AmbiguousSend,
    AuthError,
    ConfigError,
    InvalidMessage,
    InvalidRecipient,
    ProviderUnavailable,
    RateLimited,
    SmsgateError,
    TransientError,
)
from smsgate.ids import new_id
from smsgate.message import DeliveryEvent, InboundMessage, Message, SendResult, Status
from smsgate.providers.base import Capabilities, EventSink, PartSink, Provider, UrlOption
from smsgate.providers.parts import folded_event
from smsgate.providers.url import ProviderURL
from smsgate.smpp import pdu as p

logger = logging.getLogger("smsgate.providers.smpp")
#: bytes of PDUs after which a batch leaves without waiting for the loop's turn to end
_FLUSH_AT = 2048

S = p.Status
_THROTTLED = frozenset({S.ESME_RTHROTTLED, S.ESME_RMSGQFUL})
_AUTH = frozenset({S.ESME_RBINDFAIL, S.ESME_RINVPASWD, S.ESME_RINVSYSID, S.ESME_RINVSYSTYP})
_RECIPIENT = frozenset(
    {S.ESME_RINVDSTADR, S.ESME_RINVDSTTON, S.ESME_RINVDSTNPI, S.ESME_RINVNUMDESTS}
)
_SENDER = frozenset({S.ESME_RINVSRCADR, S.ESME_RINVSRCTON, S.ESME_RINVSRCNPI})
_MESSAGE = frozenset(
    {
        S.ESME_RINVMSGLEN,
        S.ESME_RINVCMDLEN,
        S.ESME_RINVPRTFLG,
        S.ESME_RINVREGDLVFLG,
        S.ESME_RINVESMCLASS,
        S.ESME_RINVSERTYP,
        S.ESME_RINVSCHED,
        S.ESME_RINVEXPIRY,
        S.ESME_RINVDFTMSGID,
        S.ESME_RINVREPFLAG,
        S.ESME_RINVOPTPARSTREAM,
        S.ESME_ROPTPARNOTALLWD,
        S.ESME_RINVPARLEN,
        S.ESME_RMISSINGOPTPARAM,
        S.ESME_RINVOPTPARAMVAL,
        S.ESME_RX_P_APPN,
        S.ESME_RINVNUMMSGS,
        S.ESME_RINVDLNAME,
        S.ESME_RINVDESTFLAG,
        S.ESME_RINVSUBREP,
    }
)
# The SMSC could not take the submit now and says so: nothing was sent.
_TRANSIENT = frozenset(
    {
        S.ESME_RSYSERR,
        S.ESME_RSUBMITFAIL,
        S.ESME_RX_T_APPN,
        S.ESME_RX_R_APPN,
        S.ESME_RDELIVERYFAILURE,
        S.ESME_RUNKNOWNERR,
    }
)
# The session is not in a state to submit (the SMSC forgot our bind, or the command is not
# supported on it): nothing was sent, and this connection is no good.
_SESSION = frozenset({S.ESME_RINVBNDSTS, S.ESME_RALYBND, S.ESME_RINVCMDID})
# Statuses that answer other commands (query, cancel, replace); on a submit they mean the SMSC
# is confused, which another provider may not be.
_OTHER = frozenset(
    {
        S.ESME_RINVMSGID,
        S.ESME_RCANCELFAIL,
        S.ESME_RREPLACEFAIL,
        S.ESME_RCNTSUBDL,
        S.ESME_RQUERYFAIL,
    }
)

_STATES: dict[int, Status] = {
    p.MessageState.ENROUTE: Status.SENT,
    p.MessageState.DELIVERED: Status.DELIVERED,
    p.MessageState.EXPIRED: Status.EXPIRED,
    p.MessageState.DELETED: Status.FAILED,
    p.MessageState.UNDELIVERABLE: Status.UNDELIVERED,
    p.MessageState.ACCEPTED: Status.SENT,
    p.MessageState.UNKNOWN: Status.UNKNOWN,
    p.MessageState.REJECTED: Status.REJECTED,
}
_STATS: dict[str, Status] = {
    "DELIVRD": Status.DELIVERED,
    "EXPIRED": Status.EXPIRED,
    "DELETED": Status.FAILED,
    "UNDELIV": Status.UNDELIVERED,
    "ACCEPTD": Status.SENT,
    "ENROUTE": Status.SENT,
    "UNKNOWN": Status.UNKNOWN,
    "REJECTD": Status.REJECTED,
}
_RECEIPT_TEXT = re.compile(r"(\w+(?: date)?):(\S*)", re.IGNORECASE)
_BIND_MODES = ("transceiver", "pair", "transmitter")
_ENCODING_NAMES = {p.DC_DEFAULT: "GSM-7", p.DC_LATIN1: "Latin-1", p.DC_UCS2: "UCS-2"}
_TRACKED = 200_000
#: single-part texts whose layout is kept, and senders whose submit_sm fields are
_LAYOUTS = 512
_TEMPLATES = 64
_INBOUND_PARTS_TTL = 600.0


def error_for_status(
    status: int, command: str = "submit_sm", *, provider: str = "smpp"
) -> SmsgateError:
    """The taxonomy's error for a command_status the SMSC answered."""
    name = p.status_name(status)
    text = f"SMSC answered {command} with {name}"
    kw: dict[str, Any] = {"provider": provider, "code": name}
    if status in _THROTTLED:
        return RateLimited(f"{text}: the SMSC is throttling", **kw)
    if status in _AUTH:
        return AuthError(f"{text}: check SYSTEM_ID, PASSWORD and system_type in the URL", **kw)
    if status in _RECIPIENT:
        return InvalidRecipient(f"{text}: the destination address was refused", field="to", **kw)
    if status in _SENDER:
        return InvalidMessage(f"{text}: the source address was refused", field="sender", **kw)
    if status in _MESSAGE:
        return InvalidMessage(f"{text}: the SMSC refused the message", **kw)
    if status in _TRANSIENT or status in _SESSION:
        return TransientError(f"{text}: nothing was sent; try again", **kw)
    if status in _OTHER:
        return ProviderUnavailable(f"{text}, which does not answer a submit", **kw)
    # Vendor-specific (0x400-0x4FF) and reserved codes: the SMSC refused this submit for a
    # reason we cannot read; another provider may take it.
    return ProviderUnavailable(f"{text}: a code SMPP 3.4 does not define", **kw)


def id_keys(message_id: str) -> list[str]:
    """Forms under which a message id may come back: as written, and read as hex or decimal.

    SMSCs answer submit_sm with an id in one form and quote it in receipts in another (hex in
    the response, decimal in the receipt text, or the reverse); leading zeros vary too.
    """
    text = message_id.strip().lower()
    keys = [text]
    stripped = text.lstrip("0") or "0"
    if stripped != text:
        keys.append(stripped)
    if text and all(c in "0123456789abcdef" for c in text):
        keys.append(str(int(text, 16)))
    if text.isdigit():
        keys.append(f"{int(text):x}")
    return keys


@dataclass(slots=True)
class _Sent:
    """A long message awaiting the receipts of its parts."""

    message_id: str
    total: int
    to: str
    part_ids: list[str] = field(default_factory=list)
    states: dict[int, Status] = field(default_factory=dict)
    codes: dict[int, str | None] = field(default_factory=dict)


@dataclass(slots=True)
class _Partial:
    parts: dict[int, str]
    total: int
    since: float


class QueueSink:
    """An :class:`EventSink` that keeps what arrives, for scripts and tests without a server."""

    def __init__(self) -> None:
        self.deliveries: asyncio.Queue[DeliveryEvent] = asyncio.Queue()
        self.inbound_messages: asyncio.Queue[InboundMessage] = asyncio.Queue()

    async def delivery(self, provider: Provider, events: Sequence[DeliveryEvent]) -> None:
        for event in events:
            self.deliveries.put_nowait(event)

    async def inbound(self, provider: Provider, messages: Sequence[InboundMessage]) -> None:
        for message in messages:
            self.inbound_messages.put_nowait(message)


class _Closed(Exception):
    """The connection closed before the request was written (safe to send elsewhere)."""


class _Lost(Exception):
    """The connection closed after the request was written."""


class _Connection:
    """One bound SMPP session: a reader task, requests matched to responses by sequence."""

    def __init__(
        self, provider: SmppProvider, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.provider = provider
        self.reader = reader
        self.writer = writer
        #: sequence -> (its response's future, a callback run as the response is read)
        self.pending: dict[int, tuple[asyncio.Future[p.Pdu], Callable[[p.Pdu], None] | None]] = {}
        self.closed = asyncio.Event()
        self.bound_as: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader_task = asyncio.create_task(self._read(), name="smsgate-smpp-reader")
        self._enquirer: asyncio.Task[None] | None = None
        self._out = bytearray()
        self._loop = asyncio.get_running_loop()
        #: (deadline on the loop's clock, response future) of requests, in the order written;
        #: every request waits ``timeout`` (the provider's), so the front expires first
        self._deadlines: deque[tuple[float, asyncio.Future[p.Pdu]]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def alive(self) -> bool:
        return not self.closed.is_set()

    def write(self, pdu: p.Pdu) -> None:
        if self.closed.is_set():
            raise _Closed
        # PDUs written in one turn of the loop leave in one send(): with a window of 100 a
        # system call per PDU costs more than encoding it.
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out += p.encode(pdu)
        if len(self._out) >= _FLUSH_AT:
            # The peer starts on these while the rest of the batch is built (two processes,
            # two cores: a window left to fill completely would make them take turns).
            self._flush()

    def _flush(self) -> None:
        data, self._out = self._out, bytearray()
        if data and not self.closed.is_set():
            self.writer.write(data)

    async def request(
        self,
        pdu: p.Pdu,
        timeout: float,
        on_response: Callable[[p.Pdu], None] | None = None,
    ) -> p.Pdu:
        """Send ``pdu`` and wait for its response; raises _Closed (not written), _Lost (written,
        then the connection broke) or TimeoutError (written, no answer). ``on_response`` runs
        as soon as the response is read, before any PDU after it is handled."""
        pdu.sequence = self.provider.next_sequence()
        loop = self._loop
        future: asyncio.Future[p.Pdu] = loop.create_future()
        self.write(pdu)
        self.pending[pdu.sequence] = (future, on_response)
        # Deadlines in a queue swept by one timer, rather than asyncio.wait_for (a task hop per
        # request) or a timer per request (a heap push and a cancel): at 10,000 requests a
        # second that is a tenth of a submit's CPU.
        deadlines = self._deadlines
        deadlines.append((loop.time() + timeout, future))
        if self._sweeper is None:
            self._sweeper = loop.call_at(deadlines[0][0], self._sweep)
        try:
            if self.writer.transport.get_write_buffer_size() > 256 * 1024:
                await self.writer.drain()
            return await future
        finally:
            self.pending.pop(pdu.sequence, None)
            # Answers come mostly in order: the answered ones at the front leave at once.
            while deadlines and deadlines[0][1].done():
                deadlines.popleft()

    def _sweep(self) -> None:
        """Fail the requests whose time is up (in the order they were written), then wait for
        the next deadline."""
        loop = self._loop
        now = loop.time()
        deadlines = self._deadlines
        while deadlines and (deadlines[0][0] <= now or deadlines[0][1].done()):
            _, future = deadlines.popleft()
            _expire(future)
        self._sweeper = loop.call_at(deadlines[0][0], self._sweep) if deadlines else None

    def start_enquiring(self, interval: float) -> None:
        if interval > 0:
            self._enquirer = asyncio.create_task(self._enquire(interval))

    async def _enquire(self, interval: float) -> None:
        clock = self.provider.clock
        while self.alive:
            await clock.sleep(interval)
            if not self.alive:
                return
            try:
                await self.request(p.Pdu(p.Command.ENQUIRE_LINK), self.provider.response_timeout)
            except (TimeoutError, _Closed, _Lost, OSError):
                logger.info("%s: enquire_link unanswered; dropping the link", self.provider.name)
                self.abort()
                return

    async def _read(self) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = await self.reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                for frame in p.frames(buffer):
                    try:
                        pdu = p.decode(frame)
                    except p.PduError as exc:
                        seq = int.from_bytes(frame[12:16], "big")
                        self.write(p.Pdu(p.Command.GENERIC_NACK, seq, exc.status))
                        continue
                    self._dispatch(pdu)
        except (OSError, p.PduError, _Closed) as exc:
            logger.info("%s: SMPP connection lost: %s", self.provider.name, type(exc).__name__)
        finally:
            self._shut()

    def _dispatch(self, pdu: p.Pdu) -> None:
        command = pdu.command
        if pdu.is_response:
            entry = self.pending.pop(pdu.sequence, None)
            if entry is not None and not entry[0].done():
                if entry[1] is not None:
                    entry[1](pdu)
                entry[0].set_result(pdu)
        elif command == p.Command.DELIVER_SM:
            task = asyncio.create_task(self._deliver(pdu))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif command == p.Command.ENQUIRE_LINK:
            self.write(pdu.response())
        elif command == p.Command.UNBIND:
            self.write(pdu.response())
            self.abort(graceful=True)
        else:
            self.write(p.Pdu(p.Command.GENERIC_NACK, pdu.sequence, S.ESME_RINVCMDID))

    async def _deliver(self, pdu: p.Pdu) -> None:
        status = await self.provider.on_deliver_sm(pdu)
        with contextlib.suppress(_Closed):
            self.write(pdu.response(status, message_id="") if status else pdu.response())

    def abort(self, *, graceful: bool = False) -> None:
        if graceful:
            self._flush()
            self.writer.close()
        else:
            self.writer.transport.abort()
        self._shut()

    def _shut(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for future, _ in self.pending.values():
            if not future.done():
                future.set_exception(_Lost())
        self.pending.clear()
        self._deadlines.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._enquirer is not None:
            self._enquirer.cancel()
        self.writer.transport.abort()

    async def unbind(self, timeout: float) -> None:
        if self.alive:
            with contextlib.suppress(TimeoutError, _Closed, _Lost, OSError):
                await self.request(p.Pdu(p.Command.UNBIND), timeout)
        self.abort(graceful=True)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(self._reader_task, timeout)


class SmppProvider(Provider):
    """An SMPP 3.4 client (see the module doc)."""

    scheme = "smpp"
    display_name = "SMPP"
    emulator = "smsgate.emulators.smpp:SmppEmulator"
    url_options = (
        UrlOption("system_type", "text", "system_type sent in the bind"),
        UrlOption(
            "bind", "text", "transceiver (default), pair (transmitter + receiver), transmitter"
        ),
        UrlOption("window", "number", "submit_sm outstanding at once (default 10)"),
        UrlOption("throughput", "number", "submit_sm per second at most (default: no limit)"),
        UrlOption("tls", "flag", "SMPP over TLS (trusting ca_file)"),
        UrlOption("source_ton", "number", "TON of the source (default 1 for numbers, 5 for ids)"),
        UrlOption("source_npi", "number", "NPI of the source (default 1 for numbers, 0 for ids)"),
        UrlOption("dest_ton", "number", "TON of the destination (default 1)"),
        UrlOption("dest_npi", "number", "NPI of the destination (default 1)"),
        UrlOption("long", "text", "long texts as udh8 (default), udh16, sar or payload"),
        UrlOption("gsm7", "text", "unpacked (default) or packed"),
        UrlOption("latin1", "flag", "send texts that fit Latin-1 as data_coding 3"),
        UrlOption("registered_delivery", "number", "1 asks for receipts (default), 0 not"),
        UrlOption("enquire_link", "number", "seconds between enquire_links (30; 0: none)"),
        UrlOption("backoff", "number", "first reconnect delay in seconds (0.5), doubling"),
        UrlOption("backoff_max", "number", "longest reconnect delay in seconds (30)"),
        UrlOption("throttle_backoff", "number", "pause after ESME_RTHROTTLED in seconds (1)"),
    )
    capabilities = Capabilities(
        inbound=True,
        url_form="smpp://SYSTEM_ID:PASSWORD@host:2775?from=SENDER&window=10&long=udh8",
    )

    def __init__(
        self,
        *,
        system_id: str,
        password: str,
        host: str,
        port: int = 2775,
        system_type: str = "",
        bind: str = "transceiver",
        window: int = 10,
        throughput: float = 0.0,
        tls: bool = False,
        ca_file: str | None = None,
        source_ton: int | None = None,
        source_npi: int | None = None,
        dest_ton: int = 1,
        dest_npi: int = 1,
        long: str = "udh8",
        packed: bool = False,
        latin1: bool = False,
        registered_delivery: int = 1,
        response_timeout: float = 10.0,
        enquire_link: float = 30.0,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        connect_timeout: float = 30.0,
        throttle_backoff: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if bind not in _BIND_MODES:
            raise ConfigError(f"smpp:// bind={bind!r}: use {', '.join(_BIND_MODES)}", field="bind")
        if long not in p.LONG_MODES:
            raise ConfigError(f"smpp:// long={long!r}: use {', '.join(p.LONG_MODES)}", field="long")
        if not 1 <= window <= 10_000:
            raise ConfigError("smpp:// window must be 1-10000", field="window")
        if len(system_id) > 15 or len(password) > 8:
            raise ConfigError(
                "smpp:// SYSTEM_ID is at most 15 characters and PASSWORD at most 8 (SMPP 3.4)",
                field="provider",
            )
        self.system_id = system_id
        self._password = password
        self.host = host
        self.port = port
        self.system_type = system_type
        self.bind_mode = bind
        self.window = window
        self.throughput = throughput
        self.tls = tls
        self.ca_file = ca_file
        self.source_ton = source_ton
        self.source_npi = source_npi
        self.dest_ton = dest_ton
        self.dest_npi = dest_npi
        self.long_mode: p.LongMode = long  # type: ignore[assignment]
        self.packed = packed
        self.latin1 = latin1
        self.registered_delivery = registered_delivery
        self.response_timeout = response_timeout
        self.enquire_link = enquire_link
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.throttle_backoff = throttle_backoff
        self.base_url = f"smpp://{host}:{port}"
        self.sink: EventSink | None = None
        self._tx: _Connection | None = None
        self._rx: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._ssl: ssl.SSLContext | None = None
        self._window_sem: asyncio.Semaphore | None = None
        self._sequence = itertools.count(1)
        self._reference = itertools.count(int.from_bytes(os.urandom(2), "big"))
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._throttle_wait = throttle_backoff
        self._tracked: OrderedDict[str, _Sent] = OrderedDict()
        self._layouts: dict[str, tuple[int, list[p.Part]]] = {}
        self._templates: dict[str, p.SubmitTemplate] = {}
        self._partials: dict[tuple[str, str, int], _Partial] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._closing = False
        #: counters for tests and curiosity
        self.connects = 0
        self.ambiguous = 0

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: ProviderURL, *, name: str | None = None) -> Self:
        example = "smpp://SYSTEM_ID:PASSWORD@host:2775?from=SENDER"
        system_id = url.require("username", example)
        password = url.password or ""
        host = url.require("host", example)
        gsm7 = url.option("gsm7", "unpacked")
        if gsm7 not in ("packed", "unpacked"):
            raise ConfigError(f"smpp:// gsm7={gsm7!r}: use packed or unpacked", field="gsm7")

        def integer(option: str, default: int | None) -> int | None:
            value = url.option(option)
            if value is None or value == "":
                return default
            if not value.isdigit():
                raise ConfigError(
                    f"smpp:// option {option}={value!r} must be a whole number", field=option
                )
            return int(value)

        def number(option: str, default: float) -> float:
            value = url.number(option, default)
            if value < 0:
                raise ConfigError(f"smpp:// option {option} must not be negative", field=option)
            return value

        # The transport's options (timeouts, ca_file) are every provider's; SMPP reads
        # timeout, connect_timeout and ca_file itself below, the others do not apply to it.
        common = cls.common_options(url)
        return cls(
            name=name,
            **common,
            sender=url.option("from"),
            system_id=system_id,
            password=password,
            host=host,
            port=url.port or 2775,
            system_type=url.option("system_type", "") or "",
            bind=url.option("bind", "transceiver") or "transceiver",
            window=integer("window", 10) or 0,
            throughput=number("throughput", 0.0),
            tls=url.flag("tls"),
            ca_file=url.option("ca_file"),
            source_ton=integer("source_ton", None),
            source_npi=integer("source_npi", None),
            dest_ton=integer("dest_ton", 1) or 0,
            dest_npi=integer("dest_npi", 1) or 0,
            long=url.option("long", "udh8") or "udh8",
            packed=gsm7 == "packed",
            latin1=url.flag("latin1"),
            registered_delivery=integer("registered_delivery", 1) or 0,
            response_timeout=number("timeout", 10.0),
            enquire_link=number("enquire_link", 30.0),
            backoff=number("backoff", 0.5),
            backoff_max=number("backoff_max", 30.0),
            connect_timeout=number("connect_timeout", 30.0),
            throttle_backoff=number("throttle_backoff", 1.0),
        )

    def __repr__(self) -> str:
        # The password is never part of the repr.
        return (
            f"SmppProvider(name={self.name!r}, sender={self.sender!r}, "
            f"system_id={self.system_id!r}, host={self.host!r}, port={self.port})"
        )

    # -- sending ------------------------------------------------------------------------------

    def next_sequence(self) -> int:
        return next(self._sequence) & 0x7FFFFFFF or next(self._sequence)

    async def deliver(self, message: Message) -> SendResult:
        coding, parts = self._layout(message.body)
        source = self.sender_for(message)
        try:
            template = self._template(source)
        except (p.PduError, UnicodeEncodeError) as exc:
            error = self.sender_refused(
                message,
                f"sender {source!r} cannot be an SMPP source address ({exc})",
                fix="use a number of at most 20 digits or an id of at most 20 Latin-1 characters",
            )
            error.provider = self.name
            raise error from None
        destination = message.to.removeprefix("+")
        ids: list[str] = []
        track: Callable[[p.Pdu], None] | None = None
        if self.registered_delivery:
            sent = _Sent(message.id, len(parts), message.to)
            # Tracked as each response is read, before the receipt that may follow it on the
            # wire: so a receipt quoting the id in another form, or one part's id, finds it.
            track = partial(self._track, sent)
        for index, part in enumerate(parts):
            pdu = p.Pdu(p.Command.SUBMIT_SM, body=template.body(destination, part, coding))
            try:
                response = await self._submit(pdu, retry_throttle=index > 0, on_response=track)
            except SmsgateError as exc:
                if index == 0:
                    raise
                self.ambiguous += 1
                raise AmbiguousSend(
                    f"part {index + 1} of {len(parts)} failed ({exc.message}) after the earlier "
                    "parts were accepted; sending again would repeat them",
                    provider=self.name,
                    code=exc.code,
                ) from exc
            ids.append(str(response.get("message_id")))
        # Built here rather than by Provider.result, which would analyse the text once more.
        return SendResult(
            id=message.id,
            to=message.to,
            status=Status.SENT,
            provider=self.name,
            provider_message_id=ids[0],
            segments=len(parts),
            encoding=_ENCODING_NAMES[coding],
            raw={"message_ids": ids, "data_coding": coding},
            part_ids=tuple(ids),
        )

    def message_id_forms(self, provider_message_id: str) -> list[str]:
        return id_keys(provider_message_id)

    def _layout(self, text: str) -> tuple[int, list[p.Part]]:
        """The data_coding and short messages of ``text``. A text that fits one short message
        lays out the same every time (no concatenation reference), so the last few hundred are
        kept: a campaign sends one body to many numbers."""
        known = self._layouts.get(text)
        if known is not None:
            return known
        coding = p.choose_coding(text, latin1=self.latin1)
        reference = next(self._reference) & (0xFF if self.long_mode == "udh8" else 0xFFFF)
        try:
            parts = p.layout(
                text, coding=coding, mode=self.long_mode, packed=self.packed, reference=reference
            )
        except InvalidMessage as exc:
            exc.provider = self.name
            raise
        if len(parts) == 1:
            if len(self._layouts) >= _LAYOUTS:
                del self._layouts[next(iter(self._layouts))]  # the oldest
            self._layouts[text] = (coding, parts)
        return coding, parts

    def _template(self, source: str) -> p.SubmitTemplate:
        """The encoded fields of submit_sm for ``source`` (one per sender; senders are few)."""
        template = self._templates.get(source)
        if template is None:
            numeric = source.lstrip("+").isdigit()
            source_ton = self.source_ton
            if source_ton is None:
                # An international number (1), or an alphanumeric sender id (5).
                source_ton = 1 if numeric else 5
            source_npi = self.source_npi
            if source_npi is None:
                source_npi = 1 if numeric else 0
            template = p.SubmitTemplate(
                source_addr=source.removeprefix("+"),
                source_addr_ton=source_ton,
                source_addr_npi=source_npi,
                dest_addr_ton=self.dest_ton,
                dest_addr_npi=self.dest_npi,
                registered_delivery=self.registered_delivery,
            )
            if len(self._templates) >= _TEMPLATES:
                self._templates.clear()
            self._templates[source] = template
        return template

    async def _submit(
        self,
        pdu: p.Pdu,
        *,
        retry_throttle: bool = False,
        on_response: Callable[[p.Pdu], None] | None = None,
    ) -> p.Pdu:
        """One submit_sm through the window; its response, or the mapped error."""
        throttled = 0
        while True:
            if self.throughput > 0 or self._paused_until:
                await self._pace()
            connection = self._tx
            if connection is None or not connection.alive:
                connection = await self._transmitter()
            window = self._window()
            async with window:
                try:
                    response = await connection.request(pdu, self.response_timeout, on_response)
                except _Closed:
                    continue  # never written: send it on the next connection
                except TimeoutError:
                    self.ambiguous += 1
                    raise AmbiguousSend(
                        f"no submit_sm_resp within {self.response_timeout:g}s; the SMSC may have "
                        "taken the message",
                        provider=self.name,
                    ) from None
                except (_Lost, OSError):
                    self.ambiguous += 1
                    raise AmbiguousSend(
                        "the SMPP connection broke after submit_sm was written; the SMSC may "
                        "have taken the message",
                        provider=self.name,
                    ) from None
            status = response.status
            if response.command == p.Command.GENERIC_NACK and not status:
                status = S.ESME_RSYSERR
            if status == S.ESME_ROK:
                self._throttle_wait = self.throttle_backoff
                return response
            error = error_for_status(status, provider=self.name)
            error.raw = response.to_dict()
            if isinstance(error, RateLimited):
                wait = self._throttle_wait
                self._paused_until = max(self._paused_until, self.clock.monotonic() + wait)
                self._throttle_wait = min(wait * 2, self.backoff_max)
                error.retry_after = wait
                throttled += 1
                if retry_throttle and throttled <= 8:
                    continue
            elif status in _SESSION:
                connection.abort()
            raise error

    async def _pace(self) -> None:
        clock = self.clock
        now = clock.monotonic()
        if 0 < self._paused_until <= now:
            self._paused_until = 0.0  # over: submits skip pacing again
        if self._paused_until > now:
            await clock.sleep(self._paused_until - now)
            now = clock.monotonic()
        if self.throughput > 0:
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self.throughput
            if slot > now:
                await clock.sleep(slot - now)

    def _window(self) -> asyncio.Semaphore:
        if self._window_sem is None:
            self._window_sem = asyncio.Semaphore(self.window)
        return self._window_sem

    # -- connections --------------------------------------------------------------------------

    async def _transmitter(self) -> _Connection:
        if self._tx is not None and self._tx.alive:
            return self._tx
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._tx is None or not self._tx.alive:
                command = {
                    "transceiver": p.Command.BIND_TRANSCEIVER,
                    "pair": p.Command.BIND_TRANSMITTER,
                    "transmitter": p.Command.BIND_TRANSMITTER,
                }[self.bind_mode]
                self._tx = await self._connect(command)
        return self._tx

    async def _connect(self, command: int) -> _Connection:
        """Connect and bind, retrying with back-off for up to ``connect_timeout`` seconds."""
        if self._closing:
            raise ProviderUnavailable("the SMPP provider is closed", provider=self.name)
        clock = self.clock
        deadline = clock.monotonic() + self.connect_timeout
        delay = self.backoff
        while True:
            try:
                return await self._bind(command)
            except ssl.SSLCertVerificationError as exc:
                # Configuration, not a passing failure: retrying will not make it trusted.
                raise self._tls_error(exc) from None
            except (AuthError, ProviderUnavailable):
                raise
            except (OSError, TimeoutError, TransientError) as exc:
                reason = getattr(exc, "message", None) or type(exc).__name__
                if clock.monotonic() + delay > deadline:
                    if isinstance(exc, ssl.SSLError):
                        raise self._tls_error(exc) from None
                    # A plain SMPP port hangs up on a TLS hello, and an SMSC that wants a
                    # client certificate on the bind after the handshake: say what to check.
                    hint = (
                        " over TLS (is it the SMSC's TLS port? does it want a client "
                        "certificate, client_cert=?)"
                        if self.tls
                        else ""
                    )
                    raise TransientError(
                        f"cannot bind to the SMSC at {self.host}:{self.port}{hint}: {reason}",
                        provider=self.name,
                    ) from None
                logger.info("%s: bind failed (%s); retrying in %.1fs", self.name, reason, delay)
                await clock.sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    def _tls_error(self, exc: ssl.SSLError) -> ProviderUnavailable:
        where = f"{self.host}:{self.port}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ProviderUnavailable(
                f"the TLS certificate of the SMSC at {where} is not trusted "
                f"({exc.verify_message}); pass ca_file=PATH to trust its CA",
                provider=self.name,
                field="ca_file",
            )
        reason = str(exc.reason or exc)
        return ProviderUnavailable(
            f"TLS with the SMSC at {where} failed ({reason}); check tls= and the port (is it "
            "the SMSC's TLS port?)",
            provider=self.name,
            field="tls",
        )

    def _tls_context(self) -> ssl.SSLContext | None:
        """The client TLS context (made once), or None without ``tls``."""
        if not self.tls:
            return None
        if self._ssl is None:
            # The transport's context: the same CA trust (and client certificate) options,
            # checked where the URL is read, as every provider's.
            options = self.transport_options
            if self.ca_file is not None and self.ca_file != options.ca_file:
                options = dataclasses.replace(options, ca_file=self.ca_file)
            try:
                self._ssl = options.ssl_context()
            except ConfigError as exc:  # the file changed since: not worth a retry
                raise ProviderUnavailable(
                    exc.message, provider=self.name, field=exc.field
                ) from None
        return self._ssl

    async def _bind(self, command: int) -> _Connection:
        context = self._tls_context()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=context), self.response_timeout
        )
        _no_delay(writer)
        connection = _Connection(self, reader, writer)
        bind = p.Pdu(
            command,
            fields={
                "system_id": self.system_id,
                "password": self._password,
                "system_type": self.system_type,
                "interface_version": 0x34,
            },
        )
        try:
            response = await connection.request(bind, self.response_timeout)
        except (_Closed, _Lost):
            raise TransientError("the SMSC closed the connection during bind") from None
        except BaseException:
            connection.abort()
            raise
        if response.status:
            connection.abort()
            error = error_for_status(response.status, "bind", provider=self.name)
            if isinstance(error, AuthError):
                raise error
            raise TransientError(error.message, provider=self.name, code=error.code)
        connection.bound_as = command
        connection.start_enquiring(self.enquire_link)
        self.connects += 1
        return connection

    # -- receipts and inbound -----------------------------------------------------------------

    async def alisten(self, sink: EventSink) -> None:
        """Hand receipts and inbound messages to ``sink`` and keep a receiving bind open."""
        self.sink = sink
        if self.bind_mode == "transmitter" or self._keeper is not None:
            return
        self._keeper = asyncio.create_task(self._keep_receiving(), name="smsgate-smpp-receiver")

    async def _keep_receiving(self) -> None:
        """Keep a bind that can receive: the transceiver, or the receiver of a pair."""
        while not self._closing:
            try:
                if self.bind_mode == "pair":
                    if self._rx is None or not self._rx.alive:
                        self._rx = await self._connect(p.Command.BIND_RECEIVER)
                    connection = self._rx
                else:
                    connection = await self._transmitter()
                await connection.closed.wait()
            except SmsgateError as exc:
                logger.warning("%s: cannot keep a receiving bind: %s", self.name, exc.message)
                await self.clock.sleep(self.backoff_max)

    async def on_deliver_sm(self, pdu: p.Pdu) -> int:
        """Handle a deliver_sm: the command_status to answer it with."""
        sink = self.sink
        if sink is None:
            return S.ESME_RX_T_APPN
        try:
            if pdu.get("esm_class") & 0x3C == p.ESM_RECEIPT:
                receipted = _receipted_id(pdu)
                if receipted is not None and self._find(receipted) is None:
                    # A receipt may overtake the submit_sm_resp of its own message (the SMSC
                    # answers on another thread): let the submits in flight be answered first.
                    await self._settle()
                event = self._receipt(pdu)
                if event is None:
                    pass
                elif event.part is None:
                    await sink.delivery(self, [event])
                elif isinstance(sink, PartSink):
                    await sink.part_delivery(self, event)
            else:
                message = self._inbound(pdu)
                if message is not None:
                    await sink.inbound(self, [message])
        except (p.PduError, ValueError, UnicodeDecodeError) as exc:
            logger.warning("%s: unreadable deliver_sm: %s", self.name, exc)
            return S.ESME_RX_P_APPN
        except Exception as exc:
            # Not recorded: the SMSC keeps it and delivers it again later.
            logger.warning("%s: deliver_sm not recorded: %s", self.name, type(exc).__name__)
            return S.ESME_RX_T_APPN
        return S.ESME_ROK

    async def _settle(self) -> None:
        """Wait (at most ``timeout``) until the submits in flight now have their responses."""
        futures = [
            future
            for connection in (self._tx, self._rx)
            if connection is not None
            for future, _ in connection.pending.values()
        ]
        if futures:
            await asyncio.wait(futures, timeout=self.response_timeout)

    def _track(self, sent: _Sent, response: p.Pdu) -> None:
        if response.status or response.command != p.Command.SUBMIT_SM_RESP:
            return
        part_id = str(response.get("message_id"))
        sent.part_ids.append(part_id)
        self._tracked[id_keys(part_id)[0]] = sent
        # Bounded: the oldest are forgotten first.
        while len(self._tracked) > _TRACKED:
            self._tracked.popitem(last=False)

    def _find(self, receipted: str) -> tuple[_Sent, int] | None:
        for key in id_keys(receipted):
            sent = self._tracked.get(key)
            if sent is not None:
                for index, part_id in enumerate(sent.part_ids):
                    if key in id_keys(part_id):
                        return sent, index
        return None

    def _receipt(self, pdu: p.Pdu) -> DeliveryEvent | None:
        text = pdu.get("short_message").decode("latin-1")
        fields = {k.lower(): v for k, v in _RECEIPT_TEXT.findall(text)}
        receipted = _receipted_id(pdu)
        if not receipted:
            raise ValueError("a receipt without receipted_message_id or id:")
        state = pdu.tlvs.get(p.Tag.MESSAGE_STATE)
        status = _STATES.get(state) if state is not None else None
        if status is None:
            status = _STATS.get(fields.get("stat", "").upper(), Status.UNKNOWN)
        error = fields.get("err")
        network = pdu.tlvs.get(p.Tag.NETWORK_ERROR_CODE)
        if network:
            error = network.hex()
        if error and error.strip("0") == "":
            error = None
        raw = {"text": text, **pdu.to_dict()["tlvs"]}
        recipient = _address(pdu, "source")
        done = fields.get("done date", "")
        # This receipt as it came; quoted under the id it names (or, single-part, the id given).
        as_received = partial(
            DeliveryEvent,
            provider=self.name,
            status=status,
            to=recipient,
            error_code=error,
            reason=fields.get("stat"),
            raw=raw,
        )
        found = self._find(str(receipted))
        if found is None:
            return as_received(
                provider_message_id=str(receipted), event_id=f"{receipted}:{status.value}:{done}"
            )
        sent, index = found
        if sent.total == 1:
            if status.is_final:
                self._tracked.pop(id_keys(sent.part_ids[0])[0], None)
            return as_received(
                provider_message_id=sent.part_ids[0],
                message_id=sent.message_id,
                event_id=f"{sent.part_ids[0]}:{status.value}:{done}",
            )
        if not status.is_final:
            return None
        sent.states[index] = status
        if error:
            sent.codes[index] = error
        if len(sent.states) < sent.total:
            # One part's receipt: only a sink that keeps it durably takes it (on_deliver_sm).
            return as_received(
                provider_message_id=str(receipted),
                message_id=sent.message_id,
                event_id=f"{receipted}:{status.value}:{done}",
                part=index + 1,
                parts=sent.total,
            )
        for part_id in sent.part_ids:
            self._tracked.pop(id_keys(part_id)[0], None)
        return folded_event(
            self.name, sent.message_id, sent.part_ids, sent.states, sent.codes, to=sent.to, last=raw
        )

    def _inbound(self, pdu: p.Pdu) -> InboundMessage | None:
        content = p.read_text(pdu, packed=self.packed)
        sender, to = _address(pdu, "source"), _address(pdu, "destination")
        text = content.text
        if content.reference is not None and content.total > 1:
            now = self.clock.monotonic()
            for key in [k for k, v in self._partials.items() if now - v.since > _INBOUND_PARTS_TTL]:
                del self._partials[key]
            key = (sender, to, content.reference)
            partial = self._partials.setdefault(key, _Partial({}, content.total, now))
            partial.parts[content.sequence] = text
            if len(partial.parts) < partial.total:
                return None
            del self._partials[key]
            text = "".join(partial.parts[i] for i in sorted(partial.parts))
        return InboundMessage(
            provider=self.name,
            provider_message_id=new_id("smpp"),
            sender=sender,
            to=to,
            body=text,
            received_at=datetime.fromtimestamp(self.clock.time(), UTC),
            raw={"parts": content.total, "data_coding": pdu.get("data_coding")},
        )

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Unbind every session gracefully (answers still in flight are awaited)."""
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        for connection in (self._tx, self._rx):
            if connection is not None:
                await connection.unbind(self.response_timeout)
        self._tx = self._rx = None


def _receipted_id(pdu: p.Pdu) -> str | None:
    """The message id a receipt is for: the TLV, else the text form's ``id:``."""
    tlv = pdu.tlvs.get(p.Tag.RECEIPTED_MESSAGE_ID)
    if tlv:
        return str(tlv)
    found = re.search(r"\bid:(\S+)", pdu.get("short_message").decode("latin-1"))
    return found.group(1) if found else None


def _address(pdu: p.Pdu, side: str) -> str:
    """An address of a deliver_sm, with ``+`` when its TON says international."""
    prefix = "source" if side == "source" else "dest"
    value = str(pdu.get(f"{side}_addr" if side == "source" else "destination_addr"))
    if pdu.get(f"{prefix}_addr_ton") == 1 and value.isdigit():
        return f"+{value}"
    return value


def _no_delay(writer: asyncio.StreamWriter) -> None:
    """Turn Nagle's algorithm off: a batch of PDUs must not wait for the peer's delayed ACK
    (40 ms on Linux), which would cap a window at a few thousand submits a second."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _expire(future: asyncio.Future[p.Pdu]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
