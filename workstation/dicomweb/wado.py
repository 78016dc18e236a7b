"""WADO-RS: retrieve studies, series and instances from a DICOMweb node into the local store
(PS3.18 10.4), with the same completion check, progress, cancel and outcome as C-MOVE/C-GET.

A retrieve first lists, with QIDO-RS, every instance it covers (:func:`.qido.list_instances`),
leaves out what the store holds when ``only_missing``, then asks for whole studies or series
when everything listed in them is wanted, else for single instances. Each response is read as
a stream (:class:`.multipart.MultipartReader`): a part stays in memory while it is small and
goes to a temporary file in the store's ``.incoming/`` once it passes 2 MB, so a study never
has to fit in memory; complete parts go into the store through ``store_bytes``/``store_file``
(atomic, never visible half-written). The outcome counts what the store really wrote against
the listing (:class:`~workstation.dimse.retrieval.Retrieval`, shared with C-MOVE and C-GET).
Instances are asked for as the server holds them (``transfer-syntax=*``): the files are the
server's bytes.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from workstation.cancel import CancelToken
from workstation.dicomweb.client import DicomWebClient
from workstation.dicomweb.multipart import MultipartError, MultipartReader, content_type_params
from workstation.dicomweb.qido import list_instances
from workstation.dimse.outcome import ExpectedInstance, RetrieveOutcome
from workstation.dimse.retrieval import Expectation, ProgressCallback, Retrieval, Timing
from workstation.dimse.status import describe
from workstation.errors import InvalidInput, NetworkError, OperationFailed, StoreError
from workstation.nodes import DEFAULT_AE_TITLE, DEFAULT_IDLE_TIMEOUT, RemoteNode, RetrieveMethod
from workstation.query import InformationModel, Level, Query
from workstation.store import LocalStore, StoredInstance

log = logging.getLogger(__name__)

#: A part larger than this goes to a temporary file in the store instead of memory.
SPILL_BYTES = 2 * 1024 * 1024
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class _Writes:
    """What the store failed to write during one retrieve (``Retrieval.watch_sink``)."""

    def __init__(self) -> None:
        self.count = 0
        self.reason = ""

    def write_failures(self) -> tuple[int, str]:
        return self.count, self.reason


def store_part(
    store: LocalStore, chunks: Iterator[bytes], *, source_aet: str = ""
) -> StoredInstance:
    """Put one ``application/dicom`` part (a Part-10 file) into ``store``; large parts are
    spooled to a temporary file in the store's ``.incoming/`` rather than held in memory."""
    buffer = bytearray()
    path = None
    file = None
    try:
        for chunk in chunks:
            if file is None and len(buffer) + len(chunk) <= SPILL_BYTES:
                buffer += chunk
                continue
            if file is None:
                path = store.temp_path()
                file = open(path, "wb")  # noqa: SIM115 - closed below, also on failure
                file.write(buffer)
                buffer = bytearray()
            file.write(chunk)
        if file is None:
            return store.store_bytes(bytes(buffer), source_aet=source_aet, durable=False)
        file.close()
        file = None
        assert path is not None
        return store.store_file(path, source_aet=source_aet, move=True, durable=False)
    finally:
        if file is not None:
            file.close()
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)  # gone already when the store took it


def _requests(
    instances: tuple[ExpectedInstance, ...], listed: tuple[ExpectedInstance, ...], level: Level
) -> list[tuple[str, int]]:
    """WADO-RS resources covering ``instances``: a study or series whole when everything the
    listing found in it is wanted (and the request was for whole ones), else one per instance;
    with how many instances each should bring."""
    wanted = {i.sop_instance_uid for i in instances}
    by_study: dict[str, list[ExpectedInstance]] = {}
    for instance in listed:
        by_study.setdefault(instance.study_uid, []).append(instance)
    requests: list[tuple[str, int]] = []
    for study, members in by_study.items():
        if level in (Level.PATIENT, Level.STUDY) and all(
            m.sop_instance_uid in wanted for m in members
        ):
            requests.append((f"studies/{study}", len(members)))
            continue
        by_series: dict[str, list[ExpectedInstance]] = {}
        for member in members:
            by_series.setdefault(member.series_uid, []).append(member)
        for series, items in by_series.items():
            chosen = [i for i in items if i.sop_instance_uid in wanted]
            if not chosen:
                continue
            if level in (Level.PATIENT, Level.STUDY, Level.SERIES) and len(chosen) == len(items):
                requests.append((f"studies/{study}/series/{series}", len(items)))
            else:
                requests += [
                    (f"studies/{study}/series/{series}/instances/{i.sop_instance_uid}", 1)
                    for i in chosen
                ]
    return requests


def wado_retrieve(
    node: RemoteNode,
    query: Query | None,
    store: LocalStore,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    calling_aet: str = DEFAULT_AE_TITLE,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    total_timeout: float | None = None,
    check: bool = True,
    retry_of: RetrieveOutcome | None = None,
    expected: int | None = None,
    only_missing: bool = False,
) -> RetrieveOutcome:
    """Retrieve what ``query`` matches on the DICOMweb ``node`` into ``store`` (WADO-RS).

    What :func:`workstation.get` and :func:`workstation.move` do for a DICOMweb node; the
    listing is always made (``check`` and ``expected`` are accepted for the same signature).
    Raises :class:`~workstation.errors.NetworkError` subclasses when the node cannot be reached
    or refuses our credentials before anything is retrieved, and
    :class:`~workstation.errors.OperationFailed` when nothing matches.
    """
    del check, expected  # a DICOMweb node always lists what it holds
    timing = Timing(on_progress, cancel, idle_timeout, total_timeout)
    with DicomWebClient(node) as client:
        if retry_of is not None:
            listed = retry_of.missing_instances
            if not listed:
                raise InvalidInput("nothing to retry: no instance is missing from that retrieve")
            level = Level.IMAGE
        else:
            if query is None:
                raise InvalidInput("retrieve needs a query or an earlier outcome to retry")
            if query.model is InformationModel.WORKLIST or query.level is None:
                raise InvalidInput("retrieve needs a patient root (-P) or study root (-S) query")
            listed = tuple(list_instances(client, query))
            if not listed:
                raise OperationFailed(f"nothing on {node.label} matches the {query}")
            level = query.level
        wanted = listed
        if only_missing and retry_of is None:
            held: set[str] = set()
            for study in {i.study_uid for i in listed}:
                held |= store.instance_uids(study_uid=study)
            wanted = tuple(i for i in listed if i.sop_instance_uid not in held)
        expectation = Expectation(instances=wanted, already_stored=len(listed) - len(wanted))
        retrieval = Retrieval(
            node,
            RetrieveMethod.WADO,
            calling_aet=calling_aet,
            timing=timing,
            expectation=expectation,
        )
        writes = _Writes()
        retrieval.watch_sink(writes)
        if retrieval.token.cancelled:
            retrieval.cancel_sent = True
            return retrieval.outcome()
        requests = _requests(wanted, listed, level)

        def stop() -> None:
            retrieval.request_cancel()
            client.abort()

        unregister = retrieval.token.on_cancel(stop)
        try:
            for path, count in requests:
                if retrieval.cancel_sent or retrieval.stop_reason:
                    break
                _fetch(client, path, count, store, retrieval, writes)
            else:
                retrieval.final = describe(0x0000)
        except (NetworkError, OperationFailed) as exc:
            if not retrieval.cancel_sent:
                retrieval.fail(str(exc))
        finally:
            unregister()
        store.flush()
        return retrieval.outcome()


def _fetch(
    client: DicomWebClient,
    path: str,
    count: int,
    store: LocalStore,
    retrieval: Retrieval,
    writes: _Writes,
) -> None:
    response = client.request(
        "GET", path, headers={"Accept": ACCEPT}, what=f"WADO-RS retrieve of {count} instances"
    )
    media, params = content_type_params(response.getheader("Content-Type", ""))
    if media != "multipart/related":
        response.read()
        raise OperationFailed(
            f"DICOMweb node {client.node.label} answered a WADO-RS retrieve with {media or 'no'}"
            " content instead of multipart/related"
        )
    reader = MultipartReader(response.read, params.get("boundary", ""))
    source = client.node.ae_title
    try:
        for headers, chunks in reader.parts():
            part_type, _ = content_type_params(headers.get("content-type", "application/dicom"))
            if part_type != "application/dicom":
                log.warning("%s sent a %s part: skipped", client.node.label, part_type)
                continue
            try:
                stored = store_part(store, chunks, source_aet=source)
            except StoreError as exc:
                writes.count += 1
                writes.reason = str(exc)
                log.error("the store could not write an instance from %s: %s", client.node, exc)
                continue
            except InvalidInput as exc:
                log.warning("%s sent an instance that is not usable: %s", client.node, exc)
                continue
            retrieval.on_stored(stored)
            _check_time(retrieval)
        response.read()  # the epilogue, so the connection serves the next request
    except (OSError, http.client.HTTPException) as exc:
        raise NetworkError(
            f"the WADO-RS retrieve from {client.node.label} broke off: {exc}"
        ) from None
    except MultipartError as exc:
        raise OperationFailed(f"{client.node.label}: {exc}") from None
    finally:
        if not response.isclosed():
            client.close()


def _check_time(retrieval: Retrieval) -> None:
    total: Any = retrieval.total_timeout
    if total is not None and time.monotonic() - retrieval.start > total:
        with retrieval.lock:
            retrieval.stop_reason = f"not complete within {total:g} s"
