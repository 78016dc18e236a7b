"""Our storage SCP: receives C-STOREs and hands the bytes to the local store (PS3.4 Annex B).

The SCP is the lean acceptor of :mod:`workstation.dimse.wire.scp`: one thread per association,
each instance streamed as it arrives. :class:`StoreSink` turns an instance into a file in the
store: small instances are gathered in memory and written once, large ones spill to a
temporary file in the store's ``.incoming`` as their fragments come, so memory stays flat
whatever the study size. When the last fragment is in, the data set is walked to its end
(a truncated one, or one whose lengths lie, is refused), its UIDs are checked against the
C-STORE request, and the file is published atomically (for our own retrieves, right after
the success response went out, on the same thread: no hand-off to another thread). The
store's index thread does the SQLite work. Nothing here touches Qt.

What arrived is told on two channels. :meth:`StoreSink.subscribe`: each instance as soon as
its file is in place, without waiting for the index, on the association's thread; running
retrieves count their arrivals this way.
:meth:`LocalStore.add_listener <workstation.store.local_store.LocalStore.add_listener>`: lists
of instances once indexed, on the store's index thread, whatever brought them (C-STORE,
C-GET, import); the window's Local columns and store browser follow that one.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workstation import audit
from workstation.dimse.ports import program_on_port
from workstation.dimse.wire.negotiation import Negotiated
from workstation.dimse.wire.scp import Acceptor
from workstation.errors import InvalidInput, PortInUse, StoreError
from workstation.listeners import Listeners
from workstation.nodes import LocalAE
from workstation.store import LocalStore, StoredInstance
from workstation.store.filemeta import file_meta
from workstation.store.local_store import DatasetMismatch
from workstation.store.records import InstanceRecord

if TYPE_CHECKING:
    from workstation.dimse.tls import TlsServerConfig

log = logging.getLogger(__name__)

Subscriber = Callable[[StoredInstance], None]

# C-STORE response statuses (PS3.4 B.2.3)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

#: An instance larger than this is written to disk as it arrives rather than at the end.
SPILL_SIZE = 1 << 21


class StoreSink:
    """Turns C-STORE requests into stored instances; shared by the SCP and by C-GET."""

    def __init__(self, store: LocalStore, *, batched_sync: bool = False) -> None:
        self.store = store
        #: Answer pushes too before their fsync (see :meth:`begin`): the user's choice.
        self.batched_sync = batched_sync
        self._subscribers: Listeners[StoredInstance] = Listeners("a storage subscriber failed", log)
        self._lock = threading.Lock()
        #: Deferred writes owed (checked and answered, not written yet), by ticket.
        self._owed: set[int] = set()
        self._tickets = itertools.count()
        self.received = 0
        self._write_failures = 0
        self._write_failure_reason = ""
        #: Instances whose C-STORE has begun and is neither stored nor abandoned yet.
        self._inflight = 0
        self._settled = threading.Condition(self._lock)
        #: What each association running pushed so far (for the audit trail), by id().
        self._pushes: dict[int, audit.PushTally] = {}

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` (on an association thread) for each instance stored; returns a
        function that unsubscribes it."""
        return self._subscribers.add(callback)

    def store_instance(
        self,
        data: bytes | Path,
        caller: str,
        expect: tuple[str, str],
        *,
        durable: bool = True,
        tally: audit.PushTally | None = None,
    ) -> tuple[int, str | None]:
        """Store a received Part-10 file (bytes, or a temporary file it consumes); return the
        C-STORE status and comment."""
        try:
            if isinstance(data, bytes):
                stored = self.store.store_bytes(
                    data, source_aet=caller, expect=expect, durable=durable
                )
            else:
                stored = self.store.store_file(
                    data, source_aet=caller, move=True, expect=expect, durable=durable
                )
        except (DatasetMismatch, InvalidInput) as exc:
            return _refused(exc, data, caller)
        except (OSError, StoreError) as exc:
            log.error("cannot write an instance from %s to the store: %s", caller, exc)
            self._write_failed(exc)
            _discard(data)
            return OUT_OF_RESOURCES, "cannot write to the local store"
        if tally is not None:
            tally.studies[stored.study_uid] = None
        self._announce(stored)
        return SUCCESS, None

    def settle(self, timeout: float) -> bool:
        """Wait until no instance is half-received (an association still delivering one when
        a retrieve ends), at most ``timeout`` seconds; whether that was reached."""
        with self._settled:
            return self._settled.wait_for(lambda: self._inflight == 0, timeout)

    def _track(self, delta: int) -> None:
        with self._settled:
            self._inflight += delta
            if not self._inflight:
                self._settled.notify_all()

    def write_failures(self) -> tuple[int, str]:
        """How many received instances the store failed to write so far, and the last reason
        (``No space left on device``, say): a retrieve reports them as the cause of what is
        missing."""
        with self._lock:
            return self._write_failures, self._write_failure_reason

    def _write_failed(self, exc: Exception) -> None:
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(exc)
        with self._lock:
            self._write_failures += 1
            self._write_failure_reason = reason

    def _announce(self, stored: StoredInstance) -> None:
        with self._lock:
            self.received += 1
        self._subscribers.emit(stored)

    def check_deferred(
        self, data: bytes, caller: str, expect: tuple[str, str]
    ) -> tuple[int, str | None, tuple[InstanceRecord, int] | None]:
        """Check an instance of our own retrieves now (a refusal is answered as usual) and owe
        its write: the status, comment, and (record, ticket) to pass to :meth:`write_deferred`
        once the success response is sent, so the sender prepares its next instance while
        this one is written. The success then means "received intact"; if our process dies
        before the write, the instance is missing from the store and the retrieve's check or
        Retry fetches it again from the PACS, which still holds it."""
        try:
            record = self.store.check_bytes(data, expect=expect)
        except (DatasetMismatch, InvalidInput) as exc:
            status, comment = _refused(exc, data, caller)
            return status, comment, None
        with self._lock:
            ticket = next(self._tickets)
            self._owed.add(ticket)
        return SUCCESS, None, (record, ticket)

    def write_deferred(self, record: InstanceRecord, ticket: int, data: bytes, caller: str) -> None:
        """Write an instance :meth:`check_deferred` accepted (and announce it)."""
        try:
            stored = self.store.store_checked(record, data, source_aet=caller, durable=False)
        except (OSError, StoreError) as exc:
            log.error(
                "cannot write an instance from %s to the store (it will be missing from "
                "the retrieve): %s",
                caller,
                exc,
            )
            self._write_failed(exc)
        except Exception:
            log.exception("writing a received instance failed")
        else:
            self._announce(stored)
        finally:
            with self._settled:
                self._owed.discard(ticket)
                self._settled.notify_all()  # drain(); no system call when none waits

    def drain(self, timeout: float = 120.0) -> None:
        """Wait until every instance deferred so far is written (and announced); instances
        deferred meanwhile by other retrieves are not waited for."""
        with self._settled:
            owed = set(self._owed)
            if owed and not self._settled.wait_for(lambda: owed.isdisjoint(self._owed), timeout):
                log.warning("deferred writes did not end within %g s", timeout)

    def close(self) -> None:
        """Wait for the deferred writes (a C-GET's own sink, when its retrieve ends)."""
        self.drain()

    def begin(
        self,
        assoc: Negotiated,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        *,
        sub_operation: bool,
    ) -> _Incoming:
        """Where the fragments of one instance go (the lean SCP's and C-GET's hook).

        A pushed instance is fsynced before we answer success: the sender may delete it then.
        An instance sent for one of our retrieves (the PACS keeps its copy) is answered once
        it is complete under its final name, and made durable with the next index commit (see
        LocalStore); so are pushes when the user chose ``batched_sync``.
        """
        return _Incoming(
            self,
            assoc.calling_aet,
            sop_class_uid,
            sop_instance_uid,
            transfer_syntax,
            durable=not (sub_operation or self.batched_sync),
            defer=sub_operation,
            tally=None if sub_operation else self._tally(assoc),
        )

    def _tally(self, assoc: Negotiated) -> audit.PushTally:
        tally = self._pushes.get(id(assoc))
        if tally is None:
            with self._lock:
                tally = self._pushes.setdefault(
                    id(assoc), audit.PushTally(assoc.calling_aet, assoc.called_aet)
                )
        return tally

    def association_ended(self, assoc: Negotiated, host: str) -> None:
        """An association ended (the lean SCP's hook): audit what it pushed, if anything.
        Instances sent for a retrieve are the retrieve's to audit."""
        with self._lock:
            tally = self._pushes.pop(id(assoc), None)
        if tally is not None:
            tally.host = host
            audit.record_push(self.store, tally)


class _Incoming:
    """One instance being received: in memory while small, then in a temporary file."""

    def __init__(
        self,
        sink: StoreSink,
        caller: str,
        sop_class: str,
        sop_instance: str,
        syntax: str,
        *,
        durable: bool,
        defer: bool = False,
        tally: audit.PushTally | None = None,
    ) -> None:
        self.sink = sink
        self.tracked = True
        sink._track(1)
        self.tally = tally
        self.durable = durable
        self.defer = defer
        self.caller = caller
        self.expect = (sop_class, sop_instance)
        self.refusal: tuple[int, str | None] | None = None
        self.parts: list[bytes] = []
        self.size = 0
        self.fd: int | None = None
        self.path: Path | None = None
        #: A checked instance whose write waits for :meth:`complete` (record, ticket, data).
        self.owed: tuple[InstanceRecord, int, bytes] | None = None
        try:
            self.parts.append(file_meta(sop_class, sop_instance, syntax, caller))
        except (UnicodeEncodeError, ValueError):
            self.refusal = (CANNOT_UNDERSTAND, "the C-STORE request's UIDs are not ASCII")

    def write(self, data: memoryview) -> None:
        if self.refusal is not None:
            return
        try:
            if self.fd is not None:
                _write_all(self.fd, data)
                return
            self.parts.append(bytes(data))
            self.size += len(data)
            if self.size > SPILL_SIZE:
                self.path = self.sink.store.temp_path()
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                for part in self.parts:
                    _write_all(self.fd, memoryview(part))
                self.parts = []
        except (OSError, StoreError) as exc:
            log.error("cannot write an instance from %s to the store: %s", self.caller, exc)
            self.sink._write_failed(exc)
            self._close_file()
            self.refusal = (OUT_OF_RESOURCES, "cannot write to the local store")

    def finish(self) -> tuple[int, str | None]:
        try:
            result = self._finish()
        finally:
            self._untrack()
        if self.tally is not None:
            if result[0] == SUCCESS:
                self.tally.stored += 1
            else:
                self.tally.failed += 1
        return result

    def _finish(self) -> tuple[int, str | None]:
        if self.refusal is not None:
            self.abandon()
            return self.refusal
        if self.path is None:
            data = b"".join(self.parts)
            self.parts = []
            if self.defer:
                status, comment, owed = self.sink.check_deferred(data, self.caller, self.expect)
                if owed is not None:
                    self.owed = (owed[0], owed[1], data)
                return status, comment
            return self.sink.store_instance(
                data, self.caller, self.expect, durable=self.durable, tally=self.tally
            )
        self._close_file()
        return self.sink.store_instance(
            self.path, self.caller, self.expect, durable=self.durable, tally=self.tally
        )

    def complete(self) -> None:
        """The response is sent: write what :meth:`finish` deferred, on this thread."""
        owed, self.owed = self.owed, None
        if owed is not None:
            record, ticket, data = owed
            self.sink.write_deferred(record, ticket, data, self.caller)

    def abandon(self) -> None:
        self.parts = []
        self._close_file()
        if self.path is not None:
            _discard(self.path)
            self.path = None
        self._untrack()

    def _untrack(self) -> None:
        if self.tracked:
            self.tracked = False
            self.sink._track(-1)

    def _close_file(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _refused(
    exc: DatasetMismatch | InvalidInput, data: bytes | Path, caller: str
) -> tuple[int, str]:
    """The answer to an instance that is not what it claims (0xA900) or does not parse (0xC000),
    with its one log line."""
    log.warning("refused an instance from %s: %s", caller, exc)
    _discard(data)
    status = DATA_SET_MISMATCH if isinstance(exc, DatasetMismatch) else CANNOT_UNDERSTAND
    return status, _comment(exc)


def _discard(data: bytes | Path) -> None:
    if isinstance(data, Path):
        with contextlib.suppress(OSError):
            os.unlink(data)


def _comment(exc: Exception) -> str:
    """An Error Comment (LO: at most 64 characters, no backslash, PS3.7 C.4.2)."""
    text = str(exc).replace("\\", "/").encode("ascii", "replace").decode("ascii")
    return text[:64]


_running: dict[int, StorageServer] = {}
_running_lock = threading.Lock()


class StorageServer(StoreSink):
    """A storage SCP listening in the background on ``local.bind:local.port``.

    Use as a context manager, or ``start()``/``stop()``. ``allowed_callers`` limits the calling
    AE titles accepted (empty: everyone). A connection must send its association request
    within ``artim`` seconds; an association silent for ``network_timeout`` is aborted.
    ``batched_sync`` answers pushes before their fsync too (faster; see :meth:`begin`).
    :meth:`running_on` finds one already started in this process, so the API does not bind
    the port twice.
    """

    def __init__(
        self,
        local: LocalAE,
        store: LocalStore,
        *,
        allowed_callers: Sequence[str] = (),
        artim: float = 10.0,
        network_timeout: float = 60.0,
        batched_sync: bool = False,
        tls: TlsServerConfig | None = None,
    ) -> None:
        super().__init__(store, batched_sync=batched_sync)
        self.local = local
        #: DICOM TLS (PS3.15 B.9): our certificate and key, and whom we require as clients
        self.tls = tls
        self.allowed_callers = list(allowed_callers)
        self.artim = artim
        self.network_timeout = network_timeout
        self._server: Acceptor | None = None
        self._start_lock = threading.Lock()
        self._shared: StorageServer | None = None

    @property
    def ae_title(self) -> str:
        return self.local.ae_title

    @property
    def port(self) -> int:
        if self._shared is not None:
            return self._shared.port
        if self._server is None:
            return self.local.port
        return self._server.port

    @property
    def running(self) -> bool:
        return self._server is not None or self._shared is not None

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        if self._shared is not None:
            return self._shared.subscribe(callback)
        return super().subscribe(callback)

    def drain(self, timeout: float = 120.0) -> None:
        if self._shared is not None:
            self._shared.drain(timeout)
        super().drain(timeout)

    def write_failures(self) -> tuple[int, str]:
        if self._shared is not None:
            return self._shared.write_failures()
        return super().write_failures()

    def settle(self, timeout: float) -> bool:
        if self._shared is not None:
            return self._shared.settle(timeout)
        return super().settle(timeout)

    @classmethod
    def running_on(cls, port: int) -> StorageServer | None:
        with _running_lock:
            return _running.get(port)

    def start(self) -> StorageServer:
        """Listen; safe to call from several threads (retrieves starting together).

        If a storage SCP of this process already listens on the port (the window's, say),
        this one shares it rather than binding the port twice: arrivals are then written by
        that server into its store.
        """
        with self._start_lock:
            if self.running:
                return self
            other = StorageServer.running_on(self.local.port) if self.local.port else None
            if other is not None:
                log.info("sharing the storage SCP already listening on port %d", other.port)
                self._shared = other
            else:
                self._start()
        return self

    def _start(self) -> None:
        ssl_context = self.tls.context() if self.tls is not None else None
        try:
            self._server = Acceptor(
                self.local.ae_title,
                self,
                bind=self.local.bind,
                port=self.local.port,
                allowed_callers=self.allowed_callers,
                max_associations=32,
                artim=self.artim,
                network_timeout=self.network_timeout,
                ssl_context=ssl_context,
            ).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                holder = program_on_port(self.local.port)
                who = f" by {holder}" if holder else " by another program"
                raise PortInUse(
                    f"cannot listen on port {self.local.port}: it is in use{who}; stop that "
                    "program or choose another port (--port, or the Local AE settings)"
                ) from None
            if isinstance(exc, socket.gaierror):
                raise PortInUse(
                    f"cannot listen on {self.local.bind}: no such address on this computer "
                    "(check --bind, or the Local AE settings)"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise PortInUse(
                    f"cannot listen on {self.local.bind}: it is not an address of this "
                    "computer (check --bind, or the Local AE settings)"
                ) from None
            raise PortInUse(
                f"cannot listen on {self.local.bind}:{self.local.port}: {exc}"
            ) from None
        with _running_lock:
            _running[self.port] = self
        log.info(
            "storage SCP %s listening on port %d%s",
            self.ae_title,
            self.port,
            " (DICOM TLS)" if ssl_context is not None else "",
        )

    def reconfigure(
        self,
        local: LocalAE,
        *,
        allowed_callers: Sequence[str] = (),
        tls: TlsServerConfig | None = None,
    ) -> None:
        """Take another AE title, port, address, callers or TLS while listening (the window's
        Local AE settings, applied without a restart). On the same address and port the
        listener stays and the rest applies from the next association; another port or address
        is bound first, then the old listener stops (aborting its associations). When the new
        one cannot listen (:class:`PortInUse`, :class:`InvalidInput` for TLS files) nothing
        changes and the old one goes on serving. Not listening: applies at the next start."""
        context = tls.context() if tls is not None else None  # InvalidInput before any change
        with self._start_lock:
            server, old = self._server, (self.local, self.allowed_callers, self.tls)
            self.local, self.allowed_callers, self.tls = local, list(allowed_callers), tls
            if server is None:
                return
            if (local.bind, local.port) == (old[0].bind, server.port):
                server.ae_title, server.ssl_context = local.ae_title, context
                server.allowed_callers = list(allowed_callers)
                log.info("storage SCP is now %s on port %d", local.ae_title, server.port)
                return
            try:
                self._start()  # binds the new port; self._server is replaced only on success
            except BaseException:
                self.local, self.allowed_callers, self.tls = old
                raise
            old_port = server.port
            with _running_lock:
                _running.pop(old_port, None)
        server.stop()
        log.info("storage SCP stopped listening on port %d", old_port)

    def stop(self) -> None:
        with self._start_lock:
            self._shared = None
            if self._server is not None:
                self._stop()

    def _stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        with _running_lock:
            _running.pop(server.port, None)
        server.stop()
        self.drain()
        self.store.flush()
        log.info("storage SCP %s stopped", self.ae_title)

    def __enter__(self) -> StorageServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.port}"
