"""pynetdicom SCPs written for behaviours Orthanc and DCMTK do not produce.

Each is a small Q/R SCP on a free loopback port whose handlers misbehave on purpose: slow or
endless C-FIND responses, failure statuses, responses without a Specific Character Set,
C-MOVEs that send no pending responses or answer success before storing, aborts, refusals.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import build_context, evt
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from workstation.demo.archive import CANCELLED, PENDING, DemoArchive
from workstation.dimse.pynetdicom_ae import TunedAE, close_reactor_race
from workstation.nodes import RemoteNode

LOOPBACK = "127.0.0.1"


class QuirkySCP:
    """A pynetdicom SCP with the handlers a test gives; ``with QuirkySCP(...) as scp:``."""

    def __init__(
        self,
        handlers: list[tuple[Any, Callable[..., Any]]],
        contexts: list[str] | None = None,
        ae_title: str = "QUIRKY",
        scp_roles: list[str] = (),  # type: ignore[assignment]
    ) -> None:
        self.ae = TunedAE(ae_title=ae_title)  # Nagle off, like the demo archive
        self.ae.maximum_pdu_size = 0
        for uid in contexts or [
            Verification,
            StudyRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelFind,
        ]:
            self.ae.add_supported_context(uid)
        for uid in scp_roles:
            self.ae.add_supported_context(uid, scu_role=True, scp_role=True)
        self.handlers = handlers
        self.ae_title = ae_title
        self.server: Any = None
        self.requests = 0
        self.cancelled = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def node(self) -> RemoteNode:
        return RemoteNode(self.ae_title, LOOPBACK, self.port, dimse_timeout=10, connect_timeout=5)

    def __enter__(self) -> QuirkySCP:
        self.server = self.ae.start_server((LOOPBACK, 0), block=False, evt_handlers=self.handlers)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.ae.shutdown()


def slow_find(count: int, delay: float, *, honour_cancel: bool, scp: list[QuirkySCP]) -> Any:
    """A C-FIND handler yielding ``count`` matches ``delay`` seconds apart."""

    def handler(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        for i in range(count):
            if event.is_cancelled:
                if scp:
                    scp[0].cancelled.set()
                if honour_cancel:
                    yield 0xFE00, None
                    return
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.PatientName = f"PATIENT^{i:04d}"
            ds.StudyInstanceUID = f"1.2.3.{i + 1}"
            yield 0xFF00, ds
            time.sleep(delay)
        yield 0x0000, None

    return handler


def silent_listener() -> tuple[socket.socket, int]:
    """A TCP port that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind((LOOPBACK, 0))
    sock.listen(8)
    return sock, sock.getsockname()[1]


# -- retrieve quirks ------------------------------------------------------------------------------
#
# QuirkyArchive is a DemoArchive (so the listing C-FINDs of a retrieve get real answers from its
# matching module) whose C-MOVE and C-GET a test can replace with a misbehaving handler, plus the
# pieces those handlers are built from: the destination's address, the selected instances, C-STOREs
# over an association of our own, pending responses sent by hand, and abort detection.


def peer_aborted(event: Any) -> bool:
    """True once the requestor aborted (or dropped) the association ``event`` belongs to.

    pynetdicom marks the association aborted only when the handler returns to its reactor, so a
    handler that runs for a long time peeks at the DUL queue and its state machine instead.
    """
    assoc = event.assoc
    return bool(
        assoc.acse.is_aborted()
        or assoc.dul.state_machine.current_state in ("Sta1", "Sta13")
        or not assoc.dul.is_alive()
    )


def wait_for_abort(event: Any, seconds: float) -> bool:
    """Sleep ``seconds`` in short naps; True as soon as the requestor aborts."""
    deadline = time.monotonic() + seconds
    while not peer_aborted(event):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.02))
    return True


def send_pending(event: Any, remaining: int, completed: int = 0) -> None:
    """Send a C-MOVE/C-GET Pending response by hand, with no C-STORE behind it."""
    request = event.request
    rsp = C_MOVE() if type(request).__name__ == "C_MOVE" else C_GET()
    rsp.MessageIDBeingRespondedTo = request.MessageID
    rsp.AffectedSOPClassUID = request.AffectedSOPClassUID
    rsp.Status = 0xFF00
    rsp.NumberOfRemainingSuboperations = remaining
    rsp.NumberOfCompletedSuboperations = completed
    rsp.NumberOfFailedSuboperations = 0
    rsp.NumberOfWarningSuboperations = 0
    event.assoc.dimse.send_msg(rsp, event.context.context_id)


STORE_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]

MoveQuirk = Callable[["QuirkyArchive", Any], Iterator[Any]]


class QuirkyArchive(DemoArchive):
    """A DemoArchive whose C-MOVE/C-GET a test may replace, and which records what it did.

    ``move_quirk`` / ``get_quirk``: ``handler(archive, event)`` generators in pynetdicom's
    EVT_C_MOVE / EVT_C_GET protocol, used instead of the well-behaved ones while set.
    ``refuse_find_levels``: C-FINDs at these levels (e.g. ``{"IMAGE"}``) fail with 0xC000.
    ``ignore_cancel``: C-CANCELs are noted (``cancel_seen``) but the transfer goes on, at
    ``delay_per_instance``, until the requestor aborts.
    Records: ``sent`` (SOP Instance UIDs handed out as C-STORE sub-operations or stored over an
    association of its own), ``moves``/``gets`` (requests received), ``cancel_seen``,
    ``peer_abort`` (a handler saw the requestor abort), ``aborted`` (EVT_ABORTED fired).
    """

    def __init__(self, datasets: Any, ae_title: str = "QUIRKY") -> None:
        super().__init__(datasets, ae_title=ae_title)
        self.move_quirk: MoveQuirk | None = None
        self.get_quirk: MoveQuirk | None = None
        self.ignore_cancel = False
        self.refuse_find_levels: set[str] = set()
        #: Answer every PATIENT/STUDY/SERIES match this many times (one per instance, say).
        self.repeat_matches = 1
        self.finds = 0
        #: The C-MOVE/C-GET identifiers received, in order.
        self.requests: list[Dataset] = []
        self.sent: list[str] = []
        self.moves = 0
        self.gets = 0
        self.cancel_seen = threading.Event()
        self.peer_abort = threading.Event()
        self.aborted = threading.Event()
        self._record_lock = threading.Lock()

    def start(self) -> QuirkyArchive:
        super().start()
        assert self._server is not None
        self._server.bind(evt.EVT_ABORTED, lambda event: self.aborted.set())
        return self

    # -- what a quirk handler builds with -------------------------------------------------

    def record(self, uid: str) -> None:
        with self._record_lock:
            self.sent.append(uid)

    def address(self, event: Any) -> tuple[str, int] | None:
        """The (host, port) of the C-MOVE destination, None when unknown."""
        return self._destinations.get(str(event.move_destination or "").strip())

    def destination(self, event: Any) -> tuple[Any, ...]:
        """What an EVT_C_MOVE handler yields first: host, port and storage contexts to propose
        (``(None, None)`` for an unknown destination: pynetdicom answers 0xA801)."""
        address = self.address(event)
        if address is None:
            return None, None
        contexts = [build_context(uid, STORE_SYNTAXES) for uid in self.sop_class_uids]
        return address[0], address[1], {"contexts": contexts}

    def selected(self, event: Any) -> list[Any]:
        """The archive's instances the request selects (``ArchivedInstance``: ``.dataset()``)."""
        return self._select(event, "quirky retrieve") or []

    def store_to(self, event: Any, datasets: list[Dataset]) -> list[int]:
        """C-STORE ``datasets`` to the move destination over an association of our own."""
        address = self.address(event)
        assert address is not None, "unknown move destination"
        return store_over_own_association(
            address, str(event.move_destination).strip(), datasets, self.ae_title, self.record
        )

    def refuse_storage_roles(self) -> None:
        """From now on accept the storage contexts but refuse C-GET's SCP/SCU role selection.

        Only while pynetdicom's process-wide ``_config.UNRESTRICTED_STORAGE_SERVICE`` is off:
        ``StorageServer.start()`` turns it on, and then every acceptor in the process accepts
        any storage context with whatever roles are proposed.
        """
        assert self._server is not None
        for cx in self._server.contexts:
            if cx.abstract_syntax in self.sop_class_uids:
                cx.scu_role = None
                cx.scp_role = None

    # -- handlers ---------------------------------------------------------------------------

    def _on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        self.finds += 1
        level = str(event.identifier.get("QueryRetrieveLevel", ""))
        if level in self.refuse_find_levels:
            yield 0xC000, None  # like a PACS that does not query at this level
            return
        repeat = self.repeat_matches if level != "IMAGE" else 1
        for status, match in super()._on_find(event):
            for _ in range(repeat if match is not None else 1):
                yield status, match

    def _on_move(self, event: Any) -> Iterator[Any]:
        self.moves += 1
        self.requests.append(event.identifier)
        if self.move_quirk is not None:
            yield from self.move_quirk(self, event)
        else:
            yield from super()._on_move(event)

    def _on_get(self, event: Any) -> Iterator[Any]:
        self.gets += 1
        self.requests.append(event.identifier)
        if self.get_quirk is not None:
            yield from self.get_quirk(self, event)
        else:
            yield from super()._on_get(event)

    def _send(self, event: Any, instances: list[Any], service: str) -> Iterator[Any]:
        if not self.ignore_cancel:
            for status, ds in super()._send(event, instances, service):
                if status == CANCELLED:
                    self.cancel_seen.set()
                elif ds is not None:
                    self.record(str(ds.SOPInstanceUID))
                yield status, ds
            return
        for instance in instances:
            deadline = time.monotonic() + self.delay_per_instance
            while time.monotonic() < deadline:
                if event.is_cancelled:
                    self.cancel_seen.set()  # noted, and ignored
                if peer_aborted(event):
                    self.peer_abort.set()
                    return
                time.sleep(0.02)
            self.record(instance.sop_instance_uid)
            yield PENDING, instance.dataset()


def store_over_own_association(
    address: tuple[str, int],
    called_aet: str,
    datasets: list[Dataset],
    calling_aet: str = "QUIRKY",
    on_sent: Callable[[str], None] | None = None,
) -> list[int]:
    """C-STORE ``datasets`` to ``address`` as a storescu would; return the statuses."""
    close_reactor_race()  # back-to-back send_c_store() calls to our fast SCP: see there
    ae = TunedAE(ae_title=calling_aet)
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, STORE_SYNTAXES)
    assoc = ae.associate(address[0], address[1], ae_title=called_aet)
    assert assoc.is_established, f"cannot associate with {called_aet}@{address}"
    statuses = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if on_sent is not None:
                on_sent(str(ds.SOPInstanceUID))
            statuses.append(int(status.Status) if status else -1)
    finally:
        assoc.release()
        ae.shutdown()
    return statuses


def repeated_find(matches: list[Dataset], times: int) -> Any:
    """A C-FIND handler answering each of ``matches`` ``times`` times, as an SCP that answers
    once per instance at every level does (the copies come one after another, identical)."""

    def handler(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        for match in matches:
            for _ in range(times):
                yield 0xFF00, match
        yield 0x0000, None

    return handler


def latin1_pacs_find(names: list[str]) -> Any:
    """A C-FIND handler of an old PACS holding ``names`` in Latin-1 that compares the bytes
    of the query's PatientName with them, whatever character set the query declares (``*``
    and ``?`` as wildcards, byte for byte, case-sensitive): a UTF-8 ``Gödel*`` finds nothing."""
    import fnmatch

    stored = [(name, name.encode("latin-1")) for name in names]

    def handler(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        element = event.identifier.get_item(0x00100010)
        pattern = element.value if element is not None else b""
        if isinstance(pattern, str):  # already decoded: take it back to its bytes
            pattern = pattern.encode("latin-1", "replace")
        pattern = (pattern or b"").rstrip(b" ")
        for index, (name, data) in enumerate(stored):
            if not pattern or fnmatch.fnmatchcase(data, pattern):
                ds = Dataset()
                ds.SpecificCharacterSet = "ISO_IR 100"
                ds.QueryRetrieveLevel = "STUDY"
                ds.PatientName = name
                ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.8.{index + 1}"
                yield 0xFF00, ds
        yield 0x0000, None

    return handler
