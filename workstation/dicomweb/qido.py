"""QIDO-RS: search a DICOMweb node (PS3.18 10.6) with the same queries and results as C-FIND.

A :class:`~workstation.query.Query` becomes a QIDO-RS request: its level picks the resource
(``studies``, ``{study}/series``, ``series``, ``{study}/{series}/instances``, ``instances``),
each matching key becomes a query parameter with its value as written (wildcards ``*`` ``?``,
date and time ranges ``A-B``, UID lists ``A\\B`` mean the same in QIDO-RS as in C-FIND), and
the return keys go in ``includefield``. ``fuzzymatching`` is never sent (PS3.18 leaves it
off by default). Each DICOM JSON match is turned into a
:class:`~workstation.identifiers.RawIdentifier` (Explicit VR Little Endian bytes, UTF-8 text),
so that :class:`WebFindResults` is a :class:`~workstation.dimse.find.FindResults`: the CLI's
table, ``--json`` and ``--csv``, the refine and the window read it unchanged.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Generator, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from workstation.cancel import CancelToken
from workstation.dicomweb import dicomjson
from workstation.dicomweb.client import DicomWebClient, Params
from workstation.dimse.find import FindResults
from workstation.dimse.outcome import ExpectedInstance
from workstation.dimse.status import describe
from workstation.errors import InvalidInput, NetworkError
from workstation.identifiers import RawIdentifier
from workstation.nodes import DEFAULT_AE_TITLE, RemoteNode
from workstation.query import InformationModel, Level, Query
from workstation.refine import MAX_SERIES_LOOKUPS, Verdict

log = logging.getLogger(__name__)

_TAG = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)")
_SINGLE_UID = re.compile(r"[0-9.]+")


def _name(key: str) -> str:
    """A key as QIDO-RS names it: keywords as they are, ``(0009,1001)`` as ``00091001``."""
    return _TAG.sub(lambda m: (m.group(1) + m.group(2)).upper(), key)


def _is_uid(keyword: str) -> bool:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword.rsplit(".", 1)[-1])
    return tag is not None and dictionary_VR(tag) == "UI"


def _single_uid(query: Query, keyword: str) -> str | None:
    value = (query.get(keyword) or "").strip()
    return value if value and _SINGLE_UID.fullmatch(value) else None


def qido_request(
    query: Query, limit: int | None = None, *, include: tuple[str, ...] = ()
) -> tuple[str, list[tuple[str, str]]]:
    """The resource path (relative to the service root) and query parameters for ``query``."""
    if query.model is InformationModel.WORKLIST or query.level is None:
        raise InvalidInput("a DICOMweb node has no Modality Worklist: use a DIMSE node (-W)")
    if query.level is Level.PATIENT:
        raise InvalidInput(
            "QIDO-RS has no patient level: search studies (-L STUDY) with the patient's keys"
        )
    keys = dict(query.matching_keys())
    path = {Level.STUDY: "studies", Level.SERIES: "series", Level.IMAGE: "instances"}[query.level]
    study = _single_uid(query, "StudyInstanceUID") if query.level is not Level.STUDY else None
    if study is not None:
        keys.pop("StudyInstanceUID", None)
        series = _single_uid(query, "SeriesInstanceUID") if query.level is Level.IMAGE else None
        if series is not None:
            keys.pop("SeriesInstanceUID", None)
            path = f"studies/{study}/series/{series}/instances"
        else:
            path = f"studies/{study}/{path}"
    # A UID list is comma-separated in QIDO-RS (PS3.18 8.3.4.1); other lists keep "\\".
    params = [
        (_name(key), value.replace("\\", ",") if _is_uid(key) else value)
        for key, value in keys.items()
    ]
    fields = [_name(k) for k in (*query.return_keys(), *include) if k not in keys]
    if fields:
        params.append(("includefield", ",".join(dict.fromkeys(fields))))
    if limit is not None:
        params.append(("limit", str(limit)))
    return path, params


def _no_bulk(*_: Any) -> bytes:
    return b""


def json_dataset(item: dict[str, Any]) -> Dataset:
    """A DICOM JSON object as a pydicom Dataset (bulk data URIs read as empty values)."""
    return Dataset.from_json(item, bulk_data_uri_handler=_no_bulk)


def json_identifier(item: dict[str, Any]) -> RawIdentifier:
    """A DICOM JSON object as the identifier a C-FIND would have returned: Explicit VR Little
    Endian bytes, text in UTF-8 (``ISO_IR 192`` declared when a value is not ASCII)."""
    fast = dicomjson.encode(item)
    if fast is not None:
        return RawIdentifier(fast, implicit_vr=False)
    return pydicom_identifier(item)


def pydicom_identifier(item: dict[str, Any]) -> RawIdentifier:
    """:func:`json_identifier` by pydicom alone (for what :mod:`.dicomjson` leaves out)."""
    ds = json_dataset(item)
    ds.pop(0x00080005, None)  # JSON text is Unicode whatever the server held it in
    if _has_non_ascii(ds):
        ds.SpecificCharacterSet = "ISO_IR 192"
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return RawIdentifier(fp.getvalue(), implicit_vr=False)


def _has_non_ascii(ds: Dataset) -> bool:
    for elem in ds.iterall():
        if elem.VR == "SQ" or elem.value is None:
            continue
        values = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
        if any(not str(v).isascii() for v in values):
            return True
    return False


class WebFindResults(FindResults):
    """A QIDO-RS search in progress; the same interface as a C-FIND's :class:`FindResults`.

    ``status`` is Success once the node has answered; a cancel from another thread shuts the
    connection down. The node's whole JSON answer is read before the first match is yielded.
    """

    def __init__(self, node: RemoteNode, query: Query, **options: Any) -> None:
        self._client: DicomWebClient | None = None
        super().__init__(node, query, **options)

    def _request_cancel(self) -> None:
        with self._lock:
            self._cancel_sent = True
            client = self._client
        if client is not None:
            client.abort()

    def _run(self) -> Generator[RawIdentifier, None, None]:
        start = time.perf_counter()
        if self.token.cancelled:
            return
        path, params = qido_request(self.query, self.limit)
        client = DicomWebClient(self.node)
        with self._lock:
            self._client = client
        unregister = self.token.on_cancel(self._request_cancel)
        try:
            try:
                matches = client.get_json(path, params, what="QIDO-RS search")
            except NetworkError:
                if self.cancelled:
                    return
                raise
            yield from self._matches(client, matches)
            self.status = describe(0x0000)
        finally:
            unregister()
            with self._lock:
                self._done = True
            client.close()
            self.seconds = time.perf_counter() - start

    def _matches(self, client: DicomWebClient, matches: list[Any]) -> Iterator[RawIdentifier]:
        refiner = self.refiner
        held: list[RawIdentifier] = []
        for item in matches:
            if self.cancelled:
                return
            found = json_identifier(item)
            if refiner is not None:
                verdict = refiner.verdict(found.text)
                if verdict is not Verdict.KEEP:
                    self._left_out(verdict, found, held)
                    continue
            self.count += 1
            yield found
            if self.limit is not None and self.count >= self.limit:
                self.limited = True
                self._cancel_sent = True
                return
        if held and refiner is not None:
            for number, found in enumerate(held):
                if self.cancelled:
                    return
                study = found.text("StudyInstanceUID").strip()
                if study and number < MAX_SERIES_LOOKUPS:
                    series = client.get_json(
                        f"studies/{study}/series",
                        [("includefield", "Modality")],
                        what="QIDO-RS series search",
                    )
                    modalities = [json_identifier(s).text("Modality") for s in series]
                    if not refiner.modalities_match(modalities):
                        self.dropped += 1
                        continue
                self.count += 1
                yield found
                if self.limit is not None and self.count >= self.limit:
                    self.limited = True
                    return


def web_find(
    node: RemoteNode,
    query: Query,
    *,
    calling_aet: str = DEFAULT_AE_TITLE,
    limit: int | None = None,
    cancel: CancelToken | None = None,
    refine: bool = True,
) -> WebFindResults:
    """QIDO-RS search of ``node``: what :func:`workstation.find` returns for a DICOMweb node."""
    return WebFindResults(
        node, query, calling_aet=calling_aet, limit=limit, cancel=cancel, refine=refine
    )


_LISTING_FIELDS = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")


def list_instances(client: DicomWebClient, query: Query) -> list[ExpectedInstance]:
    """Every instance ``query`` covers on the node, one QIDO-RS instance search per study
    (or per series, for a SERIES or IMAGE query naming them); repeats are left out."""
    if query.level is Level.PATIENT:
        query = Query(InformationModel.STUDY_ROOT, Level.STUDY).with_keys(
            **{k: v for k, v in query.matching_keys().items() if "." not in k and "(" not in k}
        )
    path, params = qido_request(query)
    scopes: list[tuple[str, Params]] = []
    if query.level is Level.STUDY:
        for item in client.get_json(path, params, what="QIDO-RS study search"):
            uid = json_identifier(item).text("StudyInstanceUID").strip()
            if uid:
                scopes.append((f"studies/{uid}/instances", []))
    elif query.level is Level.SERIES:
        fields = [("includefield", "StudyInstanceUID")]
        for item in client.get_json(path, params + fields, what="QIDO-RS series search"):
            found = json_identifier(item)
            study = found.text("StudyInstanceUID").strip() or (query.get("StudyInstanceUID") or "")
            series = found.text("SeriesInstanceUID").strip()
            if study and series:
                scopes.append((f"studies/{study}/series/{series}/instances", []))
    else:
        scopes.append((path, params))
    listed: dict[str, ExpectedInstance] = {}
    include = [("includefield", ",".join(_LISTING_FIELDS))]
    for scope_path, scope_params in scopes:
        for item in client.get_json(
            scope_path, [*scope_params, *include], what="QIDO-RS instance search"
        ):
            found = json_identifier(item)
            sop = found.text("SOPInstanceUID").strip()
            if not sop or sop in listed:
                continue
            study = found.text("StudyInstanceUID").strip() or _from_path(scope_path, "studies")
            series = found.text("SeriesInstanceUID").strip() or _from_path(scope_path, "series")
            listed[sop] = ExpectedInstance(
                study, series, sop, found.text("SOPClassUID").strip(), found.text("PatientID")
            )
    return list(listed.values())


def _from_path(path: str, resource: str) -> str:
    parts = path.split("/")
    return parts[parts.index(resource) + 1] if resource in parts[:-1] else ""
