"""Our storage SCP: receives C-STOREs and hands the bytes to the local store (PS3.4 Annex B).

The handler runs on pynetdicom's association threads. It writes the encoded bytes as received
(never decoding pixel data), lets the store's writer thread do the SQLite work, and tells the
subscribers (running retrieves, the window) what arrived. It never touches Qt.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pynetdicom import evt

from workstation.dimse.association import VERIFICATION, make_ae
from workstation.dimse.ports import program_on_port
from workstation.errors import InvalidInput, PortInUse, StoreError
from workstation.nodes import LocalAE
from workstation.store import LocalStore, StoredInstance

log = logging.getLogger(__name__)

Subscriber = Callable[[StoredInstance], None]

# C-STORE response statuses (PS3.4 B.2.3)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


class StoreSink:
    """Turns C-STORE requests into stored instances; shared by the SCP and by C-GET."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.received = 0

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` (on an association thread) for each instance stored."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def handle_store(self, event: Any) -> int:
        caller = event.assoc.requestor.ae_title
        try:
            stored = self.store.store_bytes(event.encoded_dataset(), source_aet=caller)
        except InvalidInput as exc:
            log.warning("refused an instance from %s: %s", caller, exc)
            return CANNOT_UNDERSTAND
        except (OSError, StoreError) as exc:
            log.error("cannot write an instance from %s to the store: %s", caller, exc)
            return OUT_OF_RESOURCES
        with self._lock:
            self.received += 1
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(stored)
            except Exception:
                log.exception("a storage subscriber failed")
        return SUCCESS


_running: dict[int, StorageServer] = {}
_running_lock = threading.Lock()


class StorageServer(StoreSink):
    """A storage SCP listening in the background on ``local.bind:local.port``.

    Use as a context manager, or ``start()``/``stop()``. ``allowed_callers`` limits the calling
    AE titles accepted (empty: everyone). :meth:`running_on` finds one already started in this
    process, so the API does not bind the port twice.
    """

    def __init__(
        self, local: LocalAE, store: LocalStore, *, allowed_callers: Sequence[str] = ()
    ) -> None:
        super().__init__(store)
        self.local = local
        self.allowed_callers = list(allowed_callers)
        self._server: Any = None
        self._ae: Any = None
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
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        return self._server is not None or self._shared is not None

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        if self._shared is not None:
            return self._shared.subscribe(callback)
        return super().subscribe(callback)

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
        ae = make_ae(self.local.ae_title)
        ae.add_supported_context(VERIFICATION)
        ae.require_calling_aet = self.allowed_callers
        ae.network_timeout = 60
        ae.maximum_associations = 32
        try:
            self._server = ae.start_server(
                (self.local.bind, self.local.port),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, self.handle_store)],
            )
        except OSError as exc:
            ae.shutdown()
            if exc.errno == errno.EADDRINUSE:
                holder = program_on_port(self.local.port)
                who = f" by {holder}" if holder else " by another program"
                raise PortInUse(
                    f"cannot listen on port {self.local.port}: it is in use{who}; stop that "
                    "program or choose another port (--port, or the Local AE settings)"
                ) from None
            raise PortInUse(
                f"cannot listen on {self.local.bind}:{self.local.port}: {exc}"
            ) from None
        self._ae = ae
        with _running_lock:
            _running[self.port] = self
        log.info("storage SCP %s listening on port %d", self.ae_title, self.port)

    def stop(self) -> None:
        with self._start_lock:
            self._shared = None
            if self._server is not None:
                self._stop()

    def _stop(self) -> None:
        with _running_lock:
            _running.pop(self.port, None)
        self._server.shutdown()
        self._ae.shutdown()
        self._server = None
        self.store.flush()
        log.info("storage SCP %s stopped", self.ae_title)

    def __enter__(self) -> StorageServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.port}"
