"""Bulk sends from a CSV file: one message per row, streamed into the outbox.

The file is read once, in batches; nothing but the current batches is in memory, so a file of
millions of rows costs the same memory as one of thousands. Rows that cannot be sent (a bad
number, a body over the limit, a short line, a recipient who opted out) are refused before
anything is stored and written, with the reason, to a rejects CSV. So are lines that are not
CSV at all: bytes that are not UTF-8, a field over the csv module's limit, a quote never closed
(the lines it swallowed are read again on their own): one bad line never stops the run. Every
row gets the idempotency key ``PREFIX:LINE`` (the prefix defaults to a digest of the file), so
running the same file again stores nothing twice.

What is the same for every row (the template, its columns, sender, purpose, send time) is
checked once, before any row is read: a mistake there refuses the run, not every row.

With ``parallel=True`` a second process reads and validates while this one writes: the two
halves of the work are about equally heavy, so this nearly doubles throughput on two cores.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import string
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from smsgate.errors import InvalidMessage, SmsgateError
from smsgate.message import Message, Purpose
from smsgate.outbox.codec import Validator
from smsgate.outbox.outbox import Outbox
from smsgate.outbox.records import SubmitReport
from smsgate.outbox.suppressions import OptOutScreen

#: files smaller than this are read in this process (starting a second one costs ~0.5 s)
PARALLEL_MIN_BYTES = 4 * 1024 * 1024
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True, slots=True)
class BulkOptions:
    """What to make of each row. Build with :meth:`build`, which checks everything that is the
    same for every row (template fields against the header, sender, purpose, send time)."""

    path: str
    body: str
    to_column: str
    header: tuple[str, ...]
    sender: str | None = None
    purpose: str = Purpose.TRANSACTIONAL.value
    region: str | None = None
    send_at: datetime | None = None
    key_prefix: str | None = None
    rejects: str = ""

    @classmethod
    def build(
        cls,
        path: str,
        *,
        body: str,
        to_column: str = "phone",
        sender: str | None = None,
        purpose: str = "transactional",
        region: str | None = None,
        send_at: str | datetime | None = None,
        key_prefix: str | None = "auto",
        rejects: str | None = None,
    ) -> BulkOptions:
        """``key_prefix``: ``"auto"`` (a digest of the file), a prefix of yours, or None for no
        idempotency keys."""
        if not body.strip():
            raise InvalidMessage(
                "the body template is empty; every row would be refused (give e.g. "
                '--body "Hi {name}")',
                field="body",
            )
        header = tuple(read_header(path))
        if to_column not in header:
            raise InvalidMessage(
                f"{path} has no column {to_column!r} for the numbers; columns: "
                f"{', '.join(header)} (choose one with --to-column)",
                field="to_column",
            )
        for name in template_fields(body):
            if name not in header:
                raise InvalidMessage(
                    f"the body uses {{{name}}} but {path} has no column {name!r}; "
                    f"columns: {', '.join(header)}",
                    field="body",
                )
        when: datetime | None = None
        if isinstance(send_at, str):
            try:
                when = datetime.fromisoformat(send_at)
            except ValueError:
                raise InvalidMessage(
                    f"send_at {send_at!r} is not an ISO time such as 2030-01-31T09:00:00+00:00",
                    field="send_at",
                ) from None
        else:
            when = send_at
        # Everything that is the same for every row is checked once, on a sample message.
        try:
            kind = Purpose(purpose)
        except ValueError:
            raise InvalidMessage(
                f"purpose {purpose!r} is not one of {', '.join(p.value for p in Purpose)}",
                field="purpose",
            ) from None
        Message(to="+15555550100", body="x", sender=sender, purpose=kind, send_at=when)
        if region is not None:
            from smsgate.phone import normalize

            normalize("+15555550100", region)  # raises on an unknown region
        if key_prefix == "auto":
            key_prefix = f"bulk:{file_digest(path)}"
        elif key_prefix is not None and (not key_prefix or len(key_prefix) > 150):
            raise InvalidMessage("key prefix must be 1-150 characters", field="key_prefix")
        return cls(
            path=path,
            body=body,
            to_column=to_column,
            header=header,
            sender=sender,
            purpose=Purpose(purpose).value,
            region=region.upper() if region else None,
            send_at=when,
            key_prefix=key_prefix,
            rejects=rejects or f"{os.path.splitext(path)[0]}.rejects.csv",
        )


@dataclass(slots=True)
class BulkReport(SubmitReport):
    """A :class:`SubmitReport` plus the refusals grouped by reason and the rejects file."""

    reasons: Counter[str] = field(default_factory=Counter)
    rejects_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = SubmitReport.to_dict(self)
        data["reasons"] = dict(self.reasons.most_common())
        data["rejects_file"] = self.rejects_file
        return data


@dataclass(slots=True)
class _Chunk:
    """One batch, ready to insert; picklable (plain tuples) to cross a process boundary."""

    rows: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    #: per row: its line and values (for the rejects file, should the recipient have opted out)
    sources: list[tuple[int, list[str]]]
    #: (line, the row's values, field, message) per refused row
    refused: list[tuple[int, list[str], str | None, str]]
    position: int
    lines: int


def read_header(path: str) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        try:
            header = next(csv.reader(handle, strict=True))
        except StopIteration:
            raise InvalidMessage(f"{path} is empty; it needs a header row", field="file") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidMessage(f"{path} is not a UTF-8 CSV file: {exc}", field="file") from None
    header = [name.strip() for name in header]
    if len(set(header)) != len(header):
        raise InvalidMessage(f"{path} repeats a column name in its header", field="file")
    return header


def template_fields(body: str) -> list[str]:
    """The ``{column}`` names a body template uses; only plain names are allowed."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(body))
    except ValueError as exc:
        raise InvalidMessage(
            f"the body template is malformed ({exc}); write {{{{ and }}}} for literal braces",
            field="body",
        ) from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name or any(ch in name for ch in ".[]"):
            raise InvalidMessage(
                f"the body template field {{{name}}} must name a column, like {{name}}",
                field="body",
            )
        names.append(name)
    return names


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:16]


def read_chunks(
    options: BulkOptions, batch_size: int, now: Callable[[], float]
) -> Iterator[_Chunk]:
    """Read, render and validate the file in batches."""
    validator = Validator(region=options.region)
    build = validator.build
    header = options.header
    width = len(header)
    to_index = header.index(options.to_column)
    render = options.body.format_map
    fixed: dict[str, Any] = {}
    if options.sender is not None:
        fixed["sender"] = options.sender
    if options.purpose != Purpose.TRANSACTIONAL.value:
        fixed["purpose"] = options.purpose
    if options.send_at is not None:
        fixed["send_at"] = options.send_at
    prefix = options.key_prefix
    source = _Records(options.path, width)
    rows: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    sources: list[tuple[int, list[str]]] = []
    refused: list[tuple[int, list[str], str | None, str]] = []
    lines = 0
    stamp = now()
    with source:
        source.next_record()  # the header, read by read_header
        while True:
            record: tuple[int, list[str]] | None = None
            try:
                record = source.next_record()
                if record is None:
                    break
            except _Broken as broken:
                lines += 1
                refused.append((broken.line, [broken.text], "csv", broken.reason))
            if record is not None:
                line, values = record
                lines += 1
                if len(values) != width:
                    if not values or values == [""]:
                        lines -= 1
                        continue
                    refused.append(
                        (
                            line,
                            values,
                            "csv",
                            f"the line has {len(values)} fields, the header {width}",
                        )
                    )
                elif (undecodable := _undecodable(header, values)) is not None:
                    refused.append((line, [_printable(v) for v in values], "csv", undecodable))
                else:
                    item = {
                        "to": values[to_index].strip(),
                        "body": render(dict(zip(header, values, strict=True))),
                    }
                    if fixed:
                        item.update(fixed)
                    if prefix is not None:
                        item["idempotency_key"] = f"{prefix}:{line:09d}"
                    try:
                        row, event, _ = build(item, stamp, "bulk")
                    except SmsgateError as exc:
                        refused.append((line, values, exc.field, exc.message))
                    else:
                        rows.append(tuple(row))
                        events.append(tuple(event))
                        sources.append((line, values))
            if lines >= batch_size:
                yield _Chunk(rows, events, sources, refused, source.position, lines)
                rows, events, sources, refused, lines = [], [], [], [], 0
                stamp = now()
    if lines:
        yield _Chunk(rows, events, sources, refused, source.position, lines)


#: the longest raw line copied into the rejects file for a line that does not parse
_MAX_REJECT_TEXT = 1000


class _Broken(Exception):
    """A record the CSV parser gave up on (a field over the limit, a quote never closed)."""

    def __init__(self, line: int, text: str, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.text = text
        self.reason = reason


class _Records:
    """The file's CSV records with the number of the line each starts on, going on after one
    that does not parse.

    The csv module stops a file at the first record it cannot parse, and a quote never closed
    swallows every line after it into one field. Here the lines of such a record are kept: the
    first is refused, with the parser's reason, and the others are read again as records of
    their own. Undecodable bytes are read as lone surrogates (``surrogateescape``) so the
    parser never fails on them; the row that holds them is refused by :func:`_undecodable`.
    """

    def __init__(self, path: str, width: int) -> None:
        self.path = path
        self.width = width
        self.position = 0
        self._handle = open(path, newline="", encoding="utf-8-sig", errors="surrogateescape")  # noqa: SIM115
        self._number = 0
        self._pending: deque[tuple[int, str]] = deque()
        #: the raw lines of the record being parsed
        self._lines: list[tuple[int, str]] = []
        self._reader = self._parser()

    def _parser(self) -> Iterator[list[str]]:
        # strict: a quote in the middle of a field, or one never closed, is an error to report
        # rather than a field silently joined up with the lines after it
        return csv.reader(self._feed(), strict=True)

    def __enter__(self) -> _Records:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def _feed(self) -> Iterator[str]:
        while True:
            if self._pending:
                item = self._pending.popleft()
            else:
                text = self._handle.readline()
                if not text:
                    return
                self.position += len(text)
                self._number += 1
                item = (self._number, text)
            self._lines.append(item)
            yield item[1]

    def next_record(self) -> tuple[int, list[str]] | None:
        """(line, values) of the next record, None at the end; raises :class:`_Broken`."""
        self._lines = []
        try:
            values = next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise self._broken(f"the line does not parse as CSV ({exc})") from None
        if len(self._lines) > 1 and len(values) != self.width:
            # a quoted field ran over several lines into a record of the wrong shape: most
            # likely a quote never closed; the lines after the first are rows of their own
            raise self._broken(
                f"a quoted field runs over {len(self._lines)} lines into a record of "
                f"{len(values)} fields, the header has {self.width}"
            )
        return self._lines[0][0], values

    def _broken(self, reason: str) -> _Broken:
        """The first line of the record being parsed, refused; the other lines pushed back to
        be read again, by a fresh parser."""
        lines = self._lines
        if not lines:
            return _Broken(self._number, "", reason)
        first, text = lines[0]
        self._pending.extendleft(reversed(lines[1:]))
        self._reader = self._parser()
        if len(lines) > 1:
            reason += "; a quote opened on this line is never closed, or a field is too long"
        return _Broken(first, _printable(text.rstrip("\r\n"))[:_MAX_REJECT_TEXT], reason)


def _undecodable(header: Sequence[str], values: Sequence[str]) -> str | None:
    """Why a row with bytes that are not UTF-8 is refused (naming the column), or None."""
    for name, value in zip(header, values, strict=True):
        bad = _SURROGATE.search(value)
        if bad is not None:
            raw = value[bad.start() : bad.start() + 4].encode("utf-8", "surrogateescape")
            shown = " ".join(f"0x{byte:02x}" for byte in raw if byte >= 0x80)
            return f"column {name!r} has bytes that are not UTF-8 ({shown}); save the file as UTF-8"
    return None


_SURROGATE = re.compile("[\udc80-\udcff]")


def _printable(value: str) -> str:
    """``value`` with undecodable bytes shown as U+FFFD, so the rejects file is UTF-8."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def submit_csv(
    outbox: Outbox,
    options: BulkOptions,
    *,
    batch_size: int = 5000,
    parallel: bool | None = None,
    on_progress: Progress | None = None,
) -> BulkReport:
    """Stream ``options.path`` into ``outbox``; refused rows go to ``options.rejects``.

    ``parallel``: read and validate in a second process (default: for files over 4 MB).
    ``on_progress(characters_read, rows, refused)`` is called after each batch.
    """
    if parallel is None:
        parallel = os.path.getsize(options.path) >= PARALLEL_MIN_BYTES
    report = BulkReport()
    started = time.perf_counter()
    writer: Any = None
    rejects_handle: Any = None
    chunks = (
        _parallel_chunks(options, batch_size)
        if parallel
        else read_chunks(options, batch_size, outbox.clock.time)
    )
    try:
        with outbox.store.inserter(atomic=False) as inserter:
            for chunk in chunks:
                if chunk.rows:
                    screen = outbox.opt_out_screen(chunk.rows)
                    # plain tuples, in the order of NewMessageRow and NewEvent
                    stored = inserter.insert(
                        chunk.rows,  # type: ignore[arg-type]
                        chunk.events,  # type: ignore[arg-type]
                        fresh_ids=True,
                        screen=screen,
                    )
                    for result in stored:
                        if result is None:
                            continue
                        if result[1]:
                            report.accepted += 1
                        else:
                            report.duplicates += 1
                    if screen.refused:
                        chunk = _with_opted_out(chunk, stored, screen)
                if chunk.refused:
                    if writer is None:
                        rejects_handle = open(options.rejects, "w", newline="", encoding="utf-8")  # noqa: SIM115
                        writer = csv.writer(rejects_handle)
                        writer.writerow([*options.header, "line", "field", "error"])
                    for line, values, field_name, message in chunk.refused:
                        writer.writerow([*values, line, field_name or "", message])
                        report.reasons[_reason(field_name, message)] += 1
                    report.rejected += len(chunk.refused)
                report.total += chunk.lines
                if on_progress is not None:
                    on_progress(chunk.position, report.total, report.rejected)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        if rejects_handle is not None:
            rejects_handle.close()
    report.rejects_file = options.rejects if report.rejected else None
    report.elapsed = time.perf_counter() - started
    return report


def _with_opted_out(
    chunk: _Chunk, stored: list[tuple[str, bool] | None], screen: OptOutScreen
) -> _Chunk:
    """``chunk`` with the rows the insert refused (their recipient opted out) among its refused
    rows, in line order."""
    refused = list(chunk.refused)
    for index, result in enumerate(stored):
        if result is None:
            line, values = chunk.sources[index]
            error = screen.refused[index]
            refused.append((line, values, error.field, error.message))
    refused.sort(key=lambda item: item[0])
    return replace(chunk, refused=refused)


def _reason(field_name: str | None, message: str) -> str:
    # "to '555': too short; check for missing digits" -> "to: too short"
    text = message.split(": ", 1)[1] if "': " in message else message
    text = text.split(";", 1)[0]
    return f"{field_name}: {text}" if field_name else text


def _parallel_chunks(options: BulkOptions, batch_size: int) -> Iterator[_Chunk]:
    """:func:`read_chunks` run in a child process, its batches received here."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_produce, args=(options, batch_size, sender), name="smsgate-bulk-reader", daemon=True
    )
    child.start()
    sender.close()
    try:
        while True:
            try:
                item = receiver.recv()
            except EOFError:
                raise InvalidMessage(
                    "the bulk reader process stopped unexpectedly", field="file"
                ) from None
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        receiver.close()
        child.join(timeout=5)
        if child.is_alive():
            child.terminate()


def _produce(options: BulkOptions, batch_size: int, conn: Any) -> None:
    try:
        for chunk in read_chunks(options, batch_size, time.time):
            conn.send(chunk)
        conn.send(None)
    except SmsgateError as exc:
        conn.send(InvalidMessage(exc.message, field=exc.field))
    except Exception as exc:  # pragma: no cover - reported to the parent, which raises it
        conn.send(InvalidMessage(f"reading {options.path} failed: {exc}", field="file"))
    finally:
        conn.close()
