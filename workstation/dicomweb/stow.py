"""STOW-RS: store instances on a DICOMweb node (PS3.18 10.5), with the outcome of a C-STORE send.

The selection (files, folders, studies and series of the local store: the same as
:func:`workstation.send`) goes out in requests of at most :data:`BATCH_FILES` files or
:data:`BATCH_BYTES`, each a ``multipart/related`` body streamed from the files with its
length announced; the node's answer (ReferencedSOPSequence, FailedSOPSequence with their
reasons) gives each instance its result. A cancel stops after the request being sent.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from workstation.cancel import CancelToken
from workstation.dicomweb.client import DicomWebClient, HttpStatusError
from workstation.dicomweb.multipart import encode_parts, encoded_length, new_boundary
from workstation.dimse.send import (
    InstanceResult,
    ProgressCallback,
    SendItem,
    SendOutcome,
    SendRun,
    SendSelection,
    _selection,
)
from workstation.dimse.status import describe
from workstation.errors import InvalidInput, NetworkError
from workstation.nodes import RemoteNode

if TYPE_CHECKING:
    from workstation.store import LocalStore

log = logging.getLogger(__name__)

BATCH_FILES = 100
BATCH_BYTES = 64 * 1024 * 1024
PART_TYPE = "application/dicom"


def _batches(items: tuple[SendItem, ...]) -> list[list[int]]:
    batches: list[list[int]] = []
    size = 0
    for index, item in enumerate(items):
        if not batches or len(batches[-1]) >= BATCH_FILES or size + item.size > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(index)
        size += item.size
    return batches


def _sequence(data: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    value = data.get(tag, {}).get("Value") or []
    return [item for item in value if isinstance(item, dict)]


def _text(item: dict[str, Any], tag: str) -> str:
    value = item.get(tag, {}).get("Value") or [""]
    return str(value[0])


def _failure_reason(item: dict[str, Any]) -> tuple[int | None, str]:
    value = item.get("00081197", {}).get("Value") or []
    if not value:
        return None, "the node did not store it (no reason given)"
    code = int(value[0])
    return code, f"the node did not store it: {describe(code)}"


class _Stower(SendRun):
    """One STOW-RS send: the instances in batches, one HTTP request each."""

    def run(self) -> SendOutcome:
        self._progress()
        with DicomWebClient(self.node) as client:
            unregister = self.cancel.on_cancel(client.abort)
            try:
                for batch in _batches(self.items):
                    if self.cancel.cancelled or self.message:
                        break
                    self._send_batch(client, batch)
            finally:
                unregister()
        return self._outcome()

    def _result(self, index: int, sent: bool, reason: str = "", status: int | None = None) -> None:
        item = self.items[index]
        self.results[index] = InstanceResult(
            item.sop_instance_uid,
            item.sop_class_uid,
            str(item.path),
            sent,
            status=status,
            reason=reason,
            transfer_syntax=item.transfer_syntax_uid,
        )

    def _send_batch(self, client: DicomWebClient, batch: list[int]) -> None:
        boundary = new_boundary()
        paths = [self.items[i].path for i in batch]
        try:
            sizes = [os.path.getsize(p) for p in paths]
        except OSError as exc:
            for index in batch:
                self._result(index, False, f"cannot read the file: {exc.strerror or exc}")
            return
        sent_before = self.bytes

        def on_file(_: int, size: int) -> None:
            self.bytes += size
            self._progress()

        headers = {
            "Content-Type": f'multipart/related; type="{PART_TYPE}"; boundary={boundary}',
            "Content-Length": str(encoded_length(boundary, PART_TYPE, sizes)),
            "Accept": "application/dicom+json",
        }
        try:
            response = client.request(
                "POST",
                "studies",
                headers=headers,
                body=encode_parts(boundary, PART_TYPE, paths, on_file),
                what=f"STOW-RS of {len(batch)} instances",
            )
            self.connections += 1
            body = response.read()
        except HttpStatusError as exc:
            self.connections += 1
            reason = str(exc) if exc.http_status != 409 else "the node refused to store them"
            for index in batch:
                self._result(index, False, reason)
            if exc.http_status != 409:
                self.message = str(exc)
            return
        except NetworkError as exc:
            self.bytes = sent_before
            if self.cancel.cancelled:
                return
            if not self.results and not self.connections:
                raise  # nothing went out: the node cannot be reached, as a send says
            self.message = str(exc)
            return
        self._read_answer(batch, response.status, body)
        self._progress()

    def _read_answer(self, batch: list[int], status: int, body: bytes) -> None:
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            data = {}
        if isinstance(data, list):
            data = data[0] if data and isinstance(data[0], dict) else {}
        stored = {_text(i, "00081155") for i in _sequence(data, "00081199")}
        failed = {_text(i, "00081155"): i for i in _sequence(data, "00081198")}
        for index in batch:
            uid = self.items[index].sop_instance_uid
            if uid in failed:
                code, reason = _failure_reason(failed[uid])
                self._result(index, False, reason, code)
            elif uid in stored or (status == 200 and not failed):
                self._result(index, True, status=0x0000)
            else:
                self._result(index, False, "the node's answer does not name it as stored")


def stow_send(
    node: RemoteNode,
    what: SendSelection | str | os.PathLike[str] | Iterable[SendItem | str | os.PathLike[str]] = (),
    *,
    store: LocalStore | None = None,
    study_uid: str | Iterable[str] | None = None,
    series_uid: str | Iterable[str] | None = None,
    calling_aet: str = "",
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SendOutcome:
    """STOW-RS: what :func:`workstation.send` does for a DICOMweb node (same arguments and
    outcome; ``associations`` counts the HTTP requests)."""
    del calling_aet
    selection = _selection(what, store, study_uid, series_uid)
    if not len(selection):
        raise InvalidInput("nothing to send: no DICOM instances in what was given")
    return _Stower(node, selection, on_progress, cancel or CancelToken()).run()
