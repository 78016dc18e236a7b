"""A small Query/Retrieve SCP serving synthetic studies from memory, for ``workstation --demo``.

:class:`DemoArchive` is a real DICOM peer on loopback, built on pynetdicom's
``AE.start_server(block=False)``. It provides, for the Patient Root and Study Root information
models (PS3.4 C.6.1, C.6.2):

- Verification (C-ECHO, PS3.4 A.4);
- C-FIND at the PATIENT/STUDY/SERIES/IMAGE levels (PS3.4 C.4.1), matching as in PS3.4 C.2.2.2
  (see :mod:`workstation.demo.matching`), every response in ISO_IR 192 (PS3.5 6.1.2.3);
- C-MOVE to registered destinations (PS3.4 C.4.2), answering 0xA801 for unknown ones;
- C-GET (PS3.4 C.4.3), sending C-STORE sub-operations on the same association, which needs
  the SCP/SCU role selection of PS3.7 D.3.3.4 for each storage SOP class;
- C-CANCEL of all three (PS3.7 9.3.2.3, 9.3.3.3, 9.3.4.3): responses stop with 0xFE00.

Modality Worklist, C-STORE into the archive, storage commitment and compressed transfer
syntaxes are not offered.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from io import BytesIO
from types import TracebackType
from typing import Any

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
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

from workstation.demo.generator import Archive, generate_archive
from workstation.demo.matching import IMAGE, ArchivedInstance, Catalogue, QueryError
from workstation.dimse.pynetdicom_ae import make_ae
from workstation.nodes import RemoteNode, RetrieveMethod, validate_ae_title

log = logging.getLogger(__name__)

_PATIENT_ROOT = {
    str(PatientRootQueryRetrieveInformationModelFind),
    str(PatientRootQueryRetrieveInformationModelGet),
    str(PatientRootQueryRetrieveInformationModelMove),
}
_QR_MODELS = (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
)
_STORE_SYNTAXES: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

# PS3.7 C.4: status codes of the Q/R services used here.
PENDING = 0xFF00
CANCELLED = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900

DatasetSource = Iterable[Dataset] | Iterable[tuple[str, Dataset]] | Archive


def _encode(ds: Dataset) -> bytes:
    """The Part-10 bytes of ``ds`` (file meta added when missing, PS3.10 7.1)."""
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", Dataset()):
        ds = copy.copy(ds)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
    if "SpecificCharacterSet" not in ds:
        ds = copy.copy(ds)
        ds.SpecificCharacterSet = "ISO_IR 192"
    buffer = BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _load(source: DatasetSource) -> list[ArchivedInstance]:
    items: Iterable[Any] = source.datasets() if isinstance(source, Archive) else source
    instances: list[ArchivedInstance] = []
    seen: set[str] = set()
    for item in items:
        ds = item[1] if isinstance(item, tuple) else item
        if "SOPInstanceUID" not in ds or "StudyInstanceUID" not in ds:
            log.warning("demo archive: skipping a dataset without SOP or Study Instance UID")
            continue
        if ds.SOPInstanceUID in seen:
            continue
        seen.add(ds.SOPInstanceUID)
        instances.append(ArchivedInstance.from_part10(_encode(ds)))
    return instances


class _Cancel:
    """Latches a C-CANCEL: pynetdicom's ``event.is_cancelled`` is True only once."""

    def __init__(self, event: Event, stopping: threading.Event) -> None:
        self._event = event
        self._stopping = stopping
        self._cancelled = False

    def __bool__(self) -> bool:
        if not self._cancelled:
            self._cancelled = self._stopping.is_set() or self._event.is_cancelled
        return self._cancelled

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` (in short naps); return True as soon as cancelled."""
        deadline = time.monotonic() + seconds
        while not self:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.02))
        return True


class DemoArchive:
    """An in-memory Q/R SCP (C-ECHO, C-FIND, C-MOVE, C-GET) on ``host:port``.

    ``datasets`` are encoded once to Part-10 bytes and held in memory; each retrieve sends a
    fresh decode of them (Explicit or Implicit VR Little Endian, as negotiated).
    ``destinations`` maps C-MOVE destination AE titles to ``(host, port)``.
    ``delay_per_instance`` (seconds) slows C-GET/C-MOVE sub-operations down and
    ``delay_per_match`` C-FIND responses, so a demo or test has time to cancel.
    """

    def __init__(
        self,
        datasets: DatasetSource,
        ae_title: str = "DEMO",
        host: str = "127.0.0.1",
        port: int = 0,
        destinations: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        self.ae_title = validate_ae_title(ae_title)
        self.host = host
        self.archive: Archive | None = datasets if isinstance(datasets, Archive) else None
        self.delay_per_instance: float = 0.0
        self.delay_per_match: float = 0.0
        self._requested_port = port
        self._catalogue = Catalogue(_load(datasets))
        self._destinations: dict[str, tuple[str, int]] = {}
        for aet, (dest_host, dest_port) in (destinations or {}).items():
            self.add_destination(aet, dest_host, dest_port)
        self._ae: AE | None = None
        self._server: ThreadedAssociationServer | None = None
        self._stopping = threading.Event()
        log.debug("demo archive holds %d instances", self.instance_count)

    # -- public API ----------------------------------------------------------------------

    @property
    def instance_count(self) -> int:
        return len(self._catalogue.instances)

    @property
    def sop_class_uids(self) -> list[str]:
        """The storage SOP classes of the instances held (sorted)."""
        return sorted({i.sop_class_uid for i in self._catalogue.instances})

    @property
    def is_running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The port listened on (the requested one until :meth:`start`)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    @property
    def node(self) -> RemoteNode:
        """This archive as a node to query (C-GET, which needs no destination set-up)."""
        if not self.port:
            raise RuntimeError("the demo archive listens on no port yet: call start() first")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return RemoteNode(
            ae_title=self.ae_title,
            host=host,
            port=self.port,
            name="Demo archive",
            retrieve_method=RetrieveMethod.GET,
        )

    @property
    def destinations(self) -> dict[str, tuple[str, int]]:
        return dict(self._destinations)

    def add_destination(self, ae_title: str, host: str, port: int) -> None:
        """Register (or replace) a C-MOVE destination; effective immediately."""
        self._destinations[validate_ae_title(ae_title)] = (host, int(port))

    def part10(self, sop_instance_uid: str) -> bytes:
        """The Part-10 bytes held for one instance (KeyError if absent)."""
        for instance in self._catalogue.group(IMAGE, sop_instance_uid):
            return instance.part10
        raise KeyError(sop_instance_uid)

    def start(self) -> DemoArchive:
        """Start serving in background threads; return self."""
        if self._server is not None:
            return self
        ae = make_ae(self.ae_title)
        ae.connection_timeout = 5
        ae.acse_timeout = 10
        ae.dimse_timeout = 30
        ae.network_timeout = 120
        ae.add_supported_context(Verification)
        for model in _QR_MODELS:
            ae.add_supported_context(model)
        # C-GET (PS3.4 C.4.3): the requestor proposes the SCP role for storage, we take SCU.
        for sop_class in self.sop_class_uids:
            ae.add_supported_context(sop_class, _STORE_SYNTAXES, scu_role=True, scp_role=True)
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
        ]
        self._stopping.clear()
        self._server = ae.start_server(
            (self.host, self._requested_port), block=False, evt_handlers=handlers
        )
        self._ae = ae
        log.info("demo archive %s listening on %s:%d", self.ae_title, self.host, self.port)
        return self

    def stop(self) -> None:
        """Abort running associations and close the listening socket."""
        if self._ae is None:
            return
        self._stopping.set()
        self._ae.shutdown()
        self._ae = None
        self._server = None
        log.info("demo archive %s stopped", self.ae_title)

    def __enter__(self) -> DemoArchive:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port {self.port}" if self.is_running else "stopped"
        return f"<DemoArchive {self.ae_title} {self.instance_count} instances, {state}>"

    # -- handlers --------------------------------------------------------------------------

    def _on_echo(self, event: Event) -> int:
        return 0x0000

    @staticmethod
    def _patient_root(event: Event) -> bool:
        return str(event.request.AffectedSOPClassUID) in _PATIENT_ROOT

    def _on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        """EVT_C_FIND: one pending response per match (PS3.4 C.4.1.3.1)."""
        cancel = _Cancel(event, self._stopping)
        try:
            responses = self._catalogue.find(
                event.identifier, self._patient_root(event), self.ae_title
            )
        except QueryError as exc:
            log.warning("demo archive: C-FIND refused: %s", exc)
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        count = 0
        for response in responses:
            if cancel or (self.delay_per_match and cancel.wait(self.delay_per_match)):
                log.info("demo archive: C-FIND cancelled after %d responses", count)
                yield CANCELLED, None
                return
            count += 1
            yield PENDING, response
        log.info("demo archive: C-FIND answered %d matches", count)

    def _select(self, event: Event, service: str) -> list[ArchivedInstance] | None:
        try:
            instances = self._catalogue.retrieve(event.identifier, self._patient_root(event))
        except QueryError as exc:
            log.warning("demo archive: %s refused: %s", service, exc)
            return None
        log.info("demo archive: %s of %d instances", service, len(instances))
        return instances

    def _send(
        self, event: Event, instances: list[ArchivedInstance], service: str
    ) -> Iterator[tuple[int, Dataset | None]]:
        cancel = _Cancel(event, self._stopping)
        for number, instance in enumerate(instances):
            if cancel or (self.delay_per_instance and cancel.wait(self.delay_per_instance)):
                log.info("demo archive: %s cancelled after %d instances", service, number)
                yield CANCELLED, None
                return
            yield PENDING, instance.dataset()

    def _on_get(self, event: Event) -> Iterator[int | tuple[int, Dataset | None]]:
        """EVT_C_GET: the number of sub-operations, then the datasets (PS3.4 C.4.3.3)."""
        instances = self._select(event, "C-GET")
        if instances is None:
            yield 1  # pynetdicom sends a handler's status only once sub-operations are due
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        yield len(instances)
        yield from self._send(event, instances, "C-GET")

    def _on_move(self, event: Event) -> Iterator[Any]:
        """EVT_C_MOVE: destination, sub-operation count, then datasets (PS3.4 C.4.2.3)."""
        destination = str(event.move_destination or "").strip()
        address = self._destinations.get(destination)
        if address is None:
            log.warning("demo archive: unknown C-MOVE destination %r", destination)
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        instances = self._select(event, "C-MOVE")
        sop_classes = sorted({i.sop_class_uid for i in instances or []})
        contexts = [build_context(uid, _STORE_SYNTAXES) for uid in sop_classes[:128]]
        yield address[0], address[1], {"contexts": contexts or [build_context(Verification)]}
        if instances is None:
            yield 1
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        yield len(instances)
        yield from self._send(event, instances, "C-MOVE")


def with_recent_studies(archive: Archive, today: dt.date | None = None) -> Archive:
    """``archive`` with a few studies moved to today and yesterday (for the "Today" preset).

    The first study and the one a third of the way in are dated today, the second and the
    one two thirds in yesterday; series and content dates follow (they derive from StudyDate).
    """
    day = today or dt.date.today()
    count = len(archive.studies)
    moves = {0: day, count // 3: day, 1: day - dt.timedelta(days=1)}
    moves.setdefault(2 * count // 3, day - dt.timedelta(days=1))
    studies = tuple(
        dataclasses.replace(study, StudyDate=moves[index].strftime("%Y%m%d"))
        if index in moves
        else study
        for index, study in enumerate(archive.studies)
    )
    return dataclasses.replace(archive, studies=studies)


def demo_archive(
    seed: int = 1,
    *,
    ae_title: str = "DEMO",
    port: int = 0,
    today: dt.date | None = None,
    realistic: bool = False,
) -> DemoArchive:
    """The demo content (``generate_archive(seed)`` plus studies of today and yesterday).

    The DemoArchive is not started; its ``archive`` attribute is the generated
    :class:`~workstation.demo.generator.Archive`, from which expected results can be computed.
    ``realistic`` (the window's ``--demo``) makes the images 256 × 256 anatomical phantoms
    (:data:`REALISTIC_SIZE`) instead of 16 × 16 test patterns; the studies are the same.
    """
    content = (
        generate_archive(seed, rows=REALISTIC_SIZE, columns=REALISTIC_SIZE, realistic=True)
        if realistic
        else generate_archive(seed)
    )
    return DemoArchive(with_recent_studies(content, today), ae_title=ae_title, port=port)


#: Rows and columns of the images of ``demo_archive(realistic=True)``.
REALISTIC_SIZE = 256


__all__ = ["DemoArchive", "demo_archive", "with_recent_studies"]
