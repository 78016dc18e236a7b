"""The local store as a Query/Retrieve SCP: other workstations and viewers pull from us.

:class:`QRServer` answers, on pynetdicom's AE (PS3.4 C.6.1 Patient Root, C.6.2 Study Root):

- C-ECHO;
- C-FIND at the PATIENT/STUDY/SERIES/IMAGE levels from the store's SQLite index
  (:class:`~workstation.serve.catalogue.IndexCatalogue`), every response in ISO_IR 192;
- C-MOVE to the saved nodes, by AE title (any other destination: 0xA801); sub-operations on
  an association of our AE title to that node, pending responses counting them down, the
  final response counting completed/failed/warning and listing failed SOP Instance UIDs;
- C-GET: C-STOREs on the requestor's association (its storage contexts and role selection);
- C-CANCEL of the three.

Files are sent as stored (their transfer syntax; uncompressed ones are converted when the peer
accepted only the other uncompressed syntax). Only the configured calling AE titles may
associate. One INFO line per association and per request, never a patient's name or ID.
"""

from __future__ import annotations

import errno
import logging
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from workstation.demo.matching import LEVELS, QueryError
from workstation.dimse.ports import program_on_port
from workstation.dimse.pynetdicom_ae import make_ae
from workstation.dimse.tls import TlsServerConfig, node_context
from workstation.errors import InvalidInput, PortInUse
from workstation.nodes import DEFAULT_SERVE_PORT, RemoteNode, validate_ae_title
from workstation.serve.catalogue import IndexCatalogue, Located
from workstation.store import LocalStore

log = logging.getLogger(__name__)

_MODELS = (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
)
_PATIENT_ROOT = {
    str(PatientRootQueryRetrieveInformationModelFind),
    str(PatientRootQueryRetrieveInformationModelMove),
    str(PatientRootQueryRetrieveInformationModelGet),
}
_UNCOMPRESSED: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

# PS3.4 C.4 / PS3.7 C statuses
PENDING = 0xFF00
CANCELLED = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC001
SOP_CLASS_NOT_SUPPORTED = 0x0122
#: At most this many C-MOVE/C-GET sub-operations per request (the counters are 16-bit).
MAX_SUBOPERATIONS = 65535

Destinations = Callable[[], Iterable[RemoteNode]]


class _Cancel:
    """Latches a C-CANCEL (pynetdicom's ``event.is_cancelled`` is True only once)."""

    def __init__(self, event: Event, stopping: threading.Event) -> None:
        self._event = event
        self._stopping = stopping
        self._cancelled = False

    def __bool__(self) -> bool:
        if not self._cancelled:
            self._cancelled = self._stopping.is_set() or self._event.is_cancelled
        return self._cancelled


def _caller(event: Event) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def _stub(located: Located) -> Dataset:
    """What is yielded for an instance whose file cannot be read: pynetdicom fails to send it
    (no transfer syntax) and lists its UID among the failed ones."""
    ds = Dataset()
    ds.SOPClassUID = located.sop_class_uid
    ds.SOPInstanceUID = located.sop_instance_uid
    return ds


def _contexts(instances: Sequence[Located]) -> list[Any]:
    """Presentation contexts for a C-MOVE's sub-association: each SOP class in the stored
    (compressed) transfer syntaxes and in the uncompressed ones, at most 128."""
    contexts: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for item in instances:
        syntax = UID(item.transfer_syntax_uid or ExplicitVRLittleEndian)
        native = syntax in _UNCOMPRESSED or not syntax.is_transfer_syntax
        pair = (item.sop_class_uid, "" if native else str(syntax))
        if pair in seen:
            continue
        seen.add(pair)
        contexts.append(
            build_context(item.sop_class_uid, _UNCOMPRESSED if native else [str(syntax)])
        )
        if not native and (item.sop_class_uid, "") not in seen:
            seen.add((item.sop_class_uid, ""))
            contexts.append(build_context(item.sop_class_uid, _UNCOMPRESSED))
    if len(contexts) > 128:
        log.warning(
            "a C-MOVE needs %d presentation contexts; offering the first 128", len(contexts)
        )
    return contexts[:128] or [build_context(Verification)]


class QRServer:
    """A Q/R SCP over ``store`` listening on ``bind:port`` as ``ae_title``.

    ``destinations()`` lists the nodes C-MOVE may send to (called at each C-MOVE, so nodes
    saved meanwhile count). ``allowed_callers``: the calling AE titles accepted, or None for
    any caller; an empty list is refused (nobody could associate).
    """

    def __init__(
        self,
        store: LocalStore,
        *,
        ae_title: str,
        port: int = DEFAULT_SERVE_PORT,
        bind: str = "0.0.0.0",
        destinations: Destinations = tuple,
        allowed_callers: Sequence[str] | None = None,
        tls: TlsServerConfig | None = None,
    ) -> None:
        if allowed_callers is not None and not allowed_callers:
            raise InvalidInput(
                "no calling AE title is allowed to query the store: save the nodes that "
                "should (workstation nodes add), list them (--allow AET...), or allow any "
                "caller (--allow-any)"
            )
        self.store = store
        self.ae_title = validate_ae_title(ae_title)
        self.bind = bind
        self.allowed_callers = (
            None if allowed_callers is None else [validate_ae_title(a) for a in allowed_callers]
        )
        self.catalogue = IndexCatalogue(store.index, store.root)
        #: DICOM TLS (PS3.15 B.9) for the associations we accept
        self.tls = tls
        self._destinations = destinations
        self._requested_port = port
        self._server: ThreadedAssociationServer | None = None
        self._ae: Any = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    def start(self) -> QRServer:
        with self._lock:
            if self._server is not None:
                return self
            ae = make_ae(self.ae_title)
            ae.connection_timeout = 10
            ae.acse_timeout = 30
            ae.dimse_timeout = 60
            ae.network_timeout = 120
            ae.maximum_associations = 16
            if self.allowed_callers is not None:
                ae.require_calling_aet = self.allowed_callers
            ae.add_supported_context(Verification)
            for model in _MODELS:
                ae.add_supported_context(model)
            # Storage contexts (C-GET's, with role selection) are accepted for every SOP
            # class by the process-wide unrestricted storage setting (tune_pynetdicom).
            handlers: list[Any] = [
                (evt.EVT_ACCEPTED, self._on_accepted),
                (evt.EVT_REJECTED, self._on_rejected),
                (evt.EVT_C_ECHO, self._on_echo),
                (evt.EVT_C_FIND, self._on_find),
                (evt.EVT_C_MOVE, self._on_move),
                (evt.EVT_C_GET, self._on_get),
                (evt.EVT_C_STORE, self._on_store),
            ]
            self._stopping.clear()
            ssl_context = self.tls.context() if self.tls is not None else None
            try:
                self._server = ae.start_server(
                    (self.bind, self._requested_port),
                    block=False,
                    evt_handlers=handlers,
                    ssl_context=ssl_context,
                )
            except OSError as exc:
                raise _bind_error(exc, self.bind, self._requested_port) from None
            self._ae = ae
        callers = ", ".join(self.allowed_callers) if self.allowed_callers else "any AE title"
        log.info(
            "Q/R SCP %s listening on %s:%d for %s%s",
            self.ae_title,
            self.bind,
            self.port,
            callers,
            " (DICOM TLS)" if self.tls is not None else "",
        )
        return self

    def stop(self) -> None:
        with self._lock:
            ae, self._ae, self._server = self._ae, None, None
        if ae is None:
            return
        self._stopping.set()
        ae.shutdown()
        log.info("Q/R SCP %s stopped", self.ae_title)

    def __enter__(self) -> QRServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.bind}:{self.port}"

    # -- association events --------------------------------------------------------------

    def _on_accepted(self, event: Event) -> None:
        host = event.assoc.requestor.address
        log.info("association from %s (%s) accepted", _caller(event), host)

    def _on_rejected(self, event: Event) -> None:
        host = event.assoc.requestor.address
        log.warning(
            "association from %s (%s) rejected: not an allowed caller (settings' allowed "
            "callers and saved nodes, or --allow)",
            _caller(event),
            host,
        )

    # -- services ------------------------------------------------------------------------

    def _on_echo(self, event: Event) -> int:
        log.info("C-ECHO from %s", _caller(event))
        return 0x0000

    def _on_store(self, event: Event) -> int:
        log.warning(
            "C-STORE from %s refused: the Q/R SCP does not take instances (send them to the "
            "storage SCP's port)",
            _caller(event),
        )
        return SOP_CLASS_NOT_SUPPORTED

    @staticmethod
    def _patient_root(event: Event) -> bool:
        return str(event.request.AffectedSOPClassUID) in _PATIENT_ROOT

    @staticmethod
    def _level(event: Event) -> str:
        text = str(event.identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        return text if text in LEVELS else "?"

    def _on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        caller, cancel = _caller(event), _Cancel(event, self._stopping)
        model = "Patient Root" if self._patient_root(event) else "Study Root"
        try:
            identifier = event.identifier
            level = self._level(event)
            responses = self.catalogue.find(identifier, self._patient_root(event), self.ae_title)
            count = 0
            for response in responses:
                if cancel:
                    log.info("C-FIND %s from %s cancelled after %d matches", level, caller, count)
                    yield CANCELLED, None
                    return
                count += 1
                yield PENDING, response
        except QueryError as exc:
            log.warning("C-FIND from %s refused: %s", caller, exc)
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        except (sqlite3.Error, OSError) as exc:
            log.error("C-FIND from %s failed: %s", caller, exc)
            yield UNABLE_TO_PROCESS, None
            return
        log.info("C-FIND %s (%s) from %s: %d matches", level, model, caller, count)

    def _select(self, event: Event, service: str) -> list[Located] | None:
        try:
            instances = self.catalogue.retrieve(event.identifier, self._patient_root(event))
        except QueryError as exc:
            log.warning("%s from %s refused: %s", service, _caller(event), exc)
            return None
        except (sqlite3.Error, OSError) as exc:
            log.error("%s from %s failed: %s", service, _caller(event), exc)
            return None
        if len(instances) > MAX_SUBOPERATIONS:
            log.warning(
                "%s from %s selects %d instances; sending the first %d",
                service,
                _caller(event),
                len(instances),
                MAX_SUBOPERATIONS,
            )
            instances = instances[:MAX_SUBOPERATIONS]
        return instances

    def _send(
        self, event: Event, instances: list[Located], service: str, target: str
    ) -> Iterator[tuple[int, Dataset | None]]:
        cancel = _Cancel(event, self._stopping)
        unreadable = 0
        for number, located in enumerate(instances):
            if cancel:
                log.info("%s cancelled after %d of %d instances", service, number, len(instances))
                yield CANCELLED, None
                return
            try:
                dataset: Dataset = dcmread(located.path)
            except (OSError, InvalidDicomError, ValueError) as exc:
                unreadable += 1
                log.error("cannot read %s for a %s: %s", located.path, service, exc)
                dataset = _stub(located)
            yield PENDING, dataset
        log.info(
            "%s %s from %s to %s: %d instances sent%s",
            service,
            self._level(event),
            _caller(event),
            target,
            len(instances) - unreadable,
            f", {unreadable} unreadable" if unreadable else "",
        )

    def _on_get(self, event: Event) -> Iterator[Any]:
        """EVT_C_GET: the number of sub-operations, then the datasets (PS3.4 C.4.3.3)."""
        instances = self._select(event, "C-GET")
        if instances is None:
            yield 1  # pynetdicom sends a handler's status only once sub-operations are due
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        yield len(instances)
        yield from self._send(event, instances, "C-GET", _caller(event))

    def destination(self, ae_title: str) -> RemoteNode | None:
        """The saved node a C-MOVE destination AE title names (exact, case-sensitive)."""
        wanted = ae_title.strip()
        for node in self._destinations():
            if node.ae_title == wanted:
                return node
        return None

    def _on_move(self, event: Event) -> Iterator[Any]:
        """EVT_C_MOVE: destination, sub-operation count, then datasets (PS3.4 C.4.2.3)."""
        raw = event.move_destination
        name = (raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)).strip()
        node = self.destination(name)
        if node is None:
            log.warning(
                "C-MOVE from %s to unknown destination %r refused (0xA801): save it as a node",
                _caller(event),
                name,
            )
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        instances = self._select(event, "C-MOVE")
        options: dict[str, Any] = {"contexts": _contexts(instances or [])}
        if node.tls:  # the destination is a TLS node: the sub-operations go over TLS too
            try:
                options["tls_args"] = (node_context(node), node.host)
            except InvalidInput as exc:
                log.warning("C-MOVE to %s: %s", name, exc)
        yield node.host, node.port, options
        if instances is None:
            yield 1
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        yield len(instances)
        yield from self._send(event, instances, "C-MOVE", name)


def _bind_error(exc: OSError, bind: str, port: int) -> PortInUse:
    if exc.errno == errno.EADDRINUSE:
        holder = program_on_port(port)
        who = f" by {holder}" if holder else " by another program"
        return PortInUse(
            f"cannot listen on port {port}: it is in use{who}; stop that program or choose "
            "another port (--port, or the serve port in the Local AE settings)"
        )
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return PortInUse(
            f"cannot listen on {bind}: it is not an address of this computer (check --bind, "
            "or the Local AE settings)"
        )
    return PortInUse(f"cannot listen on {bind}:{port}: {exc}")
