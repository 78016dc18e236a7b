"""A lean requestor: the associations we open, on our own socket loop (PS3.7, PS3.8).

:func:`open_association` connects, negotiates (:func:`.negotiation.request`) and returns a
:class:`LeanAssociation`, which speaks the DIMSE services the workstation requests (C-ECHO,
C-FIND, C-MOVE, C-GET with its C-STOREs, C-CANCEL) with the ``struct`` command codec. Its
``send_c_move``/``send_c_get``/``send_c_cancel``/``abort`` keep the signatures of pynetdicom's
``Association`` that the retrieve logic was written against (responses come as
``(status, identifier)`` pairs, the status a light :class:`StatusView`);
:meth:`LeanAssociation.find_raw` yields C-FIND matches as raw bytes, for the printers, the
listing and :class:`~workstation.identifiers.RawIdentifier`.

The reading thread is the one iterating a response generator; no thread of ours polls. A
C-CANCEL or an abort may come from any thread (sends are serialised by a lock). An abort, our
DIMSE timeout or the peer going away ends the generator with an empty (false) status, as
pynetdicom's does, after setting :attr:`is_aborted` / :attr:`timed_out`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any

from workstation.dimse.wire import commands as cmd
from workstation.dimse.wire.negotiation import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    IMPLICIT_VR_LE,
    AssociationFailure,
    Negotiated,
    request,
)
from workstation.dimse.wire.pdu import (
    A_ABORT,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    MCH_COMMAND,
    MCH_LAST,
    P_DATA_TF,
    PDU_NAMES,
    RELEASE_RP,
    RELEASE_RQ,
    PduError,
    PduReader,
    abort_pdu,
    iter_pdvs,
    p_data,
    send_all,
)

if TYPE_CHECKING:
    import ssl

    from pydicom.dataset import Dataset

    from workstation.dimse.wire.scp import Incoming, Receiver

log = logging.getLogger(__name__)

#: The Maximum Length we announce for what peers send us.
MAX_PDU = 1 << 20
#: The largest response identifier we keep in memory (C-FIND match, C-MOVE final).
MAX_IDENTIFIER = 1 << 24
PENDING = (0xFF00, 0xFF01)


@dataclass(frozen=True)
class AcceptedContext:
    """An accepted presentation context, with the attributes pynetdicom's has that we use."""

    context_id: int
    abstract_syntax: str
    transfer_syntax: tuple[str]
    as_scp: bool = False


@dataclass(frozen=True)
class RawMatch:
    """A C-FIND match as received: the identifier's bytes and their encoding."""

    data: bytes
    implicit_vr: bool


def open_association(
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str,
    contexts: Sequence[tuple[str, Sequence[str]]],
    *,
    scp_roles: Sequence[str] = (),
    connect_timeout: float | None = 10.0,
    dimse_timeout: float | None = None,
    receiver: Receiver | None = None,
    tls: ssl.SSLContext | None = None,
) -> LeanAssociation:
    """Connect, propose ``contexts`` (abstract syntax, transfer syntaxes), and negotiate.

    ``scp_roles``: SOP classes for which we ask to be the SCP (C-GET). ``receiver`` gets the
    C-STOREs a C-GET brings. ``tls``: speak DICOM TLS (PS3.15 B.9), the handshake within
    ``connect_timeout``. Raises :class:`AssociationFailure` (kind 'tls' for a failed
    handshake, its ``cause`` the :class:`ssl.SSLError`).
    """
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a host name IDNA cannot encode
        raise AssociationFailure("connect", str(exc)) from None
    if tls is not None:
        try:
            sock = tls.wrap_socket(sock, server_hostname=host)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            sock.close()
            raise AssociationFailure("tls", str(exc), cause=exc) from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader, negotiated = request(
            sock, called_aet, calling_aet, contexts, scp_roles, MAX_PDU, connect_timeout
        )
    except BaseException:
        sock.close()
        raise
    return LeanAssociation(sock, reader, negotiated, set(scp_roles), dimse_timeout, receiver)


class _Ended(Exception):
    """The association is over (aborted, timed out, closed)."""


class LeanAssociation:
    """An established association we requested; not for sharing between iterating threads."""

    def __init__(
        self,
        sock: socket.socket,
        reader: PduReader,
        negotiated: Negotiated,
        scp_roles: set[str],
        dimse_timeout: float | None,
        receiver: Receiver | None,
    ) -> None:
        self.sock = sock
        self.reader = reader
        self.reader.max_length = MAX_PDU + 6
        self.negotiated = negotiated
        self.dimse_timeout = dimse_timeout
        self.receiver = receiver
        self.is_established = True
        self.is_aborted = False
        self.timed_out = False
        self.peer_aborted = False
        #: The peer answered A-RELEASE-RQ while we waited for a response.
        self.peer_released = False
        #: Why we aborted: the peer broke the protocol (what it did), else None.
        self.protocol_error: str | None = None
        #: The last request sent ("C-FIND"...) and how many responses (or, for a C-GET,
        #: C-STOREs) to it have arrived.
        self.last_request = ""
        self.answered = 0
        self._send_lock = threading.Lock()
        self._command = bytearray()
        self.accepted_contexts = [
            AcceptedContext(
                cid,
                abstract,
                (syntax,),
                as_scp=abstract in scp_roles and negotiated.roles.get(abstract, (False, False))[1],
            )
            for cid, (abstract, syntax) in sorted(negotiated.contexts.items())
        ]
        sock.settimeout(dimse_timeout)

    @property
    def local_address(self) -> str:
        try:
            return str(self.sock.getsockname()[0])
        except OSError:
            return "our host"

    # -- ending ------------------------------------------------------------------------------

    def release(self) -> None:
        """A-RELEASE; waits up to 10 s for the peer's answer, then closes."""
        if not self.is_established:
            return
        self.is_established = False
        try:
            self._send([RELEASE_RQ])
            self.sock.settimeout(10)
            while True:
                kind, _ = self.reader.read()
                if kind == A_RELEASE_RP:
                    break
                if kind == A_RELEASE_RQ:  # a release collision (PS3.8 7.2.2)
                    self._send([RELEASE_RP])
                    break
                if kind == A_ABORT:
                    break
        except (OSError, PduError):
            pass
        finally:
            self.sock.close()

    def abort(self) -> None:
        """A-ABORT now, from any thread; a thread reading responses wakes up at once. A send
        blocked on a peer that stopped reading does not hold it up: the socket is shut."""
        if not self.is_established:
            return
        self.is_established = False
        self.is_aborted = True
        with contextlib.suppress(OSError):
            self._send([abort_pdu(0, 0)], wait=1.0)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.is_established = False
        self.sock.close()

    # -- sending -----------------------------------------------------------------------------

    def _send(self, pdus: list[bytes], wait: float | None = None) -> None:
        """Send whole PDUs; with ``wait``, give up (OSError) if another send holds the socket
        longer than that."""
        if not self._send_lock.acquire(timeout=-1 if wait is None else wait):
            raise OSError("the association is busy sending")
        try:
            send_all(self.sock, pdus)
        finally:
            self._send_lock.release()

    def _context(self, abstract: str) -> int:
        cid = self.negotiated.context_for(abstract)
        if cid is None:
            raise ValueError(f"no accepted presentation context for {abstract}")
        return cid

    def _send_message(
        self, cid: int, command_set: bytes, data: bytes | memoryview | None = None
    ) -> None:
        """Send one message. If the peer has gone (it aborted as our request left), the
        association ends here and the caller finds no response, as for an abort after it."""
        peer = self.negotiated.peer_max_pdu
        pdus = p_data(cid, command_set, command=True, max_pdu=peer)
        if data is not None:
            pdus += p_data(cid, data, command=False, max_pdu=peer)
        try:
            self._send(pdus)
        except OSError as exc:
            log.debug("sending to %s failed: %s", self.negotiated.called_aet, exc)
            if not self.is_aborted:
                self.peer_aborted = True
                self.is_aborted = True

    def _encode(self, cid: int, ds: Dataset) -> bytes:
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset

        syntax = self.negotiated.contexts[cid][1]
        out = DicomBytesIO()
        out.is_little_endian = syntax != EXPLICIT_VR_BE
        out.is_implicit_VR = syntax == IMPLICIT_VR_LE
        write_dataset(out, ds)
        data = out.getvalue()
        if syntax == DEFLATED_EXPLICIT_VR_LE:
            import zlib

            compressor = zlib.compressobj(wbits=-15)
            data = compressor.compress(data) + compressor.flush()
        return data

    # -- receiving ---------------------------------------------------------------------------

    def _next_message(self) -> tuple[int, dict[int, object], bytes | None]:
        """The next message that is not a C-STORE-RQ (those are served on the way)."""
        data = bytearray()
        command: dict[int, object] | None = None
        cid_of_message = 0
        incoming: Incoming | None = None
        try:
            while True:
                try:
                    kind, body = self.reader.read()
                except TimeoutError:
                    self.timed_out = True
                    log.warning(
                        "%s sent nothing for %s s; aborting",
                        self.negotiated.called_aet,
                        self.dimse_timeout,
                    )
                    self.abort()
                    raise _Ended() from None
                if kind == A_ABORT:
                    self.peer_aborted = True
                    self.is_aborted = True
                    raise _Ended()
                if kind == A_RELEASE_RQ:
                    self.peer_released = True
                    self._send([RELEASE_RP])
                    raise _Ended()
                if kind != P_DATA_TF:
                    raise PduError(f"unexpected {PDU_NAMES[kind]}")
                for cid, control, fragment in iter_pdvs(body):
                    if cid not in self.negotiated.contexts:
                        raise PduError(f"a message on context {cid}, which was not accepted")
                    if control & MCH_COMMAND:
                        if command is not None:
                            raise PduError("a command set arrived before the data set")
                        self._command += fragment
                        if len(self._command) > 1 << 16:
                            raise PduError("a command set larger than 64 kB")
                        if not control & MCH_LAST:
                            continue
                        command = cmd.decode_command(self._command)
                        self._command = bytearray()
                        cid_of_message = cid
                        if not cmd.is_data_set_present(command):
                            if command.get(cmd.COMMAND_FIELD) == cmd.C_STORE_RQ:
                                raise PduError("a C-STORE-RQ without a data set")
                            return cid, command, None
                        if command.get(cmd.COMMAND_FIELD) == cmd.C_STORE_RQ:
                            self.answered += 1  # a C-GET's sub-operation: the peer acted on it
                            incoming = self._begin_store(cid, command)
                        continue
                    if command is None or cid != cid_of_message:
                        raise PduError("a data set fragment without its command")
                    if incoming is not None:
                        incoming.write(fragment)
                    elif command.get(cmd.COMMAND_FIELD) != cmd.C_STORE_RQ:
                        data += fragment
                        if len(data) > MAX_IDENTIFIER:
                            raise PduError("a response identifier larger than 16 MB")
                    if control & MCH_LAST:
                        if command.get(cmd.COMMAND_FIELD) == cmd.C_STORE_RQ:
                            self._finish_store(cid, command, incoming)
                            incoming, command = None, None
                            continue
                        return cid, command, bytes(data)
                if len(body) > 1 << 18:
                    self.reader.shrink()
        except (PduError, cmd.CommandError) as exc:
            log.warning("%s broke the protocol (%s); aborting", self.negotiated.called_aet, exc)
            self.protocol_error = str(exc)
            self.abort()
            raise _Ended() from None
        except OSError:
            if not self.is_aborted:  # the peer went away (or our own abort woke us)
                self.peer_aborted = True
                self.is_aborted = True
            raise _Ended() from None
        finally:
            if incoming is not None:
                incoming.abandon()

    def _begin_store(self, cid: int, command: dict[int, object]) -> Incoming | None:
        syntax = self.negotiated.contexts[cid][1]
        if self.receiver is None or not any(
            c.context_id == cid and c.as_scp for c in self.accepted_contexts
        ):
            return None
        return self.receiver.begin(
            self.negotiated,
            str(command.get(cmd.AFFECTED_SOP_CLASS_UID, "")),
            str(command.get(cmd.AFFECTED_SOP_INSTANCE_UID, "")),
            syntax,
            sub_operation=True,
        )

    def _finish_store(
        self, cid: int, command: dict[int, object], incoming: Incoming | None
    ) -> None:
        comment: str | None = "we did not accept the SCP role for this SOP class"
        status = 0x0122
        if incoming is not None:
            status, comment = incoming.finish()
        try:
            self._send_message(
                cid,
                cmd.c_store_rsp(
                    _int(command.get(cmd.MESSAGE_ID)),
                    str(command.get(cmd.AFFECTED_SOP_CLASS_UID, "")),
                    str(command.get(cmd.AFFECTED_SOP_INSTANCE_UID, "")),
                    status,
                    comment,
                ),
            )
        finally:
            if incoming is not None:
                incoming.complete()  # the write, while the PACS prepares its next C-STORE

    def _responses(self, message_id: int) -> Iterator[tuple[int, dict[int, object], bytes | None]]:
        """The responses to ``message_id`` up to the final one; ends early if the association
        does (the caller then finds an empty status)."""
        self.answered = 0
        while True:
            try:
                cid, command, data = self._next_message()
            except _Ended:
                self.is_established = False
                return
            if _int(command.get(cmd.MESSAGE_ID_BEING_RESPONDED_TO)) != message_id:
                log.debug("ignoring a response to message %s", command.get(cmd.MESSAGE_ID))
                continue
            self.answered += 1
            yield cid, command, data
            if _int(command.get(cmd.STATUS)) not in PENDING:
                return

    # -- the services, with pynetdicom's signatures ----------------------------------------------

    def send_c_echo(self, msg_id: int = 1) -> int:
        """C-ECHO; the status, or -1 when the association ended without an answer."""
        cid = self._context(cmd.VERIFICATION_SOP_CLASS)
        self.last_request = "C-ECHO"
        self._send_message(cid, cmd.c_echo_rq(msg_id))
        for _, command, _ in self._responses(msg_id):
            return _int(command.get(cmd.STATUS))
        return -1

    def find_raw(
        self, identifier: Dataset, query_model: str, msg_id: int = 1
    ) -> Iterator[tuple[int, RawMatch | None, dict[int, object]]]:
        """C-FIND; yields (status, match or None, response command); status -1 when the
        association ended before the final response."""
        query_model = str(query_model)
        cid = self._context(query_model)
        syntax = self.negotiated.contexts[cid][1]
        implicit = syntax == IMPLICIT_VR_LE
        self.last_request = "C-FIND"
        self._send_message(cid, cmd.c_find_rq(msg_id, query_model), self._encode(cid, identifier))
        final = False
        for _, command, data in self._responses(msg_id):
            status = _int(command.get(cmd.STATUS))
            final = status not in PENDING
            match = None
            if data is not None:
                if syntax == DEFLATED_EXPLICIT_VR_LE:
                    try:
                        data = _inflate(data)
                    except (PduError, zlib.error) as exc:
                        log.warning(
                            "%s sent a damaged identifier (%s)", self.negotiated.called_aet, exc
                        )
                        self.abort()
                        break
                match = RawMatch(data, implicit)
            yield status, match, command
        if not final:
            yield -1, None, {}

    def send_c_move(
        self, identifier: Dataset, move_aet: str, query_model: str, msg_id: int = 1, **_: Any
    ) -> Iterator[tuple[StatusView, Dataset | None]]:
        query_model = str(query_model)
        cid = self._context(query_model)
        request = cmd.c_move_rq(msg_id, query_model, str(move_aet))
        self.last_request = "C-MOVE"
        self._send_message(cid, request, self._encode(cid, identifier))
        yield from self._retrieve_responses(cid, msg_id)

    def send_c_get(
        self, identifier: Dataset, query_model: str, msg_id: int = 1, **_: Any
    ) -> Iterator[tuple[StatusView, Dataset | None]]:
        query_model = str(query_model)
        cid = self._context(query_model)
        self.last_request = "C-GET"
        self._send_message(cid, cmd.c_get_rq(msg_id, query_model), self._encode(cid, identifier))
        yield from self._retrieve_responses(cid, msg_id)

    def _retrieve_responses(self, cid: int, msg_id: int) -> Iterator[tuple[StatusView, Any]]:
        syntax = self.negotiated.contexts[cid][1]
        final = False
        for _, command, data in self._responses(msg_id):
            final = _int(command.get(cmd.STATUS)) not in PENDING
            identifier = None
            if data:
                with contextlib.suppress(Exception):  # a damaged identifier is not fatal
                    if syntax == DEFLATED_EXPLICIT_VR_LE:
                        data = _inflate(data)
                    identifier = _decode(RawMatch(data, syntax == IMPLICIT_VR_LE))
            yield StatusView(command), identifier
        if not final:
            yield StatusView(), None

    def store_raw(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        data_set: bytes | memoryview,
        *,
        msg_id: int = 1,
        transfer_syntax: str | None = None,
    ) -> tuple[int, str | None]:
        """C-STORE a data set already encoded in the context's transfer syntax; return the
        status (-1 when the association ended first) and the peer's error comment."""
        cid = self.negotiated.context_for(
            sop_class_uid, [transfer_syntax] if transfer_syntax else ()
        )
        if cid is None:
            raise ValueError(f"no accepted presentation context for {sop_class_uid}")
        self.last_request = "C-STORE"
        self._send_message(cid, cmd.c_store_rq(msg_id, sop_class_uid, sop_instance_uid), data_set)
        for _, command, _ in self._responses(msg_id):
            comment = command.get(cmd.ERROR_COMMENT)
            return _int(command.get(cmd.STATUS)), comment if isinstance(comment, str) else None
        return -1, None

    def send_c_cancel(
        self, msg_id: int, context_id: int | None = None, query_model: str | None = None
    ) -> None:
        if not self.is_established:
            return
        if context_id is None:
            context_id = self._context(str(query_model)) if query_model else 1
        peer = self.negotiated.peer_max_pdu
        pdus = p_data(context_id, cmd.c_cancel_rq(msg_id), command=True, max_pdu=peer)
        with contextlib.suppress(OSError):  # a peer that reads nothing gets the abort instead
            self._send(pdus, wait=1.0)


_STATUS_KEYWORDS = {
    cmd.STATUS: "Status",
    cmd.NUMBER_OF_REMAINING_SUBOPERATIONS: "NumberOfRemainingSuboperations",
    cmd.NUMBER_OF_COMPLETED_SUBOPERATIONS: "NumberOfCompletedSuboperations",
    cmd.NUMBER_OF_FAILED_SUBOPERATIONS: "NumberOfFailedSuboperations",
    cmd.NUMBER_OF_WARNING_SUBOPERATIONS: "NumberOfWarningSuboperations",
    cmd.ERROR_COMMENT: "ErrorComment",
}


class _Element:
    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


class StatusView:
    """A response's status and counters, read the way a pydicom status Dataset is read
    (``status.Status``, ``"Keyword" in status``, ``status[keyword].value``); empty (false)
    when the association ended without a response. One per C-MOVE/C-GET pending response,
    so it is a dict lookup, not a Dataset."""

    __slots__ = ("_values",)

    def __init__(self, command: dict[int, object] | None = None) -> None:
        self._values = {
            keyword: command[tag]
            for tag, keyword in _STATUS_KEYWORDS.items()
            if command is not None and command.get(tag) is not None
        }

    def __bool__(self) -> bool:
        return bool(self._values)

    def __contains__(self, keyword: object) -> bool:
        return keyword in self._values

    def __getitem__(self, keyword: str) -> _Element:
        return _Element(self._values[keyword])

    def __getattr__(self, keyword: str) -> object:
        try:
            return self._values[keyword]
        except KeyError:
            raise AttributeError(keyword) from None

    def get(self, keyword: str, default: object = None) -> object:
        return self._values.get(keyword, default)


def _decode(match: RawMatch) -> Dataset:
    from pydicom.filereader import read_dataset

    return read_dataset(BytesIO(match.data), match.implicit_vr, True)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=-15)
    out = inflater.decompress(data, MAX_IDENTIFIER)
    if inflater.unconsumed_tail:
        raise PduError("a deflated identifier larger than 16 MB")
    return out


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1
