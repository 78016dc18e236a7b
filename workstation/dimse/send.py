"""Sending instances to a node: our C-STORE SCU (PS3.4 B, PS3.7 9.1.1).

:func:`send` takes what to send - files and folders, or studies and series of the local store
(:func:`select_paths`, :func:`select_from_store`) - and stores it on a node over our own
requestor (:mod:`workstation.dimse.wire.scu`). Each file's data set goes out as the bytes it
holds, after its File Meta Information, whenever the node accepts the file's own transfer
syntax; pydicom decodes nothing then.

Presentation contexts are grouped by SOP class: for each class one context per transfer syntax
the files have, and one offering Explicit then Implicit VR Little Endian. An association
carries at most 128 contexts, so a selection with many SOP classes goes over several
associations, one group of classes after another. When the node accepts only an uncompressed
syntax for a compressed file, pydicom decompresses it where a decoder is installed (the SOP
Instance UID is kept); otherwise that instance is reported as not sent, with the reason.

Every instance gets a result: the node's status and its meaning (with the peer's error
comment), or why it was not sent. A cancel stops after the instance being sent and releases
the association. Nothing here logs patient data: instances are named by UID (at DEBUG).
The results (:class:`SendOutcome`, :class:`SendProgress` and their parts) are defined in
:mod:`workstation.dimse.send_outcome` and importable from here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from workstation import audit
from workstation.cancel import CancelToken
from workstation.dimse.association import associate, ended_error
from workstation.dimse.send_outcome import InstanceResult as InstanceResult
from workstation.dimse.send_outcome import SendOutcome as SendOutcome
from workstation.dimse.send_outcome import SendProgress as SendProgress
from workstation.dimse.send_outcome import SendState as SendState
from workstation.dimse.status import Category, describe
from workstation.errors import InvalidInput, NetworkError, NoAcceptedContext, WorkstationError
from workstation.nodes import DEFAULT_AE_TITLE, RemoteNode
from workstation.store.header import read_header
from workstation.store.layout import resolve_in_root
from workstation.store.walk import MalformedDataset, read_part10

if TYPE_CHECKING:
    from workstation.dimse.wire.scu import LeanAssociation
    from workstation.store import LocalStore

log = logging.getLogger(__name__)

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
UNCOMPRESSED = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
#: Presentation contexts one association may carry (odd context ids 1..255, PS3.8 9.3.2.2).
MAX_CONTEXTS = 128

ProgressCallback = Callable[["SendProgress"], None]


# -- what to send ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendItem:
    """One instance to send: its file and the UIDs its C-STORE names."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    size: int = 0
    #: For the audit trail: the study, and (Patient ID, Patient's Name) when read from a file.
    study_uid: str = ""
    patient: tuple[str, str] = ("", "")


@dataclass(frozen=True)
class SendSelection:
    """What a send covers: the instances, the files that are not DICOM (``skipped``) and the
    DICOM files that cannot be read (``unreadable``: path and reason; reported as not sent)."""

    items: tuple[SendItem, ...]
    skipped: tuple[Path, ...] = ()
    unreadable: tuple[tuple[Path, str], ...] = ()

    def __len__(self) -> int:
        return len(self.items) + len(self.unreadable)


def _is_part10(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            head = file.read(132)
    except OSError:
        return True  # a file we cannot open is reported with its reason, not skipped
    return len(head) == 132 and head[128:132] == b"DICM"


def _files(paths: Iterable[str | os.PathLike[str]]) -> Iterable[Path]:
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .workstation etc.
                for name in sorted(names):
                    yield Path(folder) / name
        elif path.exists():
            yield path
        else:
            raise InvalidInput(f"{path}: no such file or folder")


def select_paths(paths: Iterable[str | os.PathLike[str]]) -> SendSelection:
    """The DICOM Part-10 files among ``paths``, folders walked recursively (hidden folders
    left out). Files that are not Part-10 are counted in ``skipped``; each file is walked to
    its end (its pixel data is not read), so a damaged one is reported rather than sent."""
    items: list[SendItem] = []
    skipped: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for path in _files(paths):
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        if not _is_part10(path):
            skipped.append(path)
            continue
        try:
            record = read_header(path)
            size = path.stat().st_size
        except (InvalidInput, OSError) as exc:
            unreadable.append((path, f"cannot read the file: {_error_text(exc)}"))
            continue
        items.append(
            SendItem(
                path,
                record.sop_class_uid,
                record.sop_instance_uid,
                record.transfer_syntax_uid,
                size,
                record.study_uid,
                (record.patient_id, record.patient_name),
            )
        )
    return SendSelection(tuple(items), tuple(skipped), tuple(unreadable))


def select_from_store(
    store: LocalStore, *, study_uids: Iterable[str] = (), series_uids: Iterable[str] = ()
) -> SendSelection:
    """The instances of studies and series the local store holds, from its index.

    Raises :class:`InvalidInput` for a UID the store holds nothing of."""
    store.flush()
    items: dict[str, SendItem] = {}
    scopes = [("study", uid) for uid in study_uids] + [("series", uid) for uid in series_uids]
    for kind, uid in scopes:
        if kind == "study":
            entries = store.index.instances(study_uid=uid)
        else:
            entries = store.index.instances(series_uid=uid)
        if not entries:
            raise InvalidInput(
                f"the local store {store.root} holds no {kind} {uid}: "
                "check the UID (workstation find or the Local store tab shows it)"
            )
        for entry in entries:
            items.setdefault(
                entry.sop_instance_uid,
                SendItem(
                    resolve_in_root(store.root, entry.path),
                    entry.sop_class_uid,
                    entry.sop_instance_uid,
                    entry.transfer_syntax_uid,
                    entry.size,
                    entry.study_uid,
                ),
            )
    return SendSelection(tuple(items.values()))


# -- presentation contexts ---------------------------------------------------------------------


def _syntax_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name != uid else f"transfer syntax {uid}"


def _class_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name != uid else f"SOP class {uid}"


def _class_contexts(syntaxes: Sequence[str]) -> list[tuple[str, ...]]:
    """The contexts for one SOP class: one per syntax its files have, then the uncompressed
    pair (left out when both already have a context of their own)."""
    own = list(dict.fromkeys(syntaxes))[: MAX_CONTEXTS - 1]
    contexts: list[tuple[str, ...]] = [(s,) for s in own]
    if not set(UNCOMPRESSED) <= set(own):
        contexts.append(UNCOMPRESSED)
    return contexts


@dataclass
class _Batch:
    """SOP classes sent over one association, with their contexts and instances."""

    contexts: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)


def _batches(items: Sequence[SendItem]) -> list[_Batch]:
    """Group the instances by SOP class into associations of at most 128 contexts."""
    by_class: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_class.setdefault(item.sop_class_uid, []).append(i)
    batches: list[_Batch] = []
    current = _Batch()
    for sop_class, indices in by_class.items():
        contexts = _class_contexts([items[i].transfer_syntax_uid for i in indices])
        if current.contexts and len(current.contexts) + len(contexts) > MAX_CONTEXTS:
            batches.append(current)
            current = _Batch()
        current.contexts.extend((sop_class, syntaxes) for syntaxes in contexts)
        current.indices.extend(indices)
    if current.contexts:
        batches.append(current)
    for batch in batches:  # instances go in the order they were given
        batch.indices.sort()
    return batches


# -- converting --------------------------------------------------------------------------------


class _NotSendable(Exception):
    """This instance cannot be sent in a syntax the node accepts; the message says why."""


def _convert(data: bytes, source: str, target: str) -> bytes:
    """The data set of a Part-10 file re-encoded in ``target`` (uncompressed), decompressing
    its pixel data first when ``source`` is compressed. Raises :class:`_NotSendable`."""
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import UID

    syntax = UID(source)
    compressed = syntax.is_compressed
    if compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise _NotSendable(
                f"it is compressed as {_syntax_name(source)}, which the node does not accept, "
                "and pydicom cannot decompress that syntax"
            ) from None
        if not decoder.is_available:
            needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
            raise _NotSendable(
                f"it is compressed as {_syntax_name(source)}, which the node does not accept, "
                f"and no decoder for it is installed (pydicom needs one of: {needs})"
            )
    try:
        ds = dcmread(BytesIO(data))
        if compressed:
            ds.decompress(generate_instance_uid=False)
        out = DicomBytesIO()
        out.is_little_endian = True
        out.is_implicit_VR = target == IMPLICIT_VR_LE
        write_dataset(out, ds)
        return out.getvalue()
    except Exception as exc:  # pydicom raises anything from a decoder or an odd element
        raise _NotSendable(
            f"converting it from {_syntax_name(source)} to {_syntax_name(target)} failed "
            f"({type(exc).__name__}: {exc})"
        ) from None


# -- sending -----------------------------------------------------------------------------------


def send(
    node: RemoteNode,
    what: SendSelection | str | os.PathLike[str] | Iterable[SendItem | str | os.PathLike[str]] = (),
    *,
    store: LocalStore | None = None,
    study_uid: str | Iterable[str] | None = None,
    series_uid: str | Iterable[str] | None = None,
    calling_aet: str = DEFAULT_AE_TITLE,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SendOutcome:
    """Store instances on ``node`` (C-STORE) and say what became of each.

    ``what``: a :class:`SendSelection`, :class:`SendItem` objects, or a file or folder or several
    (walked recursively; files that are not DICOM are skipped and counted). With ``store``,
    ``study_uid`` and ``series_uid`` (one UID or several) name what to send from the local
    store. ``on_progress`` gets a :class:`SendProgress` after every instance (on the sending
    thread); ``cancel`` stops after the instance being sent.

    Raises :class:`InvalidInput` when there is nothing to send, and the
    :class:`~workstation.errors.NetworkError` of the first association when it cannot be
    opened (no instance sent); any later failure is reported in the outcome.
    """
    selection = _selection(what, store, study_uid, series_uid)
    if not len(selection):
        skipped = len(selection.skipped)
        note = (
            f" ({skipped} file{'s' if skipped != 1 else ''} that are not DICOM)" if skipped else ""
        )
        raise InvalidInput(f"nothing to send: no DICOM instances in what was given{note}")
    studies = [item.study_uid for item in selection.items]
    patients = [item.patient for item in selection.items]
    try:
        if node.is_web:  # a DICOMweb node: STOW-RS, same outcome
            from workstation.dicomweb.stow import stow_send

            outcome = stow_send(node, selection, on_progress=on_progress, cancel=cancel)
        else:
            token = cancel or CancelToken()
            outcome = _Sender(node, selection, calling_aet, on_progress, token).run()
    except WorkstationError as exc:  # the first association could not be opened
        audit.record_send(store, node, calling_aet, None, studies, patients, exc, len(selection))
        raise
    audit.record_send(store, node, calling_aet, outcome, studies, patients)
    return outcome


def _as_uids(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _selection(
    what: SendSelection | str | os.PathLike[str] | Iterable[SendItem | str | os.PathLike[str]],
    store: LocalStore | None,
    study_uid: str | Iterable[str] | None,
    series_uid: str | Iterable[str] | None,
) -> SendSelection:
    studies, series = _as_uids(study_uid), _as_uids(series_uid)
    if studies or series:
        if store is None:
            raise InvalidInput("sending a study or series by UID needs the local store (store=)")
        from_store = select_from_store(store, study_uids=studies, series_uids=series)
    else:
        from_store = SendSelection(())
    if isinstance(what, SendSelection):
        given = what
    else:
        listed = [what] if isinstance(what, str | os.PathLike) else list(what)
        ready = tuple(x for x in listed if isinstance(x, SendItem))
        paths = [x for x in listed if not isinstance(x, SendItem)]
        given = select_paths(paths) if paths else SendSelection(())
        given = SendSelection(ready + given.items, given.skipped, given.unreadable)
    return SendSelection(
        from_store.items + given.items, given.skipped, from_store.unreadable + given.unreadable
    )


class SendRun:
    """What every kind of send keeps while it runs (a DIMSE send here, STOW-RS in
    :mod:`workstation.dicomweb.stow`): its instances, their results so far, the bytes sent, how
    many connections carried them (associations, HTTP requests), progress and the outcome."""

    def __init__(
        self,
        node: RemoteNode,
        selection: SendSelection,
        on_progress: ProgressCallback | None,
        cancel: CancelToken,
    ) -> None:
        self.node = node
        self.selection = selection
        self.items = selection.items
        self.on_progress = on_progress
        self.cancel = cancel
        self.results: dict[int, InstanceResult] = {}
        self.bytes = 0
        self.total_bytes = sum(item.size for item in self.items)
        self.started = time.monotonic()
        self.message = ""
        self.connections = 0
        self.unreadable = [
            InstanceResult("", "", str(path), False, reason=reason)
            for path, reason in selection.unreadable
        ]

    def _not_sent(self, index: int, reason: str) -> None:
        item = self.items[index]
        self.results[index] = InstanceResult(
            item.sop_instance_uid, item.sop_class_uid, str(item.path), False, reason=reason
        )

    def _progress(self) -> None:
        if self.on_progress is None:
            return
        sent = sum(1 for r in self.results.values() if r.sent)
        try:
            self.on_progress(
                SendProgress(
                    sent=sent,
                    failed=len(self.results) - sent + len(self.unreadable),
                    total=len(self.items) + len(self.unreadable),
                    bytes=self.bytes,
                    total_bytes=self.total_bytes,
                    elapsed=time.monotonic() - self.started,
                )
            )
        except Exception:
            log.exception("a progress callback failed")

    def _outcome(self) -> SendOutcome:
        cancelled = self.cancel.cancelled and len(self.results) < len(self.items)
        why = "not sent: the send was cancelled before it" if cancelled else "not sent"
        if self.message and not cancelled:
            why = f"not sent: {self.message}"
        for i in range(len(self.items)):
            if i not in self.results:
                self._not_sent(i, why)
        results = tuple(self.results[i] for i in range(len(self.items))) + tuple(self.unreadable)
        sent = sum(1 for r in results if r.sent)
        if cancelled:
            state = SendState.CANCELLED
        elif sent == len(results):
            state = SendState.DONE
        elif sent:
            state = SendState.PARTIAL
        else:
            state = SendState.FAILED
        outcome = SendOutcome(
            node=self.node,
            state=state,
            results=results,
            skipped=tuple(str(p) for p in self.selection.skipped),
            seconds=time.monotonic() - self.started,
            bytes=self.bytes,
            message=self.message,
            associations=self.connections,
        )
        log.info("%s", outcome.summary)  # UIDs, AE titles and URLs only: no patient data
        return outcome


class _Sender(SendRun):
    """One DIMSE send: C-STOREs over as many associations as its SOP classes need."""

    def __init__(
        self,
        node: RemoteNode,
        selection: SendSelection,
        calling_aet: str,
        on_progress: ProgressCallback | None,
        cancel: CancelToken,
    ) -> None:
        super().__init__(node, selection, on_progress, cancel)
        self.calling_aet = calling_aet

    def run(self) -> SendOutcome:
        self._progress()
        for batch in _batches(self.items):
            if self.cancel.cancelled:
                break
            self._send_batch(batch)
        return self._outcome()

    def _send_batch(self, batch: _Batch) -> None:
        contexts = [(sop_class, list(syntaxes)) for sop_class, syntaxes in batch.contexts]
        try:
            with associate(self.node, contexts, calling_aet=self.calling_aet) as assoc:
                self.connections += 1
                self._send_on(assoc, batch.indices)
        except NoAcceptedContext:
            for i in batch.indices:
                self._not_sent(i, self._refused(self.items[i].sop_class_uid))
            self._progress()
        except NetworkError as exc:
            if not self.results and not self.connections:
                raise  # nothing happened yet: the caller sees the failure itself
            self.message = str(exc)
            for i in batch.indices:
                if i not in self.results:
                    self._not_sent(i, f"not sent: {exc}")

    def _refused(self, sop_class: str) -> str:
        return (
            f"the node does not accept {_class_name(sop_class)}: it refused the presentation "
            "context (check the SOP classes it is configured to store)"
        )

    def _send_on(self, assoc: LeanAssociation, indices: list[int]) -> None:
        accepted: dict[str, set[str]] = {}
        for abstract, syntax in assoc.negotiated.contexts.values():
            accepted.setdefault(abstract, set()).add(syntax)
        for position, index in enumerate(indices):
            if self.cancel.cancelled:
                return
            result = self._send_one(assoc, index, accepted, msg_id=position + 1)
            self.results[index] = result
            self._progress()
            if result.status == -1:  # the association ended: the rest cannot go on it
                error = ended_error(assoc, self.node, self.calling_aet)
                self.results[index] = _replace_reason(result, str(error))
                self.message = str(error)
                for rest in indices[position + 1 :]:
                    self._not_sent(rest, f"not sent: {error}")
                self._progress()
                return

    def _send_one(
        self, assoc: LeanAssociation, index: int, accepted: dict[str, set[str]], msg_id: int
    ) -> InstanceResult:
        item = self.items[index]
        result = InstanceResult(item.sop_instance_uid, item.sop_class_uid, str(item.path), False)
        syntaxes = accepted.get(item.sop_class_uid)
        if not syntaxes:
            return _replace_reason(result, self._refused(item.sop_class_uid))
        try:
            data = item.path.read_bytes()
            own, offset, _ = read_part10(data)
        except OSError as exc:
            return _replace_reason(result, f"cannot read the file: {_error_text(exc)}")
        except MalformedDataset as exc:
            return _replace_reason(result, f"cannot read the file: {exc}")
        converted = own not in syntaxes
        payload: bytes | memoryview
        if not converted:
            syntax, payload = own, memoryview(data)[offset:]
        else:
            target = next((s for s in UNCOMPRESSED if s in syntaxes), None)
            if target is None:
                names = ", ".join(sorted(_syntax_name(s) for s in syntaxes))
                return _replace_reason(
                    result,
                    f"the node takes {_class_name(item.sop_class_uid)} only as {names}, and "
                    f"this file is {_syntax_name(own)}",
                )
            try:
                syntax, payload = target, _convert(data, own, target)
            except _NotSendable as exc:
                return _replace_reason(result, f"not sent: {exc}")
        log.debug("C-STORE %s (%s)", item.sop_instance_uid, syntax)
        status, comment = assoc.store_raw(
            item.sop_class_uid,
            item.sop_instance_uid,
            payload,
            msg_id=msg_id,
            transfer_syntax=syntax,
        )
        if status == -1:
            return InstanceResult(
                item.sop_instance_uid,
                item.sop_class_uid,
                str(item.path),
                False,
                status=-1,
                transfer_syntax=syntax,
                converted=converted,
            )
        info = describe(status)
        stored = info.category in (Category.SUCCESS, Category.WARNING)
        if stored:
            self.bytes += len(payload)
        reason = "" if info.category is Category.SUCCESS else f"the node answered {info}"
        if comment:
            reason += f" ({comment.strip()})"
        return InstanceResult(
            item.sop_instance_uid,
            item.sop_class_uid,
            str(item.path),
            stored,
            status=status,
            reason=reason,
            transfer_syntax=syntax,
            converted=converted,
            error_comment=(comment or "").strip(),
        )


def _replace_reason(result: InstanceResult, reason: str) -> InstanceResult:
    from dataclasses import replace

    return replace(result, reason=reason)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)
