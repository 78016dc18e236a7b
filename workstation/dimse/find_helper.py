"""C-FIND in a helper process, so the window's GIL never meets the thread reading the matches.

While a large C-FIND streams in, the reading thread (pynetdicom's DUL reactor when this was
measured; our own requestor now) reads and decodes PDUs without a pause, giving the GIL up
for every socket call and taking it straight back. Such a
thread starves the GUI thread: whenever the GUI thread needs the GIL (any Python slot, any
model call while painting) it is woken when the reader lets go and finds it taken again.
Measured with 10,000 studies from Orthanc (``tests/benchmarks/bench_gui.py``): stalls of
0.3-2.7 s with the association in the window's process, the reader on a CPU for 687 ms of a
714 ms stall; with the association in this helper, the longest stall was 40-75 ms.

:class:`FindProcess` starts ``python -m workstation.dimse.find_helper`` on its first query, or
when :meth:`FindProcess.start` is called: the window does that in a worker a few seconds after it
is up, since the helper's imports take ~0.5 s of a CPU that its first paint would otherwise
share. The helper runs every query with
:func:`workstation.find` in a thread of its own, so that a cancel reaches it at any time, and
streams :class:`~workstation.results.StudyRow` batches back; its log records are replayed into
this process's logging. A query may name a ``prepare`` callable (pickled by reference, so it
must live in a module the helper can import without Qt): the helper calls it on each row and
sends what it returns, so the window's per-row work (its refine, its table cells) costs the
window's process nothing. The helper runs at a lower priority (:data:`NICENESS`): on a busy
machine the window's GUI thread gets a CPU before it. Frames are length-prefixed pickles on the
helper's stdin and stdout, a private pipe between two processes of the same program. When the
helper cannot start or dies, queries run in the calling thread, as before.

Rows are framed (:data:`BATCH_ROWS`, or what came within :data:`BATCH_SECONDS`) only so that
one pickle carries many; the throttle the user sees is the window's one
(:class:`~workstation.ui.common.batch_buffer.BatchBuffer`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from workstation.cancel import CancelToken
from workstation.dimse.find import find
from workstation.errors import WorkstationError
from workstation.logs import tame_warnings
from workstation.nodes import CANCEL_GRACE, RemoteNode
from workstation.query import Query
from workstation.results import StudyRow

log = logging.getLogger(__name__)

#: Rows per frame, and seconds a row may wait for others before it is sent anyway.
BATCH_ROWS = 200
BATCH_SECONDS = 0.02
#: How much nicer than the window the helper runs (``os.nice``): it yields a CPU to the GUI.
NICENESS = 5
T = TypeVar("T")
_HEADER = struct.Struct("<I")
_LOG_FIELDS = ("name", "levelno", "levelname", "pathname", "lineno", "funcName", "created")


@dataclass
class FindOutcome:
    """Filled in when a query ends: whether the limit stopped it (see ``FindResults``)."""

    limited: bool = False


class HelperFailed(WorkstationError):
    """The helper process ended while a query was running."""


class FindProcess:
    """The window's C-FIND helper process; any thread may run queries through it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the queues and the process
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._queues: dict[int, queue.Queue[tuple[str, int, Any]]] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._started = False  # start() ran, or close() did: never start again

    def start(self) -> None:
        """Start the helper process, once (any thread; the first query does it otherwise)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            if not sys.executable:  # embedded without an interpreter to start
                log.warning("no C-FIND helper process (no Python executable); searching here")
                return
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "workstation.dimse.find_helper"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=_helper_environment(),
                )
            except OSError as exc:
                log.warning("no C-FIND helper process (%s); searching in this process", exc)
                return
            stdout = self._process.stdout
        assert stdout is not None
        threading.Thread(
            target=self._read, args=(stdout,), name="find-helper-reader", daemon=True
        ).start()

    def study_rows(
        self,
        node: RemoteNode,
        query: Query,
        *,
        calling_aet: str,
        limit: int | None,
        cancel: CancelToken,
        outcome: FindOutcome,
    ) -> Iterator[list[StudyRow]]:
        """STUDY-level matches of ``query`` on ``node`` as rows, in batches as they arrive.

        Blocks between batches (call it in a worker). Raises what :func:`workstation.find`
        raises; ``outcome.limited`` is set at the end. A cancel ends the iteration at once: the
        helper still stops the C-FIND (C-CANCEL, then abort), but the worker does not wait for
        the PACS, so rapid searches that replace each other never pile up waiting workers.
        """
        return self.prepared_rows(
            node, query, _same, calling_aet=calling_aet, limit=limit, cancel=cancel,
            outcome=outcome,
        )  # fmt: skip

    def prepared_rows(
        self,
        node: RemoteNode,
        query: Query,
        prepare: Callable[[StudyRow], T],
        *,
        calling_aet: str,
        limit: int | None,
        cancel: CancelToken,
        outcome: FindOutcome,
    ) -> Iterator[list[T]]:
        """As :meth:`study_rows`, each row turned into ``prepare(row)`` in the helper.

        ``prepare`` must pickle (a module-level function, or an instance of a module-level
        class) from a module that imports no Qt; what it returns must pickle too.
        """
        self.start()
        request = next(self._ids)
        answers: queue.Queue[tuple[str, int, Any]] = queue.Queue()
        with self._lock:
            self._queues[request] = answers
        if not self._send(("find", request, node, query, calling_aet, limit, node.label, prepare)):
            with self._lock:
                del self._queues[request]
            results = find(node, query, calling_aet=calling_aet, limit=limit, cancel=cancel)
            yield from _batches(results, node.label, prepare)
            outcome.limited = results.limited
            return

        def send_cancel() -> None:
            self._send(("cancel", request))
            answers.put(("cancelled", request, None))  # stop waiting for the helper

        unregister = cancel.on_cancel(send_cancel)
        try:
            while True:
                kind, _, payload = answers.get()
                if kind == "rows":
                    yield payload
                elif kind == "done":
                    outcome.limited = payload
                    return
                elif kind == "cancelled":
                    return
                else:
                    raise payload
        finally:
            unregister()
            with self._lock:
                self._queues.pop(request, None)

    def close(self) -> None:
        """End the helper without waiting: it cancels what runs (C-CANCEL), then exits."""
        with self._lock:
            process, self._process = self._process, None
            self._started = True
        if process is None or process.stdin is None:
            return
        with self._write_lock, contextlib.suppress(OSError):
            process.stdin.close()
        threading.Thread(target=_reap, args=(process,), name="find-helper-reaper").start()

    def _send(self, frame: tuple[Any, ...]) -> bool:
        with self._lock:
            process = self._process
        if process is None or process.stdin is None or process.poll() is not None:
            return False
        try:
            with self._write_lock:
                _write(process.stdin, frame)
        except (OSError, ValueError):  # the helper is gone, or we closed its stdin
            return False
        return True

    def _read(self, stream: IO[bytes]) -> None:
        """Hand each frame from the helper to its query; replay its log records."""
        while (frame := _read_frame(stream)) is not None:
            if frame[0] == "log":
                record = logging.makeLogRecord(frame[1])
                logging.getLogger(record.name).handle(record)
                continue
            with self._lock:
                answers = self._queues.get(frame[1])
            if answers is not None:
                answers.put(frame)
        with self._lock:  # the helper ended: fail what still waits
            waiting, self._queues = self._queues, {}
            self._process = None
        for request, answers in waiting.items():
            answers.put(("error", request, HelperFailed("the C-FIND helper process ended")))


def _reap(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(CANCEL_GRACE + 2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _helper_environment() -> dict[str, str]:
    """This environment, with our package first on the helper's path."""
    root = str(Path(__file__).resolve().parents[2])  # the folder holding workstation/
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}


def _same(row: StudyRow) -> StudyRow:
    return row


def _batches(
    results: Iterable[Any], source: str, prepare: Callable[[StudyRow], T]
) -> Iterator[list[T]]:
    """``prepare`` of each match's row, in lists of up to :data:`BATCH_ROWS`, a list being
    handed on as soon as a row has waited :data:`BATCH_SECONDS` for others."""
    batch: list[T] = []
    sent = time.monotonic()
    for ds in results:
        batch.append(prepare(StudyRow.from_dataset(ds, source)))
        if len(batch) >= BATCH_ROWS or time.monotonic() - sent >= BATCH_SECONDS:
            yield batch
            batch, sent = [], time.monotonic()
    if batch:
        yield batch


def _write(stream: IO[bytes], frame: tuple[Any, ...]) -> None:
    data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> Any:
    """The next frame, or None at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    data = stream.read(_HEADER.unpack(header)[0])
    return pickle.loads(data)


# -- the helper ----------------------------------------------------------------------------------


class _Forward(logging.Handler):
    """Sends log records to the window's process."""

    def __init__(self, send: Any) -> None:
        super().__init__(logging.INFO)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        fields = {key: getattr(record, key) for key in _LOG_FIELDS}
        fields["msg"] = self.format(record) if record.exc_info else record.getMessage()
        self._send(("log", fields))


def serve() -> None:
    """The helper's main loop: read requests until the window closes our stdin."""
    out, requests = sys.stdout.buffer, sys.stdin.buffer
    sys.stdout = sys.stderr  # stdout carries frames only
    with contextlib.suppress(AttributeError, OSError):  # no os.nice on Windows
        os.nice(NICENESS)
    lock = threading.Lock()

    def send(frame: tuple[Any, ...]) -> None:
        with lock:
            _write(out, frame)

    root = logging.getLogger()
    root.addHandler(_Forward(send))
    root.setLevel(logging.INFO)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # as the window does
    # pydicom's warnings about a peer's values: one line each, rate-limited
    tame_warnings(report_at_exit=False)
    tokens: dict[int, CancelToken] = {}
    threads: list[threading.Thread] = []
    while (frame := _read_frame(requests)) is not None:
        if frame[0] == "cancel" and frame[1] in tokens:
            tokens[frame[1]].cancel()
        elif frame[0] == "find":
            token = tokens[frame[1]] = CancelToken()
            thread = threading.Thread(target=_answer, args=(send, token, *frame[1:]), daemon=True)
            thread.start()
            threads.append(thread)
    for token in tokens.values():  # the window is gone: stop what runs, politely
        token.cancel()
    for thread in threads:
        thread.join(CANCEL_GRACE + 1)


def _answer(
    send: Any,
    token: CancelToken,
    request: int,
    node: RemoteNode,
    query: Query,
    calling_aet: str,
    limit: int | None,
    source: str,
    prepare: Callable[[StudyRow], Any],
) -> None:
    try:
        results = find(node, query, calling_aet=calling_aet, limit=limit, cancel=token)
        for batch in _batches(results, source, prepare):
            send(("rows", request, batch))
        send(("done", request, results.limited))
    except Exception as exc:
        if not isinstance(exc, WorkstationError):
            log.exception("C-FIND on %s failed unexpectedly", node)
        try:
            pickle.dumps(exc)
        except Exception:
            exc = WorkstationError(f"{type(exc).__name__}: {exc}")
        send(("error", request, exc))


if __name__ == "__main__":
    serve()
