"""An SMPP 3.4 SMSC on loopback: what an aggregator's SMPP bind is to the ``smpp://`` provider.

``smsgate emulate smpp [--port N] [--credentials SYSTEM_ID:PASSWORD] [--option http_port=N]``
listens for SMPP on ``--port`` and serves the introspection endpoints every emulator has on a
JSON side port: ``GET /_emulator/messages`` (messages reassembled from their parts, with
connection, bind and PDU counts; ``?pdus=1`` adds the captured PDUs), ``POST /_emulator/reset``,
``GET|POST /_emulator/faults``, ``POST /_emulator/inbound`` (``{"from", "to", "body",
"mode"?}``: a mobile-originated message sent as deliver_sm to the bound receivers, in parts
with an 8-bit UDH, 16-bit UDH or SAR TLVs when long) and ``POST /_emulator/drop`` (every
connection closed at once, as an SMSC restart does).

Binds are authenticated (``ESME_RINVSYSID`` / ``ESME_RINVPASWD``). Every submit_sm part gets its
own message id (hex in submit_sm_resp) and, when registered_delivery asks, its own receipt after
``--callback-delay`` with an outcome from ``--outcomes`` (delivered, undelivered, failed,
expired): a deliver_sm with the text form ``id:... stat:DELIVRD err:000`` and the
``receipted_message_id`` / ``message_state`` TLVs. ``--option receipt_ids=decimal`` writes the
text form's id in decimal, as some SMSCs do; ``--option receipt_form=text|tlv`` sends only one
of the two forms; ``--option receipt_first=true`` sends each receipt at once, before the
submit_sm_resp it belongs to, as some SMSCs do. Twilio's magic numbers are refused as an SMSC would (``ESME_RINVDSTADR``,
``ESME_RINVSRCADR``, ``ESME_RMSGQFUL``); the opted-out one is accepted, then undeliverable. ``--option packed=true`` reads and writes GSM-7
packed.

TLS: ``--option tls=true`` listens with a certificate from a CA made at start (its
``ca.pem`` is printed, and :meth:`provider_url` carries ``tls=true&ca_file=``, as the SMTP
emulator does); ``--option tls_cert=PEM --option tls_key=PEM`` serves a certificate of one's own;
``--option tls_client_ca=PEM`` asks every client for a certificate chaining to those CAs.

Faults, in SMPP terms (seeded): ``latency`` delays each submit_sm_resp; ``error_rate`` answers
``--option error_status`` (default ``ESME_RSYSERR``); ``rate_limit_rate`` answers
``ESME_RTHROTTLED``; ``reset_rate`` stores the message, then drops the connection before the
response (an ambiguous send); ``hang_rate`` stores it and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import shutil
import socket
import ssl
import time
from collections import deque
from typing import Any
from urllib.parse import quote

from aiohttp import web

from smsgate.emulators.base import Callbacks, EmulatedMessage, Emulator, Faults
from smsgate.emulators.magic import Outcome, magic_outcome
from smsgate.emulators.tls import TlsFiles, generate_tls_files
from smsgate.smpp import pdu as p

_OUTCOMES: dict[str, tuple[str, int, str]] = {
    "delivered": ("DELIVRD", p.MessageState.DELIVERED, "000"),
    "undelivered": ("UNDELIV", p.MessageState.UNDELIVERABLE, "001"),
    "failed": ("REJECTD", p.MessageState.REJECTED, "002"),
    "expired": ("EXPIRED", p.MessageState.EXPIRED, "003"),
}
_CAPTURE = 10_000
#: bytes of responses after which a batch leaves without waiting for the loop's turn to end
_FLUSH_AT = 2048
#: Twilio's magic numbers, refused with the command status an SMSC would give
_MAGIC: dict[Outcome, int] = {
    Outcome.INVALID_TO: p.Status.ESME_RINVDSTADR,
    Outcome.UNREACHABLE: p.Status.ESME_RINVDSTADR,
    Outcome.REGION_NOT_ENABLED: p.Status.ESME_RINVDSTADR,
    Outcome.NOT_MOBILE: p.Status.ESME_RINVDSTADR,
    Outcome.INVALID_FROM: p.Status.ESME_RINVSRCADR,
    Outcome.FROM_NOT_OWNED: p.Status.ESME_RINVSRCADR,
    Outcome.FROM_QUEUE_FULL: p.Status.ESME_RMSGQFUL,
}


class SmppEmulator(Emulator):
    """An SMSC speaking SMPP 3.4 (see the module doc)."""

    name = "smpp"
    default_credentials = "smsgate:emulator"
    outcome_names = tuple(_OUTCOMES)

    def __init__(
        self,
        *,
        credentials: str | None = None,
        faults: Faults | None = None,
        callbacks: Callbacks | None = None,
        inbound_url: str | None = None,
        http_port: int | str = 0,
        packed: bool | str = False,
        receipt_ids: str = "hex",
        error_status: str | int = "ESME_RSYSERR",
        receipt_form: str = "both",
        receipt_first: bool | str = False,
        tls: bool | str = False,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_client_ca: str | None = None,
    ) -> None:
        if credentials is not None and ":" not in credentials:
            raise ValueError("credentials must look like SYSTEM_ID:PASSWORD")
        if receipt_ids not in ("hex", "decimal"):
            raise ValueError(f"receipt_ids={receipt_ids!r}: use hex or decimal")
        if receipt_form not in ("text", "tlv", "both"):
            raise ValueError(f"receipt_form={receipt_form!r}: use text, tlv or both")
        super().__init__(
            credentials=credentials, faults=faults, callbacks=callbacks, inbound_url=inbound_url
        )
        for outcome in self.callbacks.outcomes:
            if outcome not in _OUTCOMES:
                raise ValueError(f"outcome {outcome!r}: use {', '.join(_OUTCOMES)}")
        self.http_port = int(http_port)
        self.packed = packed if isinstance(packed, bool) else packed.lower() == "true"
        self.receipt_ids = receipt_ids
        self.receipt_form = receipt_form
        self.receipt_first = (
            receipt_first if isinstance(receipt_first, bool) else receipt_first.lower() == "true"
        )
        self.error_status = _status(error_status)
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("give tls_cert and tls_key together (PEM files)")
        if isinstance(tls, str):
            if tls.lower() not in ("true", "false"):
                raise ValueError(f"tls={tls!r}: use true or false")
            tls = tls.lower() == "true"
        #: SMPP over TLS: with the given certificate, else one from a CA made at start
        self.tls = tls or tls_cert is not None
        self.tls_cert, self.tls_key = tls_cert, tls_key
        #: PEM of the CAs a client certificate must chain to: set, a client must show one
        self.tls_client_ca = tls_client_ca
        self.tls = self.tls or tls_client_ca is not None
        self.tls_files: TlsFiles | None = None
        self.smpp_host = "127.0.0.1"
        self.smpp_port = 0
        self.sessions: set[_Session] = set()
        self.connections = 0
        #: of those, connections over TLS
        self.tls_connections = 0
        self.binds = 0
        self.bind_failures = 0
        self.submits = 0
        self.pdus: deque[dict[str, Any]] = deque(maxlen=_CAPTURE)
        self._captured: deque[p.Pdu] = deque(maxlen=_CAPTURE)
        self._ids = itertools.count(0x10000)
        self._partial: dict[tuple[str, str, int], dict[int, str]] = {}
        self._server: asyncio.Server | None = None
        self._refs = itertools.count(1)

    # -- identity -----------------------------------------------------------------------------

    @property
    def system_id(self) -> str:
        return self.credentials.partition(":")[0]

    @property
    def password(self) -> str:
        return self.credentials.partition(":")[2]

    def provider_url(self) -> str:
        user, password = quote(self.system_id, safe=""), quote(self.password, safe="")
        query = "from=smsgate" + ("&gsm7=packed" if self.packed else "")
        if self.tls:
            query += "&tls=true"
            if self.tls_files is not None:
                query += "&ca_file=" + quote(str(self.tls_files.ca_file), safe="/")
        return f"smpp://{user}:{password}@{self.smpp_host}:{self.smpp_port}?{query}"

    def describe(self) -> list[str]:
        lines = [
            f"smpp emulator listening on {self.smpp_host}:{self.smpp_port}"
            + (" (TLS)" if self.tls else ""),
            f"credentials: {self.credentials}",
        ]
        if self.tls_files is not None:
            lines.append(f"CA certificate: {self.tls_files.ca_file} (smsgate: ca_file=PATH)")
        lines += [
            f"provider URL: {self.provider_url()}",
            f"recorded messages: {self.url}/_emulator/messages",
        ]
        return lines

    # -- recording ----------------------------------------------------------------------------

    def capture(self, pdu: p.Pdu) -> None:
        self._captured.append(pdu)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "connections": self.connections,
            "tls_connections": self.tls_connections,
            "binds": self.binds,
            "bind_failures": self.bind_failures,
            "submits": self.submits,
            "sessions": len(self.sessions),
        }

    def reset(self) -> None:
        super().reset()
        self._captured.clear()
        self._partial.clear()
        self.connections = self.tls_connections = 0
        self.binds = self.bind_failures = self.submits = 0

    def captured(self) -> list[dict[str, Any]]:
        return [pdu.to_dict() for pdu in self._captured]

    def store(self, session: _Session, pdu: p.Pdu, message_id: str) -> None:
        """Record one part; a message is listed once all its parts are in."""
        self.submits += 1
        text = p.read_text(pdu, packed=self.packed)
        source, dest = pdu.get("source_addr"), pdu.get("destination_addr")
        if text.reference is not None and text.total > 1:
            key = (source, dest, text.reference)
            parts = self._partial.setdefault(key, {})
            parts[text.sequence] = text.text
            ids = self._partial.setdefault((source, dest, -1 - text.reference), {})
            ids[text.sequence] = message_id
            if len(parts) < text.total:
                return
            del self._partial[key], self._partial[(source, dest, -1 - text.reference)]
            body = "".join(parts[i] for i in sorted(parts))
            part_ids = [ids[i] for i in sorted(ids)]
        else:
            body, part_ids = text.text, [message_id]
        self.record(
            EmulatedMessage(
                id=part_ids[0],
                to=dest,
                sender=source,
                body=body,
                status="accepted",
                created_at=time.time(),
                segments=len(part_ids),
                fields={
                    "part_ids": part_ids,
                    "data_coding": pdu.get("data_coding"),
                    "registered_delivery": pdu.get("registered_delivery"),
                    "system_id": session.system_id,
                },
            )
        )

    def message_id(self) -> str:
        return f"{next(self._ids):X}"

    # -- receipts and inbound -----------------------------------------------------------------

    def receivers(self, system_id: str | None = None) -> list[_Session]:
        return [
            s
            for s in self.sessions
            if s.can_receive and (system_id is None or s.system_id == system_id)
        ]

    async def _receipt_later(
        self, system_id: str, submit: p.Pdu, message_id: str, outcome: str | None = None
    ) -> None:
        await asyncio.sleep(self.callbacks.delay)
        self.send_receipt(system_id, submit, message_id, outcome)

    def send_receipt(
        self, system_id: str, submit: p.Pdu, message_id: str, outcome: str | None = None
    ) -> None:
        outcome = outcome or self.choose_outcome()
        stat, state, err = _OUTCOMES[outcome]
        shown = str(int(message_id, 16)) if self.receipt_ids == "decimal" else message_id
        stamp = time.strftime("%y%m%d%H%M", time.gmtime())
        sample = p.read_text(submit, packed=self.packed).text[:20]
        text = (
            f"id:{shown} sub:001 dlvrd:{'001' if state == p.MessageState.DELIVERED else '000'} "
            f"submit date:{stamp} done date:{stamp} stat:{stat} err:{err} text:{sample}"
        )
        receipt = p.Pdu(
            p.Command.DELIVER_SM,
            fields={
                "source_addr_ton": submit.get("dest_addr_ton"),
                "source_addr_npi": submit.get("dest_addr_npi"),
                "source_addr": submit.get("destination_addr"),
                "dest_addr_ton": submit.get("source_addr_ton"),
                "dest_addr_npi": submit.get("source_addr_npi"),
                "destination_addr": submit.get("source_addr"),
                "esm_class": p.ESM_RECEIPT,
                "short_message": b""
                if self.receipt_form == "tlv"
                else text.encode("ascii", "replace"),
            },
        )
        if self.receipt_form != "text":
            receipt.tlvs = {p.Tag.RECEIPTED_MESSAGE_ID: message_id, p.Tag.MESSAGE_STATE: state}
        for session in self.receivers(system_id)[:1]:
            session.send(receipt)
            self.callback_log.append({"receipt": message_id, "stat": stat})

    def inject_inbound(self, sender: str, to: str, body: str, mode: str = "udh8") -> int:
        """Send ``body`` from ``sender`` to ``to`` as deliver_sm(s); returns the parts sent."""
        if mode not in p.LONG_MODES:
            raise ValueError(f"mode={mode!r}: use one of {', '.join(p.LONG_MODES)}")
        targets = self.receivers()
        if not targets:
            raise LookupError("no client is bound as receiver or transceiver")
        coding = p.choose_coding(body)
        ref = next(self._refs) & (0xFF if mode == "udh8" else 0xFFFF)
        parts = p.layout(body, coding=coding, mode=mode, packed=self.packed, reference=ref)  # type: ignore[arg-type]
        for part in parts:
            targets[0].send(
                p.Pdu(
                    p.Command.DELIVER_SM,
                    fields={
                        **_address("source", sender),
                        **_address("dest", to),
                        "esm_class": part.esm_class,
                        "data_coding": coding,
                        "short_message": part.short_message,
                    },
                    tlvs=dict(part.tlvs),
                )
            )
        self.track_keyword(sender, to, body)
        return len(parts)

    # -- the abstract HTTP-emulator parts that SMPP does not use --------------------------------

    def add_routes(self, app: web.Application) -> None:
        """No provider API over HTTP: the side port serves ``/_emulator`` only."""

    def error_response(self, status: int, kind: str) -> web.Response:
        return web.json_response({"error": kind}, status=status)

    async def deliver_callback(self, message: EmulatedMessage, outcome: str) -> None:
        """Receipts go over the bind as deliver_sm, one per part (see :meth:`_receipt_later`)."""

    async def post_inbound(
        self, url: str, sender: str, to: str, body: str, media: list[str]
    ) -> int:
        """Inbound goes over the bind as deliver_sm (see :meth:`inject_inbound`), not to a URL."""
        return self.inject_inbound(sender, to, body)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_emulator/messages", self._h_smpp_messages)
        app.router.add_post("/_emulator/reset", self._h_reset)
        app.router.add_get("/_emulator/faults", self._h_faults)
        app.router.add_post("/_emulator/faults", self._h_faults)
        app.router.add_post("/_emulator/inbound", self._h_smpp_inbound)
        app.router.add_post("/_emulator/drop", self._h_drop)
        return app

    async def _h_smpp_messages(self, request: web.Request) -> web.Response:
        summary = self.summary()
        if request.query.get("pdus"):
            summary["pdus"] = self.captured()
        return web.json_response(summary)

    async def _h_smpp_inbound(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            sender, to, body = str(data["from"]), str(data["to"]), str(data["body"])
            mode = str(data.get("mode", "udh8"))
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "send JSON {from, to, body, mode?}"}, status=400)
        try:
            parts = self.inject_inbound(sender, to, body, mode)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response({"parts": parts})

    async def _h_drop(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": self.drop_connections()})

    def drop_connections(self) -> int:
        live = list(self.sessions)
        for session in live:
            session.abort()
        return len(live)

    # -- the server ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start SMPP on ``host:port`` and the JSON side port; returns the side port's URL."""
        self.smpp_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        context = await self._tls_context() if self.tls else None
        self._server = await asyncio.start_server(
            self._serve, host, port, backlog=1024, ssl=context
        )
        self.smpp_port = self._server.sockets[0].getsockname()[1]
        return await super().start(host, self.http_port)

    async def _tls_context(self) -> ssl.SSLContext:
        cert, key = self.tls_cert, self.tls_key
        if cert is None or key is None:
            self.tls_files = await asyncio.to_thread(generate_tls_files, [self.smpp_host])
            cert, key = str(self.tls_files.cert_file), str(self.tls_files.key_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if self.tls_client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.tls_client_ca)
        return context

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        if self.tls_files is not None:
            shutil.rmtree(self.tls_files.directory, ignore_errors=True)
            self.tls_files = None
        await super().stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Responses to a window of submits must not wait for the client's delayed ACK.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if writer.get_extra_info("ssl_object") is not None:
            self.tls_connections += 1
        session = _Session(self, writer)
        self.sessions.add(session)
        try:
            await session.run(reader)
        finally:
            self.sessions.discard(session)
            writer.close()


class _Session:
    """One ESME connection."""

    def __init__(self, emulator: SmppEmulator, writer: asyncio.StreamWriter) -> None:
        self.emulator = emulator
        self.writer = writer
        self.system_id: str | None = None
        self.bound: int | None = None
        self._sequence = itertools.count(1)
        self._out = bytearray()

    @property
    def can_receive(self) -> bool:
        return self.bound in (p.Command.BIND_RECEIVER, p.Command.BIND_TRANSCEIVER)

    @property
    def can_transmit(self) -> bool:
        return self.bound in (p.Command.BIND_TRANSMITTER, p.Command.BIND_TRANSCEIVER)

    def send(self, pdu: p.Pdu) -> None:
        if not pdu.is_response:
            pdu.sequence = next(self._sequence)
        # What is answered in one turn of the loop leaves in one send().
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out += p.encode(pdu)
        if len(self._out) >= _FLUSH_AT:
            # The peer starts on these while the rest of the batch is built (two processes,
            # two cores: a window left to fill completely would make them take turns).
            self._flush()

    def _flush(self) -> None:
        data, self._out = self._out, bytearray()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def abort(self) -> None:
        transport = self.writer.transport
        transport.abort()

    async def run(self, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buffer += chunk
            try:
                for frame in p.frames(buffer):
                    try:
                        pdu = p.decode(frame)
                    except p.PduError as exc:
                        seq = int.from_bytes(frame[12:16], "big")
                        self.send(p.Pdu(p.Command.GENERIC_NACK, seq, exc.status))
                        continue
                    if self.handle(pdu) is False:
                        return
            except p.PduError:
                return  # a length we cannot frame: nothing after it can be trusted

    def handle(self, pdu: p.Pdu) -> bool:
        emulator = self.emulator
        emulator.capture(pdu)
        command = pdu.command
        if command == p.Command.SUBMIT_SM:
            self.submit(pdu)
        elif command == p.Command.ENQUIRE_LINK:
            self.send(pdu.response())
        elif command in p.BINDS:
            self.bind(pdu)
        elif command == p.Command.UNBIND:
            self.send(pdu.response())
            self._flush()
            self.bound = None
            return False
        elif pdu.is_response:
            pass  # deliver_sm_resp, enquire_link_resp: nothing waits on them here
        else:
            self.send(p.Pdu(p.Command.GENERIC_NACK, pdu.sequence, p.Status.ESME_RINVCMDID))
        return True

    def bind(self, pdu: p.Pdu) -> None:
        emulator = self.emulator
        if self.bound is not None:
            self.send(pdu.response(p.Status.ESME_RALYBND))
            return
        # Both comparisons always run: no early exit that times out the system id.
        id_ok = secrets.compare_digest(pdu.get("system_id"), emulator.system_id)
        password_ok = secrets.compare_digest(pdu.get("password"), emulator.password)
        if not (id_ok and password_ok):
            emulator.bind_failures += 1
            status = p.Status.ESME_RINVPASWD if id_ok else p.Status.ESME_RINVSYSID
            self.send(pdu.response(status))
            return
        emulator.binds += 1
        self.bound = pdu.command
        self.system_id = pdu.get("system_id")
        self.send(pdu.response(system_id="smsgate-smsc"))

    def submit(self, pdu: p.Pdu) -> None:
        emulator = self.emulator
        if not self.can_transmit:
            self.send(pdu.response(p.Status.ESME_RINVBNDSTS))
            return
        faults = emulator.faults
        roll = emulator._rng.random() if _any_fault(faults) else 1.0
        if roll < faults.error_rate:
            self.send(pdu.response(emulator.error_status))
            return
        roll -= faults.error_rate
        if roll < faults.rate_limit_rate:
            self.send(pdu.response(p.Status.ESME_RTHROTTLED))
            return
        roll -= faults.rate_limit_rate
        if not pdu.get("destination_addr"):
            self.send(pdu.response(p.Status.ESME_RINVDSTADR))
            return
        outcome = magic_outcome(pdu.get("destination_addr"), pdu.get("source_addr"))
        refusal = _MAGIC.get(outcome) if outcome is not None else None
        if refusal is not None:
            self.send(pdu.response(refusal))
            return
        message_id = emulator.message_id()
        try:
            emulator.store(self, pdu, message_id)
        except (p.PduError, ValueError, UnicodeDecodeError):
            self.send(pdu.response(p.Status.ESME_RINVMSGLEN))
            return
        if pdu.get("registered_delivery") & 0x03 and self.system_id is not None:
            # An opted-out recipient is accepted and then undeliverable, as carriers do it.
            forced = "undelivered" if outcome == Outcome.OPTED_OUT else None
            if emulator.receipt_first:
                # Some SMSCs send the receipt before the submit_sm_resp it belongs to.
                emulator.send_receipt(self.system_id, pdu, message_id, forced)
            else:
                emulator._spawn(emulator._receipt_later(self.system_id, pdu, message_id, forced))
        if roll < faults.reset_rate:
            self.abort()
            return
        roll -= faults.reset_rate
        if roll < faults.hang_rate:
            return
        response = pdu.response(message_id=message_id)
        if faults.latency:
            loop = asyncio.get_running_loop()
            loop.call_later(faults.latency, self.send, response)
        else:
            self.send(response)


def _address(side: str, value: str) -> dict[str, Any]:
    """TON/NPI and digits of an address: international with ``+``, else alphanumeric."""
    international = value.startswith("+") and value[1:].isdigit()
    name = "source_addr" if side == "source" else "destination_addr"
    return {
        f"{side}_addr_ton": 1 if international else 5,
        f"{side}_addr_npi": 1 if international else 0,
        name: value.removeprefix("+"),
    }


def _any_fault(faults: Faults) -> bool:
    return bool(
        faults.error_rate or faults.rate_limit_rate or faults.reset_rate or faults.hang_rate
    )


def _status(value: str | int) -> int:
    if isinstance(value, int) or value.isdigit():
        return int(value)
    if value.lower().startswith("0x"):
        return int(value, 16)
    try:
        return int(p.Status[value.upper()])
    except KeyError:
        raise ValueError(f"error_status={value!r} is not an SMPP command status") from None
