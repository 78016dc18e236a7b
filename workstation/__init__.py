"""workstation: a DICOM Query/Retrieve workstation.

The package re-exports the core's verbs so a script needs one import::

    import workstation as ws
    pacs = ws.RemoteNode.parse("ORTHANC@127.0.0.1:4242")
    ws.echo(pacs)
    for study in ws.find(pacs, ws.Query.study(PatientName="Müller*")):
        print(study.PatientName, study.StudyInstanceUID)
"""

from workstation.cancel import CancelToken
from workstation.dimse.echo import EchoResult, echo
from workstation.dimse.find import FindResults, find
from workstation.dimse.outcome import RetrieveOutcome, RetrieveProgress, RetrieveState
from workstation.dimse.retrieve import get, move, retry
from workstation.dimse.status import describe as describe_status
from workstation.dimse.storage import StorageServer
from workstation.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionFailed,
    DimseTimeout,
    InvalidInput,
    NetworkError,
    OperationFailed,
    PortInUse,
    WorkstationError,
)
from workstation.nodes import LocalAE, RemoteNode, RetrieveMethod
from workstation.query import InformationModel, Level, Query
from workstation.store import LocalStore

__all__ = [
    "AssociationAborted",
    "AssociationRejected",
    "CancelToken",
    "ConnectionFailed",
    "DimseTimeout",
    "EchoResult",
    "FindResults",
    "InformationModel",
    "InvalidInput",
    "Level",
    "LocalAE",
    "LocalStore",
    "NetworkError",
    "OperationFailed",
    "PortInUse",
    "Query",
    "RemoteNode",
    "RetrieveMethod",
    "RetrieveOutcome",
    "RetrieveProgress",
    "RetrieveState",
    "StorageServer",
    "WorkstationError",
    "describe_status",
    "echo",
    "find",
    "get",
    "move",
    "retry",
]
