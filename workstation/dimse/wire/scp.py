"""A lean storage SCP: C-ECHO and C-STORE on our own socket loop (PS3.4 A and B, PS3.8 9).

pynetdicom decodes the A-ASSOCIATE-RQ and encodes our answer (see :mod:`.negotiation`); after
that each association is one thread reading PDUs through one buffer. Command sets are decoded
and responses encoded by :mod:`.commands` (``struct``, no pydicom); data fragments go straight
to the :class:`Incoming` that the receiver hands out, which streams them to disk. There is no
per-message event, status Dataset or queue hand-off, which is where pynetdicom spends the
~3 ms of CPU per instance that made us slower than DCMTK.

Defences against a hostile or broken peer (each refusal is one log line):

- a connection must send its A-ASSOCIATE-RQ within ``artim`` seconds (PS3.8 9.1.5, ARTIM), and
  connections that have not associated yet never take an association slot; when too many are
  waiting, the oldest is dropped;
- a PDU may not exceed the Maximum Length we announced (plus its PDV header), a command set
  may not exceed 64 kB, and data fragments are streamed to disk, so no peer makes us buffer
  more than one PDU;
- an association idle for ``network_timeout`` seconds is aborted;
- anything the protocol does not allow (data without a command, fragments of two messages
  interleaved, an unknown context) aborts the association; a partial instance is discarded.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import ssl

from workstation.dimse.wire import commands as cmd
from workstation.dimse.wire.negotiation import Negotiated, Rejection, accept
from workstation.dimse.wire.pdu import (
    A_ABORT,
    A_ASSOCIATE_RQ,
    A_RELEASE_RQ,
    MCH_COMMAND,
    MCH_LAST,
    P_DATA_TF,
    PDU_NAMES,
    RELEASE_RP,
    PduError,
    PduReader,
    TlsRecord,
    abort_pdu,
    iter_pdvs,
    p_data,
    send_all,
)

log = logging.getLogger(__name__)

#: The Maximum Length we announce: the largest P-DATA-TF body a peer may send us.
DEFAULT_MAX_PDU = 1 << 20
MAX_COMMAND_SET = 1 << 16
#: Connections that have not sent their A-ASSOCIATE-RQ yet, at most.
MAX_WAITING = 64

# C-STORE statuses (PS3.4 B.2.3) and the general ones we use (PS3.7 C)
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122


class Incoming(Protocol):
    """One instance being received: its data fragments, then its outcome."""

    def write(self, data: memoryview) -> None: ...

    def finish(self) -> tuple[int, str | None]:
        """Store what was received; return the C-STORE status and an optional comment."""
        ...

    def abandon(self) -> None:
        """The association ended before the last fragment: forget everything written."""
        ...

    def complete(self) -> None:
        """Called after :meth:`finish`, once its response is sent (or failed to go): the work
        that may follow the answer (writing a retrieve's instance) runs here, on the
        association's thread, while the peer prepares its next message."""
        ...


class Receiver(Protocol):
    def begin(
        self,
        assoc: Negotiated,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        *,
        sub_operation: bool,
    ) -> Incoming:
        """Where an instance's fragments go. ``sub_operation``: it is sent for a retrieve
        (C-MOVE sub-operation naming its originator, or a C-GET), not pushed on its own."""
        ...


class _Protocol(Exception):
    """The peer broke the protocol: abort the association."""


class Acceptor:
    """Listens on ``bind:port`` and serves C-ECHO and C-STORE with ``receiver``."""

    def __init__(
        self,
        ae_title: str,
        receiver: Receiver,
        *,
        bind: str = "127.0.0.1",
        port: int = 0,
        allowed_callers: Sequence[str] = (),
        max_associations: int = 32,
        artim: float = 10.0,
        network_timeout: float = 60.0,
        max_pdu: int = DEFAULT_MAX_PDU,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.ae_title = ae_title
        #: DICOM TLS (PS3.15 B.9): every connection shakes hands first, in its own thread
        self.ssl_context = ssl_context
        self.receiver = receiver
        self.allowed_callers = list(allowed_callers)
        self.max_associations = max_associations
        self.artim = artim
        self.network_timeout = network_timeout
        self.max_pdu = max_pdu
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((bind, port))
            self._listener.listen(128)
        except OSError:
            self._listener.close()
            raise
        self._listener.settimeout(0.2)
        self._lock = threading.Lock()
        self._waiting: dict[socket.socket, float] = {}
        self._connections: set[socket.socket] = set()
        self._established = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name=f"scp-{self.port}", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def established(self) -> int:
        """Associations established now."""
        with self._lock:
            return self._established

    def start(self) -> Acceptor:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, abort every association and wait for their threads."""
        with self._lock:
            self._stopping = True
            open_sockets = list(self._connections)
        for conn in open_sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._listener.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._connections:
                    break
            time.sleep(0.01)

    # -- accepting connections -------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping:
            try:
                conn, address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping:
                    return
                time.sleep(0.05)  # out of file descriptors, say: do not spin
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopping:
                    conn.close()
                    return
                self._connections.add(conn)
                self._waiting[conn] = time.monotonic()
                oldest = None
                if len(self._waiting) > MAX_WAITING:
                    oldest = min(self._waiting, key=self._waiting.__getitem__)
                    del self._waiting[oldest]
            if oldest is not None:
                log.warning("too many connections without an association; dropping the oldest")
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)
            threading.Thread(
                target=self._run, args=(conn, address), name="scp-assoc", daemon=True
            ).start()

    def _run(self, conn: socket.socket, address: tuple[str, int]) -> None:
        established = False
        plain = conn
        try:
            if self.ssl_context is not None:
                wrapped = self._handshake(conn, address, self.ssl_context)
                if wrapped is None:
                    return
                conn = wrapped
            negotiated = self._associate(conn, address)
            if negotiated is not None:
                established = True
                log.info(
                    "storage SCP: association from %s (%s:%d) accepted",
                    negotiated.calling_aet,
                    address[0],
                    address[1],
                )
                try:
                    _Association(self, conn, negotiated).run()
                finally:
                    ended = getattr(self.receiver, "association_ended", None)
                    if ended is not None:  # the storage SCP audits what was pushed
                        ended(negotiated, address[0])
        except Exception:  # never let one association take the server down
            log.exception("storage SCP: association from %s:%d failed", *address[:2])
        finally:
            with self._lock:
                self._waiting.pop(conn, None)
                self._connections.discard(conn)
                self._waiting.pop(plain, None)
                self._connections.discard(plain)
                if established:
                    self._established -= 1
            with contextlib.suppress(OSError):
                conn.close()

    def _handshake(
        self, conn: socket.socket, address: tuple[str, int], context: ssl.SSLContext
    ) -> socket.socket | None:
        """The TLS handshake of a new connection, within ARTIM; the TLS socket, or None (one
        log line says why) when the caller speaks plain DICOM or the handshake fails."""
        from workstation.dimse.tls import describe_server_error, looks_like_tls

        where = f"{address[0]}:{address[1]}"
        conn.settimeout(self.artim)
        try:
            first = conn.recv(2, socket.MSG_PEEK)
        except OSError:
            return None
        if not first:
            return None
        if not looks_like_tls(first):
            log.warning(
                "storage SCP: %s speaks plain DICOM to our TLS port (no TLS handshake); "
                "closed: turn on TLS for us in that peer's settings",
                where,
            )
            return None
        try:
            tls = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        except OSError:
            return None
        with self._lock:  # stop() and the waiting limit shut the TLS socket from now on
            self._connections.discard(conn)
            self._connections.add(tls)
            since = self._waiting.pop(conn, None)
            if since is not None:
                self._waiting[tls] = since
        try:
            tls.do_handshake()
        except (OSError, ValueError) as exc:
            log.warning(
                "storage SCP: TLS handshake with %s failed: %s; closed",
                where,
                describe_server_error(exc),
            )
            with self._lock:
                self._waiting.pop(tls, None)
                self._connections.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()
            return None
        return tls

    def _associate(self, conn: socket.socket, address: tuple[str, int]) -> Negotiated | None:
        """Read and answer the A-ASSOCIATE-RQ; the agreement, or None when refused."""
        conn.settimeout(self.artim)
        reader = PduReader(conn, max_length=1 << 16, buffer_size=1 << 16)
        reader.deadline = time.monotonic() + self.artim  # the whole RQ within ARTIM
        try:
            kind, body = reader.read()
        except TimeoutError:
            log.warning(
                "storage SCP: %s:%d sent no A-ASSOCIATE-RQ within %g s; closed",
                *address[:2],
                self.artim,
            )
            return None
        except TlsRecord:
            log.warning(
                "storage SCP: %s:%d began a TLS handshake on our plain DICOM port; closed: "
                "turn off TLS for us in that peer, or turn on TLS for our SCP",
                *address[:2],
            )
            return None
        except (PduError, OSError) as exc:
            log.warning("storage SCP: connection from %s:%d: %s", address[0], address[1], exc)
            return None
        with self._lock:
            self._waiting.pop(conn, None)
            at_limit = self._established >= self.max_associations
        if kind != A_ASSOCIATE_RQ:
            log.warning(
                "storage SCP: %s:%d sent %s before associating; aborted",
                address[0],
                address[1],
                PDU_NAMES[kind],
            )
            _send_quietly(conn, abort_pdu(2, 2))
            return None
        try:
            reply, negotiated = accept(
                body,
                our_aet=self.ae_title,
                max_pdu=self.max_pdu,
                allowed_callers=self.allowed_callers,
                at_limit=at_limit,
            )
        except Rejection as refused:
            log.warning("storage SCP: association from %s:%d rejected: %s", *address[:2], refused)
            _send_quietly(conn, refused.pdu)
            return None
        except ValueError as exc:
            log.warning("storage SCP: %s:%d: %s; aborted", address[0], address[1], exc)
            _send_quietly(conn, abort_pdu(2, 6))
            return None
        try:
            conn.sendall(reply)
        except OSError:
            return None
        with self._lock:
            self._established += 1
        return negotiated


class _Association:
    """The data phase of one association: commands, data fragments, release or abort."""

    def __init__(self, acceptor: Acceptor, conn: socket.socket, negotiated: Negotiated) -> None:
        self.acceptor = acceptor
        self.conn = conn
        self.negotiated = negotiated
        self.reader = PduReader(conn, max_length=acceptor.max_pdu + 6 if acceptor.max_pdu else 0)
        if not acceptor.max_pdu:
            self.reader.max_length = 1 << 31
        self.command = bytearray()
        self.pending: tuple[int, dict[int, object]] | None = None  # context id, command
        self.incoming: Incoming | None = None
        self.received = 0

    @property
    def peer(self) -> str:
        return self.negotiated.calling_aet

    def run(self) -> None:
        self.conn.settimeout(self.acceptor.network_timeout or None)
        try:
            while True:
                kind, body = self.reader.read()
                if kind == P_DATA_TF:
                    for context_id, control, data in iter_pdvs(body):
                        self._pdv(context_id, control, data)
                    if len(body) > 1 << 18:
                        self.reader.shrink()
                elif kind == A_RELEASE_RQ:
                    if self.incoming is not None or self.command:
                        raise _Protocol("released in the middle of a message")
                    _send_quietly(self.conn, RELEASE_RP)
                    log.info(
                        "storage SCP: %s released after %d instance(s)", self.peer, self.received
                    )
                    return
                elif kind == A_ABORT:
                    log.info("storage SCP: %s aborted the association", self.peer)
                    return
                else:
                    raise _Protocol(f"unexpected {PDU_NAMES[kind]}")
        except TimeoutError:
            log.warning(
                "storage SCP: nothing from %s for %g s; aborted",
                self.peer,
                self.acceptor.network_timeout,
            )
            _send_quietly(self.conn, abort_pdu(2, 0))
        except (_Protocol, PduError, cmd.CommandError) as exc:
            log.warning("storage SCP: %s broke the protocol (%s); aborted", self.peer, exc)
            _send_quietly(self.conn, abort_pdu(2, 0))
        except OSError as exc:
            log.info("storage SCP: connection to %s lost: %s", self.peer, exc)
        finally:
            if self.incoming is not None:
                self.incoming.abandon()
                self.incoming = None

    def _pdv(self, context_id: int, control: int, data: memoryview) -> None:
        if context_id not in self.negotiated.contexts:
            raise _Protocol(f"a message on presentation context {context_id}, not accepted")
        if control & MCH_COMMAND:
            if self.pending is not None:
                raise _Protocol("a command set arrived before the last one's data set")
            if len(self.command) + len(data) > MAX_COMMAND_SET:
                raise _Protocol("a command set larger than 64 kB")
            self.command += data
            if control & MCH_LAST:
                command = cmd.decode_command(self.command)
                self.command = bytearray()
                self._command(context_id, command)
            return
        if self.pending is None or self.pending[0] != context_id:
            raise _Protocol("a data set fragment without its command")
        if self.incoming is not None:
            self.incoming.write(data)
        if control & MCH_LAST:
            _, command = self.pending
            self.pending = None
            incoming, self.incoming = self.incoming, None
            assert incoming is not None  # set with every pending C-STORE
            status, comment = incoming.finish()
            self.received += status == SUCCESS
            try:
                self._respond_store(context_id, command, status, comment)
            finally:
                incoming.complete()

    def _command(self, context_id: int, command: dict[int, object]) -> None:
        field = command.get(cmd.COMMAND_FIELD)
        if field == cmd.C_ECHO_RQ:
            message_id = int(command.get(cmd.MESSAGE_ID, 0))  # type: ignore[call-overload]
            self._send(context_id, cmd.c_echo_rsp(message_id, SUCCESS))
            return
        if field != cmd.C_STORE_RQ:
            raise _Protocol(f"command 0x{field:04X} is not served here" if field else "no command")
        if not cmd.is_data_set_present(command):
            raise _Protocol("a C-STORE-RQ without a data set")
        self.pending = (context_id, command)
        abstract, transfer_syntax = self.negotiated.contexts[context_id]
        sop_class = str(command.get(cmd.AFFECTED_SOP_CLASS_UID, ""))
        sop_instance = str(command.get(cmd.AFFECTED_SOP_INSTANCE_UID, ""))
        if sop_class != abstract:
            log.warning(
                "storage SCP: %s sent a C-STORE of %s on a context for %s; refused",
                self.peer,
                sop_class,
                abstract,
            )
            self.incoming = _Refused(
                SOP_CLASS_NOT_SUPPORTED, "the SOP class differs from the presentation context's"
            )
            return
        self.incoming = self.acceptor.receiver.begin(
            self.negotiated,
            sop_class,
            sop_instance,
            transfer_syntax,
            sub_operation=cmd.MOVE_ORIGINATOR_MESSAGE_ID in command,
        )

    def _respond_store(
        self, context_id: int, command: dict[int, object], status: int, comment: str | None
    ) -> None:
        message_id = command.get(cmd.MESSAGE_ID, 0)
        self._send(
            context_id,
            cmd.c_store_rsp(
                int(message_id),  # type: ignore[call-overload]
                str(command.get(cmd.AFFECTED_SOP_CLASS_UID, "")),
                str(command.get(cmd.AFFECTED_SOP_INSTANCE_UID, "")),
                status,
                comment,
            ),
        )

    def _send(self, context_id: int, command_set: bytes) -> None:
        send_all(
            self.conn,
            p_data(context_id, command_set, command=True, max_pdu=self.negotiated.peer_max_pdu),
        )


class _Refused:
    """An instance refused when its command arrived: its data is read and dropped, and the
    refusal answered after the last fragment."""

    def __init__(self, status: int, comment: str) -> None:
        self.answer = (status, comment)

    def write(self, data: memoryview) -> None:
        pass

    def finish(self) -> tuple[int, str | None]:
        return self.answer

    def abandon(self) -> None:
        pass

    def complete(self) -> None:
        pass


def _send_quietly(conn: socket.socket, pdu: bytes) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(pdu)
