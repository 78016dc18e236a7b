"""A streaming reader and writer of ``multipart/related`` bodies (RFC 2046, PS3.18 8.6.1.2).

:class:`MultipartReader` reads a WADO-RS response from any object with ``read(n)`` (an
``http.client.HTTPResponse`` undoes the chunked transfer coding) and yields each part's
headers and then its body as chunks, holding at most one chunk plus a delimiter's length in
memory whatever the size of the part. :func:`encode_parts` writes a STOW-RS request body the
same way, from files, one chunk at a time.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from workstation.errors import OperationFailed

CHUNK = 256 * 1024


class MultipartError(OperationFailed):
    """The body is not the multipart/related it announced (no boundary, truncated)."""


def content_type_params(content_type: str) -> tuple[str, dict[str, str]]:
    """``multipart/related; type="application/dicom"; boundary=x`` → the media type in lower
    case and its parameters (names in lower case, quotes removed)."""
    parts = _split_params(content_type)
    media = parts[0].strip().lower() if parts else ""
    params: dict[str, str] = {}
    for item in parts[1:]:
        name, _, value = item.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        params[name.strip().lower()] = value
    return media, params


def _split_params(text: str) -> list[str]:
    """Split on semicolons outside double quotes."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item for item in (i.strip() for i in items) if item]


class MultipartReader:
    """The parts of one multipart body, read as a stream.

    Iterate :meth:`parts` for ``(headers, chunks)``; ``headers`` has lower-case names, and
    ``chunks`` yields the part's body. A part left partly read is skipped when the next one is
    asked for. A body that ends before its close delimiter raises :class:`MultipartError`.
    """

    def __init__(
        self, read: Callable[[int], bytes], boundary: str, chunk_size: int = CHUNK
    ) -> None:
        if not boundary:
            raise MultipartError("the multipart response names no boundary")
        self._read = read
        self._chunk = chunk_size
        self._delim = b"\r\n--" + boundary.encode("latin-1")
        # A boundary at the very start has no CRLF before it: lend it one.
        self._buf = bytearray(b"\r\n")
        self._eof = False
        #: Body bytes handed out so far (all parts).
        self.bytes = 0

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self._read(self._chunk)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _need(self, what: str) -> None:
        if not self._fill():
            raise MultipartError(f"the multipart response ended {what}")

    def parts(self) -> Iterator[tuple[dict[str, str], Iterator[bytes]]]:
        buf, delim = self._buf, self._delim
        keep = len(delim) - 1
        while (found := buf.find(delim)) < 0:  # the preamble, ignored
            if len(buf) > keep:
                del buf[:-keep]
            self._need("before its first boundary")
        del buf[: found + len(delim)]
        while True:
            while len(buf) < 2:
                self._need("after a boundary")
            if buf[:2] == b"--":
                return  # the close delimiter; the epilogue is not read
            while (eol := buf.find(b"\r\n")) < 0:  # transport padding, then CRLF
                self._need("in a boundary line")
            del buf[: eol + 2]
            headers = self._headers()
            body = self._body()
            yield headers, body
            for _ in body:  # whatever the caller left unread
                pass

    def _headers(self) -> dict[str, str]:
        buf = self._buf
        while len(buf) < 2:
            self._need("in a part's headers")
        if buf[:2] == b"\r\n":
            del buf[:2]
            return {}
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > 64 * 1024:
                raise MultipartError("a part's headers run past 64 kB")
            self._need("in a part's headers")
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers

    def _body(self) -> Iterator[bytes]:
        buf, delim = self._buf, self._delim
        keep = len(delim) - 1
        while True:
            found = buf.find(delim)
            if found >= 0:
                if found:
                    self.bytes += found
                    yield bytes(buf[:found])
                del buf[: found + len(delim)]
                return
            ready = len(buf) - keep
            if ready > 0:
                chunk = bytes(buf[:ready])
                del buf[:ready]
                self.bytes += ready
                yield chunk
            self._need("inside a part")


def new_boundary() -> str:
    return f"workstation-{secrets.token_hex(16)}"


def part_header(boundary: str, content_type: str) -> bytes:
    return f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1")


def closing(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("latin-1")


def encoded_length(boundary: str, content_type: str, sizes: Iterable[int]) -> int:
    """The length of :func:`encode_parts`'s body for files of ``sizes`` bytes."""
    sizes = list(sizes)
    head = len(part_header(boundary, content_type))
    between = len(b"\r\n")
    return (
        sum(sizes) + len(sizes) * head + max(0, len(sizes) - 1) * between + len(closing(boundary))
    )


def encode_parts(
    boundary: str,
    content_type: str,
    paths: Iterable[str | os.PathLike[str]],
    on_file: Callable[[int, int], None] | None = None,
    chunk_size: int = CHUNK,
) -> Iterator[bytes]:
    """A multipart/related body of the files at ``paths``, one chunk at a time;
    ``on_file(index, size)`` is called once each file has been handed out whole."""
    for index, path in enumerate(paths):
        yield (b"\r\n" if index else b"") + part_header(boundary, content_type)
        size = 0
        with open(Path(path), "rb") as file:
            while chunk := file.read(chunk_size):
                size += len(chunk)
                yield chunk
        if on_file is not None:
            on_file(index, size)
    yield closing(boundary)
