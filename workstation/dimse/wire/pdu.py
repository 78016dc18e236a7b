"""Reading and writing PDUs on a socket (PS3.8 9.3), for the lean data path.

Association PDUs (A-ASSOCIATE-RQ/AC/RJ) are decoded and encoded by pynetdicom's PDU classes;
this module frames every PDU, parses P-DATA-TF into its presentation data values (PS3.8 9.3.5,
E.2) as memoryviews without copying, and builds the P-DATA-TF, release and abort PDUs, which
are a few fixed bytes.

:class:`PduReader` reads through one buffer with ``recv_into``: a stream of small PDUs costs
about one system call per socket buffer, not two per PDU, and a large PDU is read in place.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

PDU_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}

_HEADER = struct.Struct(">BxI")
_PDV_HEADER = struct.Struct(">IBB")
_PDV_OVERHEAD = 6  # item length (4), context id (1), message control header (1)

#: Message control header bits (PS3.8 E.2).
MCH_COMMAND = 0x01
MCH_LAST = 0x02

#: A-RELEASE-RQ and -RP: type, reserved, length 4, four reserved bytes.
RELEASE_RQ = bytes([A_RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0])
RELEASE_RP = bytes([A_RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0])


class PduError(Exception):
    """The peer broke the upper layer protocol (PS3.8 9.3): malformed or oversized PDU."""


class PeerClosed(PduError):
    """The peer closed the connection (possibly in the middle of a PDU)."""


class TlsRecord(PduError):
    """A TLS record (handshake or alert) where a PDU was expected: the peer speaks DICOM over
    TLS to a plain connection (PS3.15 B.9)."""


def abort_pdu(source: int = 2, reason: int = 0) -> bytes:
    """A-ABORT: source 0 = service user, 2 = service provider; reason PS3.8 9.3.8."""
    return bytes([A_ABORT, 0, 0, 0, 0, 4, 0, 0, source, reason])


class PduReader:
    """Reads whole PDUs from ``sock``; refuses any longer than ``max_length`` bytes."""

    def __init__(self, sock: socket.socket, max_length: int, *, buffer_size: int = 1 << 18):
        self.sock = sock
        self.max_length = max_length
        self._buf = bytearray(max(buffer_size, 4096))
        self._start = 0
        self._end = 0
        #: A ``time.monotonic()`` by which the next PDU must be complete (TimeoutError after):
        #: a peer trickling a byte at a time cannot stretch a timeout that each recv restarts.
        self.deadline: float | None = None

    def read(self) -> tuple[int, memoryview]:
        """The next PDU: (type, body). The body is valid until the next call."""
        self._fill(6)
        kind, length = _HEADER.unpack_from(self._buf, self._start)
        if kind not in PDU_NAMES:
            if kind in (0x15, 0x16) and self._buf[self._start + 1] == 3:
                raise TlsRecord("TLS where a DICOM PDU was expected: the peer speaks DICOM TLS")
            raise PduError(f"unknown PDU type 0x{kind:02X}")
        if length > self.max_length:
            raise PduError(
                f"{PDU_NAMES[kind]} of {length} bytes is larger than the {self.max_length} "
                "we accept"
            )
        self._fill(6 + length)
        begin = self._start + 6
        self._start = begin + length
        return kind, memoryview(self._buf)[begin : begin + length]

    def _fill(self, need: int) -> None:
        """Make ``need`` bytes available from ``_start``, reading from the socket."""
        have = self._end - self._start
        if have >= need:
            return
        if self._start + need > len(self._buf):
            if need > len(self._buf):
                grown = bytearray(max(need, 2 * len(self._buf)))
                grown[:have] = self._buf[self._start : self._end]
                self._buf = grown
            else:
                self._buf[:have] = self._buf[self._start : self._end]
            self._start, self._end = 0, have
        view = memoryview(self._buf)
        while self._end - self._start < need:
            if self.deadline is not None:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the PDU did not arrive in time")
                self.sock.settimeout(left)
            try:
                count = self.sock.recv_into(view[self._end :])
            except ConnectionError as exc:
                raise PeerClosed(f"the connection was reset ({exc.strerror or exc})") from None
            if count == 0:
                if self._end == self._start:
                    raise PeerClosed("the peer closed the connection")
                raise PeerClosed("the peer closed the connection in the middle of a PDU")
            self._end += count

    def shrink(self, size: int = 1 << 18) -> None:
        """Give back a buffer grown for one large PDU, once it has been consumed."""
        if len(self._buf) > size and self._end - self._start <= size:
            data = self._buf[self._start : self._end]
            self._buf = bytearray(size)
            self._buf[: len(data)] = data
            self._start, self._end = 0, len(data)


def iter_pdvs(body: memoryview) -> Iterator[tuple[int, int, memoryview]]:
    """The presentation data values of a P-DATA-TF body: (context id, control header, data)."""
    pos, end = 0, len(body)
    while pos < end:
        if end - pos < _PDV_OVERHEAD:
            raise PduError("a P-DATA-TF ends inside a presentation data value header")
        length, context_id, control = _PDV_HEADER.unpack_from(body, pos)
        if length < 2 or pos + 4 + length > end:
            raise PduError(f"a presentation data value claims {length} bytes; the PDU disagrees")
        yield context_id, control, body[pos + 6 : pos + 4 + length]
        pos += 4 + length


def p_data(
    context_id: int, data: bytes | memoryview, *, command: bool, max_pdu: int
) -> list[bytes]:
    """A message (command set or data set) as P-DATA-TF PDUs no longer than ``max_pdu``.

    ``max_pdu`` is the peer's Maximum Length (0: no limit): the largest PDV *item* a PDU may
    carry (PS3.8 D.1), so one fragment holds at most ``max_pdu - 6`` bytes of the message.
    """
    base = MCH_COMMAND if command else 0
    step = max(len(data) if max_pdu <= 0 else max_pdu - _PDV_OVERHEAD, 1)
    view = memoryview(data)
    pdus: list[bytes] = []
    pos = 0
    while True:
        chunk = view[pos : pos + step]
        pos += len(chunk)
        last = pos >= len(view)
        control = base | (MCH_LAST if last else 0)
        header = _HEADER.pack(P_DATA_TF, _PDV_OVERHEAD + len(chunk))
        pdus.append(header + _PDV_HEADER.pack(len(chunk) + 2, context_id, control) + bytes(chunk))
        if last:
            return pdus


def send_all(sock: socket.socket, pdus: list[bytes]) -> None:
    """Send PDUs with as few system calls as their sizes allow."""
    if len(pdus) == 1:
        sock.sendall(pdus[0])
        return
    small = sum(len(p) for p in pdus) <= 1 << 16
    if small:
        sock.sendall(b"".join(pdus))
        return
    for pdu in pdus:
        sock.sendall(pdu)
