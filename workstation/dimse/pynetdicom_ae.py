"""pynetdicom's AE, tuned for the workstation: for what still runs on it (the demo archive's
Q/R SCP, and the tests' quirky PACS).

Our own associations and storage SCP run on :mod:`workstation.dimse.wire`; the settings here
are process-wide in pynetdicom.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.transport import ThreadedAssociationServer

from workstation.nodes import DEFAULT_AE_TITLE

#: The largest PDU we accept; 0 tells the peer there is no limit.
MAXIMUM_PDU_SIZE = 0

_tuned = False
_tune_lock = threading.Lock()


def _nodelay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not a TCP socket (tests may hand in socketpairs)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _nodelay_on_open(event: evt.Event) -> None:
    """EVT_CONN_OPEN: the socket is connected (or accepted) and nothing is sent yet."""
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        _nodelay(transport.socket)


#: Turns Nagle's algorithm off on an association's socket, on either side.
NODELAY_HANDLER = (evt.EVT_CONN_OPEN, _nodelay_on_open)


class TunedAE(AE):
    """pynetdicom's AE with TCP_NODELAY on every socket of its associations: those it
    accepts, those it requests, and the C-MOVE sub-associations pynetdicom requests for it
    (through :meth:`associate`). pynetdicom leaves Nagle's algorithm on, which with delayed
    ACKs costs ~40 ms per DIMSE round trip even on loopback."""

    def associate(self, *args: Any, **kwargs: Any) -> Association:
        return super().associate(*args, **_with_nodelay(kwargs))

    def start_server(self, *args: Any, **kwargs: Any) -> ThreadedAssociationServer | None:
        return super().start_server(*args, **_with_nodelay(kwargs))


def _with_nodelay(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments with :data:`NODELAY_HANDLER` added to ``evt_handlers``."""
    return {**kwargs, "evt_handlers": [*(kwargs.get("evt_handlers") or []), NODELAY_HANDLER]}


def tune_pynetdicom() -> None:
    """Apply the process-wide pynetdicom settings the workstation relies on (idempotent).

    - No pretty-printing of every C-FIND identifier: pynetdicom formats each one whatever the
      log level, and identifiers carry patient data.
    - :func:`close_reactor_race`.
    """
    global _tuned
    with _tune_lock:
        if _tuned:
            return
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
        # pynetdicom's "standard" handlers summarise every PDU and DIMSE message whatever the
        # log level; ``workstation -vv`` turns them back on (see verbose_dimse_logging).
        _config.LOG_HANDLER_LEVEL = "none"
        _config.USE_SHORT_DIMSE_AET = True
        # Our storage SCP (and C-GET) accepts every storage SOP class, private ones too, in
        # any transfer syntax offered. It is process-wide in pynetdicom, so it is set here.
        _config.UNRESTRICTED_STORAGE_SERVICE = True
        close_reactor_race()
        _tuned = True


def close_reactor_race() -> None:
    """Keep pynetdicom's reactor thread from taking a response a ``send_*()`` call awaits.

    An upstream race (pynetdicom 3.0.4 and its main branch; ``Association._run_reactor`` and
    the pause in each ``send_*()``): the reactor sets ``_is_paused`` and waits on
    ``_reactor_checkpoint``. Woken by the ``set()`` that ends one ``send_c_store()``, it still
    counts as paused until it is scheduled again, so the next ``send_c_store()`` clears the
    checkpoint, sees ``_is_paused`` and sends. If the response is queued before the reactor
    runs, the reactor's ``dimse.get_msg(block=False)`` takes it and drops it ("Received
    unexpected C-STORE service message"), and ``send_c_store()`` waits for it until the DIMSE
    timeout. A C-MOVE from the demo archive or ``serve`` into a storage SCP that answers within
    a millisecond (ours) stopped midway now and then on a busy machine; pynetdicom offers no
    event or setting that reaches this loop.

    The reactor's non-blocking poll (its only caller) now finds nothing while the checkpoint is
    cleared, i.e. while a ``send_*()`` owns the association's replies. No message is lost:
    the reactor clears ``_is_paused`` before polling and a sender reads it after clearing the
    checkpoint, so either the reactor sees the checkpoint cleared or the sender waits for the
    reactor to pause again. Idempotent; a pynetdicom without the checkpoint is left as it is.
    """
    get_msg = DIMSEServiceProvider.get_msg
    if getattr(get_msg, "_waits_for_the_sender", False):
        return

    def _get_msg(self: DIMSEServiceProvider, block: bool = False) -> Any:
        checkpoint = getattr(self.assoc, "_reactor_checkpoint", None)
        if not block and isinstance(checkpoint, threading.Event) and not checkpoint.is_set():
            return None, None
        return get_msg(self, block)

    _get_msg._waits_for_the_sender = True  # type: ignore[attr-defined]
    DIMSEServiceProvider.get_msg = _get_msg  # type: ignore[method-assign]


def verbose_dimse_logging() -> None:
    """Let pynetdicom log every PDU and DIMSE message (at DEBUG), for troubleshooting."""
    tune_pynetdicom()
    _config.LOG_HANDLER_LEVEL = "standard"


def make_ae(calling_aet: str = DEFAULT_AE_TITLE) -> TunedAE:
    tune_pynetdicom()
    ae = TunedAE(ae_title=calling_aet)
    ae.maximum_pdu_size = MAXIMUM_PDU_SIZE
    return ae
