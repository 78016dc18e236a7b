"""workstation: a DICOM Query/Retrieve workstation.

The package re-exports the core's verbs so a script needs one import::

    import workstation as ws
    pacs = ws.RemoteNode.parse("ORTHANC@127.0.0.1:4242")
    ws.echo(pacs)
    for study in ws.find(pacs, ws.Query.study(PatientName="Müller*")):
        print(study.PatientName, study.StudyInstanceUID)

The names are imported on first use (PEP 562), so ``workstation echo`` does not pay for
pydicom and the retrieve machinery it never touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CancelToken": "workstation.cancel",
    "EchoResult": "workstation.dimse.echo",
    "echo": "workstation.dimse.echo",
    "FindResults": "workstation.dimse.find",
    "find": "workstation.dimse.find",
    "RetrieveOutcome": "workstation.dimse.outcome",
    "RetrieveProgress": "workstation.dimse.outcome",
    "RetrieveState": "workstation.dimse.outcome",
    "get": "workstation.dimse.retrieve",
    "move": "workstation.dimse.retrieve",
    "retry": "workstation.dimse.retrieve",
    "SendOutcome": "workstation.dimse.send",
    "SendProgress": "workstation.dimse.send",
    "SendState": "workstation.dimse.send",
    "send": "workstation.dimse.send",
    "describe_status": "workstation.dimse.status",
    "StorageServer": "workstation.dimse.storage",
    "TlsServerConfig": "workstation.dimse.tls",
    "TlsFailed": "workstation.errors",
    "AssociationAborted": "workstation.errors",
    "AssociationRejected": "workstation.errors",
    "ConnectionFailed": "workstation.errors",
    "DimseTimeout": "workstation.errors",
    "InvalidInput": "workstation.errors",
    "NetworkError": "workstation.errors",
    "OperationFailed": "workstation.errors",
    "PortInUse": "workstation.errors",
    "WorkstationError": "workstation.errors",
    "LocalAE": "workstation.nodes",
    "RemoteNode": "workstation.nodes",
    "RetrieveMethod": "workstation.nodes",
    "InformationModel": "workstation.query",
    "Level": "workstation.query",
    "Query": "workstation.query",
    "LocalStore": "workstation.store",
    "QRServer": "workstation.serve",
    "ImportReport": "workstation.store.importer",
    "import_paths": "workstation.store.importer",
    "ExportReport": "workstation.export",
    "export_instances": "workstation.export",
}
_RENAMED = {"describe_status": "describe"}

__all__ = [
    "AssociationAborted",
    "AssociationRejected",
    "CancelToken",
    "ConnectionFailed",
    "DimseTimeout",
    "EchoResult",
    "ExportReport",
    "FindResults",
    "ImportReport",
    "InformationModel",
    "InvalidInput",
    "Level",
    "LocalAE",
    "LocalStore",
    "NetworkError",
    "OperationFailed",
    "PortInUse",
    "QRServer",
    "Query",
    "RemoteNode",
    "RetrieveMethod",
    "RetrieveOutcome",
    "RetrieveProgress",
    "RetrieveState",
    "SendOutcome",
    "SendProgress",
    "SendState",
    "StorageServer",
    "TlsFailed",
    "TlsServerConfig",
    "WorkstationError",
    "describe_status",
    "echo",
    "export_instances",
    "find",
    "get",
    "import_paths",
    "move",
    "retry",
    "send",
]

if TYPE_CHECKING:
    from workstation.cancel import CancelToken
    from workstation.dimse.echo import EchoResult, echo
    from workstation.dimse.find import FindResults, find
    from workstation.dimse.outcome import RetrieveOutcome, RetrieveProgress, RetrieveState
    from workstation.dimse.retrieve import get, move, retry
    from workstation.dimse.send import SendOutcome, SendProgress, SendState, send
    from workstation.dimse.status import describe as describe_status
    from workstation.dimse.storage import StorageServer
    from workstation.dimse.tls import TlsServerConfig
    from workstation.errors import (
        AssociationAborted,
        AssociationRejected,
        ConnectionFailed,
        DimseTimeout,
        InvalidInput,
        NetworkError,
        OperationFailed,
        PortInUse,
        TlsFailed,
        WorkstationError,
    )
    from workstation.export import ExportReport, export_instances
    from workstation.nodes import LocalAE, RemoteNode, RetrieveMethod
    from workstation.query import InformationModel, Level, Query
    from workstation.serve import QRServer
    from workstation.store import LocalStore
    from workstation.store.importer import ImportReport, import_paths


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workstation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
