"""DICOMweb nodes (PS3.18): QIDO-RS search, WADO-RS retrieve and STOW-RS send over HTTP(S).

A node with a ``url`` (:attr:`workstation.nodes.RemoteNode.is_web`) is served here; the DIMSE
entry points (:func:`workstation.find`, :func:`workstation.get`, :func:`workstation.move`,
:func:`workstation.send`, :func:`workstation.echo`) hand such a node over, so the CLI, the
window and the retrieve queue need nothing else. The HTTP stack is the standard library's
``http.client`` with our own streaming ``multipart/related`` reader (:mod:`.multipart`).
"""
