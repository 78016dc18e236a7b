"""Serving the local store to other DICOM nodes: a Query/Retrieve SCP (``workstation serve``)."""

from workstation.nodes import DEFAULT_SERVE_PORT
from workstation.serve.catalogue import IndexCatalogue, Located
from workstation.serve.scp import QRServer

__all__ = ["DEFAULT_SERVE_PORT", "IndexCatalogue", "Located", "QRServer"]
