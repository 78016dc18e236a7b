"""The exceptions of the workstation core.

Every message is one line a person can act on: what went wrong and what to check. DICOM
statuses are results, not exceptions (see :mod:`workstation.dimse.status`); the classes here
cover bad input and transport failures, plus a failed query whose status means no results.
"""

from __future__ import annotations


class WorkstationError(Exception):
    """Base of every expected failure; ``str(exc)`` is the message to show the user."""


class InvalidInput(WorkstationError, ValueError):
    """A node, selector, query file or option the user gave cannot be used."""


class NetworkError(WorkstationError):
    """The conversation with a peer failed below the DIMSE level."""


class ConnectionFailed(NetworkError):
    """No TCP connection: refused, unreachable, unknown host or connect timeout."""


class TlsFailed(ConnectionFailed):
    """The TLS handshake with a peer failed (DICOM TLS, PS3.15 B.9): an untrusted, expired or
    mismatched certificate, a client certificate wanted, or a peer that speaks no TLS."""


class AssociationRejected(NetworkError):
    """The peer answered but refused the association (A-ASSOCIATE-RJ)."""


class AssociationAborted(NetworkError):
    """The association was aborted (A-ABORT or a dropped connection) mid-operation."""


class DimseTimeout(NetworkError):
    """The peer stopped answering within the configured DIMSE timeout."""


class NoAcceptedContext(NetworkError):
    """The peer accepted the association but none of the abstract syntaxes we need."""


class PortInUse(NetworkError):
    """Our storage SCP cannot listen because another program holds the port."""


class OperationFailed(WorkstationError):
    """A DIMSE operation ended with a failure status (C-FIND failure, C-ECHO failure...)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StoreError(WorkstationError):
    """The local store cannot save, move or index an instance (disk full, permissions, index)."""


class StoreUnusable(StoreError, InvalidInput):
    """The folder given as the local store cannot be one (a file, or it cannot be created)."""
