"""C-ECHO: the verification service (PS3.4 Annex A)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from workstation.dimse.association import VERIFICATION, associate, ended_error
from workstation.dimse.status import Category, StatusInfo, describe
from workstation.errors import DimseTimeout, OperationFailed
from workstation.nodes import DEFAULT_AE_TITLE, RemoteNode


@dataclass(frozen=True)
class EchoResult:
    node: RemoteNode
    status: StatusInfo
    seconds: float

    def __str__(self) -> str:
        return f"{self.node}: echo {self.status.meaning} in {self.seconds * 1000:.0f} ms"


def echo(node: RemoteNode, *, calling_aet: str = DEFAULT_AE_TITLE) -> EchoResult:
    """Verify that ``node`` answers a C-ECHO; raise with what to check if it does not."""
    if node.is_web:  # a DICOMweb node: one QIDO-RS search checks the URL and credentials
        from workstation.dicomweb.client import web_echo

        return EchoResult(node, describe(0x0000), web_echo(node))
    start = time.perf_counter()
    with associate(node, [(VERIFICATION, None)], calling_aet=calling_aet) as assoc:
        status = assoc.send_c_echo()
    if status < 0 and assoc.timed_out:
        raise DimseTimeout(f"{node} did not answer the C-ECHO within {node.dimse_timeout:g} s")
    if status < 0:
        raise ended_error(assoc, node, calling_aet)
    info = describe(int(status))
    if info.category is not Category.SUCCESS:
        raise OperationFailed(f"{node} answered the C-ECHO with {info}", int(status))
    return EchoResult(node, info, time.perf_counter() - start)
