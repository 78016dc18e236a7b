"""A remote node as typed in the Nodes dialog, possibly invalid until :meth:`NodeDraft.build`.

The dialog keeps one :class:`NodeDraft` per listed node while the user edits, so a half-typed
port or an empty name is kept as typed; :meth:`NodeDraft.build` checks the draft with
:class:`~workstation.nodes.RemoteNode`, whose plain-language :class:`InvalidInput` message the
dialog shows. No Qt here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from workstation.errors import InvalidInput
from workstation.nodes import (
    CHARSETS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DIMSE_TIMEOUT,
    RemoteNode,
    RetrieveMethod,
)


@dataclass
class NodeDraft:
    """A node as typed, possibly invalid; :meth:`build` checks it with :class:`RemoteNode`."""

    name: str = "New node"
    ae_title: str = "PACS"
    host: str = "127.0.0.1"
    port: str = "104"
    retrieve_method: RetrieveMethod = RetrieveMethod.MOVE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    dimse_timeout: float = DEFAULT_DIMSE_TIMEOUT
    retrieve_associations: int = 1
    charset: str = CHARSETS[0]
    uid_lists: bool = True
    #: A DICOMweb node's URL and authentication, kept as saved (``workstation nodes add``
    #: edits them; host and port then come from the URL).
    url: str = ""
    auth: str = ""
    username: str = ""
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_verify_host: bool = True

    @classmethod
    def of(cls, node: RemoteNode) -> NodeDraft:
        values = {f.name: getattr(node, f.name) for f in dataclasses.fields(cls)}
        return cls(**{**values, "port": str(node.port)})

    def build(self) -> RemoteNode:
        if not self.name.strip():
            raise InvalidInput("give the node a name, e.g. PACS or ORTHANC")
        return RemoteNode(
            ae_title=self.ae_title,
            host=self.host.strip(),
            port=self.port.strip(),  # type: ignore[arg-type]  # RemoteNode checks the text
            name=self.name.strip(),
            retrieve_method=self.retrieve_method,
            connect_timeout=self.connect_timeout,
            dimse_timeout=self.dimse_timeout,
            retrieve_associations=self.retrieve_associations,
            charset=self.charset,
            uid_lists=self.uid_lists,
            url=self.url,
            auth=self.auth,
            username=self.username,
            tls=self.tls,
            tls_ca=self.tls_ca.strip(),
            tls_cert=self.tls_cert.strip(),
            tls_key=self.tls_key.strip(),
            tls_verify_host=self.tls_verify_host,
        )
