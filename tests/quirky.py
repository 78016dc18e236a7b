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
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

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
        self.ae = AE(ae_title=ae_title)
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
