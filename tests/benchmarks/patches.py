"""Prototype fixes for the hot spots the benchmarks found, applied by monkeypatching.

Nothing here is used by ``workstation/``; the benchmarks apply these behind ``--patched`` to
measure what a fix would gain before anyone changes the real code. Each patch can be applied
alone (:func:`apply` takes names) and undone.

- ``quiet-handlers``: ``_config.LOG_HANDLER_LEVEL = "none"``. pynetdicom binds four "standard"
  logging handlers to every association; they run for every PDU and DIMSE message (building
  summaries under the association lock) whatever the log level.
- ``event-dul``: the DUL reactor (``pynetdicom/dul.py`` ``run_reactor``) sleeps 1 ms whenever it
  finds nothing to do; it now waits in ``select`` on its socket and on a wake-up socketpair that
  ``send_pdu`` writes to, so it reacts at once to incoming data and outgoing primitives.
- ``event-acceptor``: the association reactor (``association.py`` ``_run_reactor``) sleeps 1 ms
  before every look at the DIMSE message queue; it now waits on the queue's condition. It also
  closes a race in the reactor's pause handshake (see :func:`event_acceptor`) that faster
  responses make likelier: the reactor could take a C-FIND response meant for ``send_c_find``.
- ``big-recv``: ``AssociationSocket.recv`` reads a PDU in 4096-byte ``recv`` calls appended to a
  growing ``bytearray``; it now reads into one preallocated buffer with ``recv_into``.
- ``fast-json``: ``workstation find --json`` converts each match with pydicom's ``to_json_dict``
  (a DataElement, validation and number conversion per element); a direct encoder for flat
  identifiers gives the same JSON, falling back to pydicom for anything unusual.
- ``batched-flush``: the same command flushes stdout after every line (a write system call
  that also hands the GIL to pynetdicom's reader thread); flush at most every 0.1 s instead.
- ``fast-file-meta``: ``event.encoded_dataset()`` builds and encodes a pydicom FileMetaDataset
  for every C-STORE (~0.5 ms); write its six elements with ``struct`` instead.
- ``fast-header``: the store's ``read_header`` runs ``dcmread(specific_tags=...)`` (~0.6 ms);
  walk the top-level elements of the bytes up to (0020,0013) instead, skipping sequences, and
  hand the raw values to the same decoding helpers (pydicom for anything unusual).
- ``fast-path-check``: ``resolve_in_root`` resolves the store root and the whole path (an
  ``lstat`` per component) for every instance; check each directory once.
- ``single-command-encode``: pynetdicom encodes every command set it sends twice, once only to
  learn the group length; keep that first encoding.

The fast paths compare themselves with the original for the first calls of a process, or for
every call with ``WS_BENCH_SELFCHECK=1``, and raise if they differ.

Run the CLI with patches: ``python -m tests.benchmarks.patches all -- find AET@HOST:PORT ...``.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import inspect
import json
import os
import queue
import select
import socket
import struct
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from typing import Any

#: Longest wait of the event-driven reactors when nothing happens (timers are checked then).
IDLE_WAIT = 0.005

Undo = Callable[[], None]


def _replace_in_function(
    cls: type, name: str, old: str, new: str, extra: dict[str, Any], *more: tuple[str, str]
) -> Any:
    """Recompile ``cls.name`` with ``old`` (which must occur once) replaced by ``new``, and
    each further ``(old, new)`` pair likewise."""
    function = getattr(cls, name)
    source = textwrap.dedent(inspect.getsource(function))
    for before, after in ((old, new), *more):
        if source.count(before) != 1:
            raise RuntimeError(f"cannot patch {cls.__name__}.{name}: {before!r} not found once")
        source = source.replace(before, after)
    module = sys.modules[function.__module__]
    namespace = {**vars(module), **extra}
    filename = inspect.getsourcefile(function) or "?"
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def _set(cls: type, name: str, value: Any) -> Undo:
    original = cls.__dict__[name]
    setattr(cls, name, value)
    return lambda: setattr(cls, name, original)


# -- quiet-handlers ---------------------------------------------------------------------------


def quiet_handlers() -> Undo:
    from pynetdicom import _config

    previous = _config.LOG_HANDLER_LEVEL
    _config.LOG_HANDLER_LEVEL = "none"

    def undo() -> None:
        _config.LOG_HANDLER_LEVEL = previous

    return undo


# -- event-dul ----------------------------------------------------------------------------------


def _wake(dul: Any) -> None:
    pair = getattr(dul, "_ws_wake", None)
    if pair is not None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            pair[1].send(b"\0")


def _dul_idle_wait(dul: Any) -> None:
    """Instead of ``time.sleep(0.001)``: until data comes in, a primitive is queued, or 5 ms."""
    pair = dul._ws_wake
    waiting = [pair[0]]
    transport = dul.socket
    if transport is not None and transport.socket is not None and transport._is_connected:
        waiting.append(transport.socket)
    try:
        ready, _, _ = select.select(waiting, [], [], IDLE_WAIT)
    except (OSError, ValueError):  # the socket closed under us: the reactor notices next
        time.sleep(0.001)
        return
    if pair[0] in ready:
        with contextlib.suppress(OSError):
            while pair[0].recv(4096):
                pass


def event_dul() -> Undo:
    from pynetdicom.dul import DULServiceProvider as DUL

    run_reactor = _replace_in_function(
        DUL,
        "run_reactor",
        "time.sleep(self._run_loop_delay)",
        "_ws_idle_wait(self)",
        {"_ws_idle_wait": _dul_idle_wait},
    )
    original_init = DUL.__init__
    original_send = DUL.send_pdu
    original_kill = DUL.kill_dul

    def __init__(self: Any, assoc: Any) -> None:
        original_init(self, assoc)
        pair = socket.socketpair()
        for end in pair:
            end.setblocking(False)
        self._ws_wake = pair

    def patched_run(self: Any) -> None:
        try:
            run_reactor(self)
        finally:
            for end in self._ws_wake:
                end.close()

    def send_pdu(self: Any, primitive: Any) -> None:
        original_send(self, primitive)
        _wake(self)

    def kill_dul(self: Any) -> None:
        original_kill(self)
        _wake(self)

    def stop_dul(self: Any) -> bool:
        if self.state_machine.current_state == "Sta1":
            self._kill_thread = True
            _wake(self)
            while self.is_alive():
                time.sleep(0.0005)
            return True
        return False

    undos = [
        _set(DUL, "__init__", __init__),
        _set(DUL, "run_reactor", patched_run),
        _set(DUL, "send_pdu", send_pdu),
        _set(DUL, "kill_dul", kill_dul),
        _set(DUL, "stop_dul", stop_dul),
    ]
    return lambda: [undo() for undo in reversed(undos)] and None


# -- event-acceptor -----------------------------------------------------------------------------


def _acceptor_wait(assoc: Any) -> None:
    """Instead of ``time.sleep(0.001)``: until a DIMSE message is queued, or 5 ms.

    The reactor is about to stop at its checkpoint before touching the queue, so it may count
    as paused while it waits here: a ``send_c_*`` on this association need not spin meanwhile.
    """
    messages: queue.Queue[Any] = assoc.dimse.msg_queue
    assoc._is_paused = True
    with messages.not_empty:
        if not messages._qsize():  # type: ignore[attr-defined]
            messages.not_empty.wait(IDLE_WAIT)
        if messages._qsize():  # type: ignore[attr-defined]
            # put() wakes one waiter: if that was us, pass it on to a thread blocked in
            # get_msg() (send_c_get's response loop), which would otherwise sleep on.
            messages.not_empty.notify()


def event_acceptor() -> Undo:
    from pynetdicom.association import Association

    reactor = _replace_in_function(
        Association,
        "_run_reactor",
        "time.sleep(0.001)",
        "_ws_acceptor_wait(self)",
        {"_ws_acceptor_wait": _acceptor_wait},
        # pynetdicom's pause handshake is racy: Event.wait() returns once the checkpoint has
        # been set even if a send_c_*() cleared it again meanwhile, and that send_c_*() then
        # sees the stale _is_paused = True and goes on, so the reactor may take the first
        # response off the queue. Check the checkpoint again after waking.
        (
            "self._reactor_checkpoint.wait()\n        self._is_paused = False\n",
            "self._reactor_checkpoint.wait()\n        self._is_paused = False\n"
            "        if not self._reactor_checkpoint.is_set():\n"
            "            self._is_paused = True\n"
            "            continue\n",
        ),
    )
    return _set(Association, "_run_reactor", reactor)


# -- big-recv -----------------------------------------------------------------------------------


def _recv(self: Any, nr_bytes: int) -> bytearray:
    """Read ``nr_bytes`` (fewer if the peer closes) into one buffer."""
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    done = 0
    try:
        while done < nr_bytes:
            got = self.socket.recv_into(view[done:], nr_bytes - done)
            if not got:
                break
            done += got
    finally:
        view.release()
    if done < nr_bytes:
        del buffer[done:]
    return buffer


def big_recv() -> Undo:
    from pynetdicom.transport import AssociationSocket

    return _set(AssociationSocket, "recv", _recv)


# -- self-checks of the fast paths ------------------------------------------------------------

_SELF_CHECKS = {"left": 5}


def _should_check() -> bool:
    """Compare a fast path with the original: always with ``WS_BENCH_SELFCHECK=1``, else the
    first few calls of the process."""
    if os.environ.get("WS_BENCH_SELFCHECK") == "1":
        return True
    if _SELF_CHECKS["left"] > 0:
        _SELF_CHECKS["left"] -= 1
        return True
    return False


# -- fast-file-meta ---------------------------------------------------------------------------

_LONG_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UR", b"UT"})
_LONG_VRS |= frozenset({b"UN", b"SV", b"UV"})


def _explicit(tag: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    if vr in _LONG_VRS:
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def encode_file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """pynetdicom's File Meta Information, written directly (Explicit VR Little Endian)."""
    from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

    body = b"".join(
        (
            _explicit(0x00020001, b"OB", b"\x00\x01"),
            _explicit(0x00020002, b"UI", sop_class.encode("ascii")),
            _explicit(0x00020003, b"UI", sop_instance.encode("ascii")),
            _explicit(0x00020010, b"UI", transfer_syntax.encode("ascii")),
            _explicit(0x00020012, b"UI", str(PYNETDICOM_IMPLEMENTATION_UID).encode("ascii")),
            _explicit(0x00020013, b"SH", PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")),
        )
    )
    return _explicit(0x00020000, b"UL", struct.pack("<I", len(body))) + body


def fast_file_meta() -> Undo:
    """``Event.encoded_dataset()`` builds a pydicom FileMetaDataset (validating every value)
    and encodes it with pydicom's writer for every C-STORE; write the six elements directly."""
    from pynetdicom.events import Event

    original = Event.encoded_dataset

    def encoded_dataset(self: Any, include_meta: bool = True) -> bytes:
        if not include_meta:
            return original(self, include_meta)
        request = self.request
        stream = request.DataSet.getvalue()
        meta = encode_file_meta(
            str(request.AffectedSOPClassUID),
            str(request.AffectedSOPInstanceUID),
            str(self.context.transfer_syntax),
        )
        data = b"".join((b"\x00" * 128, b"DICM", meta, stream))
        if _should_check() and data != original(self, include_meta):
            raise AssertionError("fast-file-meta differs from pynetdicom's encoded_dataset()")
        return data

    return _set(Event, "encoded_dataset", encoded_dataset)


# -- fast-header ------------------------------------------------------------------------------

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_ENCAPSULATED = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5")
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


class _Raw:
    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value


class _RawView:
    """Just what ``workstation.store.header``'s helpers read: ``get_item(tag).value``."""

    def __init__(self, values: dict[int, bytes]) -> None:
        self.values = values

    def get_item(self, tag: int) -> _Raw | None:
        value = self.values.get(tag)
        return None if value is None else _Raw(value)


def _element(data: bytes, pos: int, implicit: bool) -> tuple[int, int, int]:
    """(tag, value start, value length) of the element at ``pos``."""
    group, elem = struct.unpack_from("<HH", data, pos)
    tag = group << 16 | elem
    if implicit or group == 0xFFFE:
        return tag, pos + 8, struct.unpack_from("<I", data, pos + 4)[0]
    vr = data[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        return tag, pos + 12, struct.unpack_from("<I", data, pos + 8)[0]
    return tag, pos + 8, struct.unpack_from("<H", data, pos + 6)[0]


def _skip_sequence(data: bytes, pos: int, implicit: bool) -> int:
    """Position after an undefined-length sequence whose first item starts at ``pos``."""
    while True:
        tag, start, length = _element(data, pos, implicit)
        if tag == _SEQ_END:
            return start
        if tag != _ITEM:
            raise ValueError("not an item")
        if length != 0xFFFFFFFF:
            pos = start + length
            continue
        pos = start
        while True:  # an undefined-length item: its elements up to the item delimiter
            tag, start, length = _element(data, pos, implicit)
            if tag == _ITEM_END:
                pos = start
                break
            pos = _skip_sequence(data, start, implicit) if length == 0xFFFFFFFF else start + length


def _walk_header(data: bytes, wanted: frozenset[int], last: int) -> tuple[str, dict[int, bytes]]:
    """Transfer syntax and raw values of ``wanted`` top-level tags, up to tag ``last``."""
    if data[128:132] != b"DICM":
        raise ValueError("no DICM")
    pos, syntax = 132, None
    while struct.unpack_from("<H", data, pos)[0] == 0x0002:
        tag, start, length = _element(data, pos, False)
        if tag == 0x00020010:
            syntax = data[start : start + length].decode("ascii").rstrip("\0 ")
        pos = start + length
    if syntax == _IMPLICIT_LE:
        implicit = True
    elif syntax == _EXPLICIT_LE or (syntax or "").startswith(_ENCAPSULATED):
        implicit = False  # encapsulated syntaxes encode the data set as explicit VR LE
    else:
        raise ValueError(f"transfer syntax {syntax}")
    values: dict[int, bytes] = {}
    end = len(data)
    while pos + 8 <= end:
        tag, start, length = _element(data, pos, implicit)
        if tag > last:
            break
        if length == 0xFFFFFFFF:
            pos = _skip_sequence(data, start, implicit)
            continue
        if start + length > end:
            raise ValueError("truncated")
        if tag in wanted:
            values[tag] = data[start : start + length]
        pos = start + length
    return syntax, values


def fast_read_header(source: Any, original: Callable[[Any], Any]) -> Any:
    """``read_header`` for bytes: walk to the wanted tags instead of pydicom's ``dcmread``."""
    from pydicom.charset import convert_encodings

    from workstation.store import header
    from workstation.store.layout import validate_uid
    from workstation.store.records import InstanceRecord

    if not isinstance(source, bytes):
        return original(source)
    tags = frozenset(int(t) for t in header.HEADER_TAGS)
    try:
        syntax, values = _walk_header(source, tags, max(tags))
    except (ValueError, struct.error, UnicodeDecodeError):
        return original(source)
    view = _RawView(values)
    charset = values.get(header._CHARSET)
    encodings = None
    if charset:
        names = charset.decode("iso8859").rstrip(" \x00").split("\\")
        encodings = convert_encodings(names)
    try:
        uid = {f: validate_uid(header._uid(view, t), k) for f, (k, t) in header._UID_FIELDS.items()}
    except Exception:
        return original(source)  # let the original raise its own error
    text = {f: header._text(view, kw, t, encodings) for f, (kw, t) in header._TEXT_FIELDS.items()}
    number = {f: header._int(view, t) for f, (_, t) in header._INT_FIELDS.items()}
    record = InstanceRecord(
        **uid,
        transfer_syntax_uid=validate_uid(syntax, "Transfer Syntax UID"),
        **text,
        **number,
    )
    if _should_check() and record != original(source):
        raise AssertionError("fast-header differs from read_header")
    return record


def fast_header() -> Undo:
    from workstation.store import local_store

    original = local_store.read_header

    def read_header(source: Any) -> Any:
        return fast_read_header(source, original)

    local_store.read_header = read_header  # type: ignore[assignment]

    def undo() -> None:
        local_store.read_header = original  # type: ignore[assignment]

    return undo


# -- fast-path-check --------------------------------------------------------------------------


def fast_path_check() -> Undo:
    """``resolve_in_root`` resolves the root and the whole path (an lstat per component) for
    every instance; resolve each directory once and only check the file is not a link."""
    from pathlib import Path, PurePosixPath

    from workstation.store import writer

    original = writer.resolve_in_root
    checked: set[tuple[Path, PurePosixPath]] = set()

    def resolve_in_root(root: Path, relpath: Any) -> Path:
        rel = PurePosixPath(relpath)
        if rel.is_absolute() or not rel.parts or any(p in ("..", ".", "") for p in rel.parts):
            return original(root, relpath)  # the original raises
        full = root / rel
        key = (root, rel.parent)
        if key not in checked:
            original(root, rel.parent)  # raises when the directory resolves outside the root
            checked.add(key)
        if full.is_symlink():
            return original(root, relpath)
        return full

    writer.resolve_in_root = resolve_in_root  # type: ignore[assignment]

    def undo() -> None:
        writer.resolve_in_root = original  # type: ignore[assignment]

    return undo


# -- single-command-encode --------------------------------------------------------------------


def single_command_encode() -> Undo:
    """pynetdicom encodes every command set twice: once in ``_set_command_group_length`` only to
    learn its length, then again in ``encode_msg``. Keep the first encoding instead."""
    from pynetdicom import dimse_messages
    from pynetdicom.dimse_messages import DIMSEMessage

    def _set_command_group_length(self: Any) -> None:
        del self.command_set.CommandGroupLength
        body = dimse_messages.encode(self.command_set, True, True)
        self.command_set.CommandGroupLength = len(body)
        self._ws_encoded = struct.pack("<HHII", 0, 0, 4, len(body)) + body

    encode_msg = _replace_in_function(
        DIMSEMessage,
        "encode_msg",
        "encode(self.command_set, True, True)",
        "(self.__dict__.pop('_ws_encoded', None) or encode(self.command_set, True, True))",
        {},
    )
    undos = [
        _set(DIMSEMessage, "_set_command_group_length", _set_command_group_length),
        _set(DIMSEMessage, "encode_msg", encode_msg),
    ]
    return lambda: [undo() for undo in reversed(undos)] and None


# -- fast-json -----------------------------------------------------------------------------------

_ASCII_VRS = frozenset({"AS", "CS", "DA", "DT", "TM"})  # pydicom's convert_string
_TEXT_VRS = frozenset({"SH", "LO", "UC"})  # convert_text
_SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT"})  # convert_single_string
_SIMPLE_ENCODINGS = frozenset({"iso8859-1", "utf-8", "ascii"})  # codecs.lookup() names


@functools.cache
def _codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return ""


def _fast_value(vr: str, raw: bytes, encodings: list[str]) -> list[Any] | None:
    """The JSON "Value" list of one raw element, decoded as pydicom decodes it.

    ``[]`` for an empty value; ``None`` when the fast path does not cover the VR.
    """
    from pydicom.charset import decode_bytes

    if vr == "AE":
        items: list[Any] = [s.strip() for s in raw.decode("iso8859").split("\\")]
    elif vr in _ASCII_VRS:
        items = raw.decode("iso8859").rstrip(" \x00").split("\\")
    elif vr == "UI":
        items = raw.decode("iso8859").rstrip("\0 ").split("\\")
    elif vr in _TEXT_VRS:
        text = decode_bytes(raw, encodings, {"SH", "LO", "UC"})
        items = [v.rstrip("\0 ") for v in text.split("\\")]
    elif vr in _SINGLE_TEXT_VRS:
        items = [decode_bytes(raw, encodings, {vr}).rstrip("\0 ")]
    elif vr == "PN":
        stripped = raw.rstrip(b"\x00 ")
        if not stripped:
            return []
        names = []
        for name in decode_bytes(stripped, encodings, {"PN"}).split("\\"):
            groups = name.split("=")
            entry = {"Alphabetic": groups[0]}
            if len(groups) > 1:
                entry["Ideographic"] = groups[1]
            if len(groups) > 2:
                entry["Phonetic"] = groups[2]
            names.append(entry)
        return names
    elif vr == "IS":
        items = raw.decode("iso8859").rstrip(" \x00").split("\\")
        if items == [""]:
            return []
        return [int(v) for v in items]  # ValueError: let pydicom decide
    else:
        return None
    return [] if items == [""] else items


def fast_json_dict(ds: Any) -> dict[str, Any]:
    """DICOM JSON of a flat identifier, equal to ``ds.to_json_dict()``.

    Text VRs, PN and IS are decoded straight from the raw bytes (no DataElement, no
    validation); any other VR, an element already converted, a character set with code
    extensions, or a value the fast path cannot read falls back to pydicom for that element.
    """
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import RawDataElement

    encodings = ds._character_set
    if isinstance(encodings, str):
        encodings = [encodings]
    simple = len(encodings) == 1 and _codec_name(encodings[0]) in _SIMPLE_ENCODINGS
    out: dict[str, Any] = {}
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every element)
        key = f"{tag:08X}"
        raw = ds.get_item(tag)
        value = None
        if simple and isinstance(raw, RawDataElement) and not tag.is_private:
            vr = raw.VR
            if vr is None:
                with contextlib.suppress(KeyError):
                    vr = dictionary_VR(tag)
            if vr is not None:
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    value = _fast_value(vr, bytes(raw.value or b""), encodings)
        if value is None:
            out[key] = ds[tag].to_json_dict(None, 1024)
        elif value:
            out[key] = {"vr": vr, "Value": value}
        else:
            out[key] = {"vr": vr}
    return out


def _replace_json_writer(encode: Callable[[Any], dict[str, Any]], flush_every: float) -> Undo:
    """Swap the CLI's ``write_json_line`` for one with this encoder and flush policy."""
    from workstation.cli import query_cmds

    state = {"flushed": time.monotonic()}

    def write_json_line(ds: Any, out: Any = None) -> None:
        stream = sys.stdout if out is None else out
        stream.write(json.dumps(encode(ds), ensure_ascii=False, separators=(",", ":")) + "\n")
        now = time.monotonic()
        if now - state["flushed"] >= flush_every:
            stream.flush()
            state["flushed"] = now

    original = query_cmds.write_json_line
    original_run = query_cmds.run_find
    query_cmds.write_json_line = write_json_line  # type: ignore[assignment]

    def run_find(args: Any) -> int:
        try:
            return original_run(args)
        finally:
            sys.stdout.flush()

    query_cmds.run_find = run_find  # type: ignore[assignment]

    def undo() -> None:
        query_cmds.write_json_line = original  # type: ignore[assignment]
        query_cmds.run_find = original_run  # type: ignore[assignment]

    return undo


_undo_writer: list[Undo] = []
_writer_options: dict[str, Any] = {"encode": None, "flush_every": 0.0}
_WRITER_DEFAULTS = dict(_writer_options)


def _rebuild_writer() -> None:
    """fast-json and batched-flush both replace the same function: combine what is set."""
    while _undo_writer:
        _undo_writer.pop()()
    if _writer_options != _WRITER_DEFAULTS:
        encode = _writer_options["encode"] or (lambda ds: ds.to_json_dict())
        _undo_writer.append(_replace_json_writer(encode, _writer_options["flush_every"]))


def _writer_option(name: str, value: Any) -> Undo:
    _writer_options[name] = value
    _rebuild_writer()

    def undo() -> None:
        _writer_options[name] = _WRITER_DEFAULTS[name]
        _rebuild_writer()

    return undo


def fast_json() -> Undo:
    return _writer_option("encode", fast_json_dict)


def batched_flush() -> Undo:
    return _writer_option("flush_every", 0.1)


# -- selection --------------------------------------------------------------------------------

PATCHES: dict[str, Callable[[], Undo]] = {
    "quiet-handlers": quiet_handlers,
    "event-dul": event_dul,
    "event-acceptor": event_acceptor,
    "big-recv": big_recv,
    "fast-json": fast_json,
    "batched-flush": batched_flush,
    "fast-file-meta": fast_file_meta,
    "fast-header": fast_header,
    "fast-path-check": fast_path_check,
    "single-command-encode": single_command_encode,
}


#: The patches that touch each path (the default of ``--patched`` in each benchmark).
_TRANSPORT = ["quiet-handlers", "event-dul", "event-acceptor", "big-recv"]
GROUPS: dict[str, list[str]] = {
    "all": list(PATCHES),
    "find": [*_TRANSPORT, "fast-json", "batched-flush"],
    "retrieve": [
        *_TRANSPORT,
        *["fast-file-meta", "fast-header", "fast-path-check", "single-command-encode"],
    ],
}


def parse(names: str | Iterable[str]) -> list[str]:
    """A group (``all``, ``find``, ``retrieve``), or a comma-separated list of patch names."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if len(names) == 1 and names[0] in GROUPS:
        return list(GROUPS[names[0]])
    unknown = [n for n in names if n not in PATCHES]
    if unknown:
        raise SystemExit(f"unknown patch {', '.join(unknown)}; choose from {', '.join(PATCHES)}")
    return names


def apply(names: str | Iterable[str]) -> Undo:
    """Apply the named patches; return a function that undoes them."""
    undos = [PATCHES[name]() for name in parse(names)]

    def undo() -> None:
        for step in reversed(undos):
            step()

    return undo


@contextlib.contextmanager
def patched(names: str | Iterable[str]) -> Any:
    undo = apply(names)
    try:
        yield
    finally:
        undo()


def main(argv: list[str]) -> int:
    """``python -m tests.benchmarks.patches NAMES -- <workstation CLI arguments>``."""
    if len(argv) < 2 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    apply(argv[0])
    from workstation.cli.main import main as cli_main

    return cli_main(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
