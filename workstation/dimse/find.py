"""C-FIND: query a node and stream its matches as they arrive (PS3.4 C.4.1, K.4.1).

:func:`find` returns a :class:`FindResults` at once; iterating it opens the association and
yields each matching identifier when the PACS sends it, so the first row can be shown while the
PACS is still answering. A limit or a cancel sends C-CANCEL on the same association and aborts
it if the PACS has not answered the cancel within a short grace period. Non-ASCII values are
sent in the node's character set. Matches are refined on our side unless ``refine=False``:
repeats of a unique key and matches that contradict the query are dropped
(:mod:`workstation.refine`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator

from pydicom.dataset import Dataset

from workstation.cancel import CancelToken
from workstation.dimse.association import abort_now, associate, ended_error
from workstation.dimse.status import Category, StatusInfo, describe
from workstation.dimse.wire.scu import LeanAssociation
from workstation.errors import DimseTimeout, OperationFailed
from workstation.identifiers import RawIdentifier
from workstation.nodes import CANCEL_GRACE, DEFAULT_AE_TITLE, RemoteNode
from workstation.query import Query
from workstation.refine import MAX_SERIES_LOOKUPS, Refiner, Verdict

log = logging.getLogger(__name__)

_MESSAGE_ID = 1
_ENDED_WELL = (Category.SUCCESS, Category.WARNING)


class FindResults(Iterator[Dataset]):
    """A C-FIND in progress. Iterate it for the matches; read the outcome afterwards.

    Iterating yields pydicom Datasets; :meth:`raw` yields the same matches as
    :class:`~workstation.identifiers.RawIdentifier` (the bytes as received, decoded only as
    far as asked), which is what the CLI's printers use. Use one or the other.

    After iteration: ``status`` is the final status (``None`` if aborted after a cancel),
    ``count`` the number of matches yielded, ``cancelled`` whether it stopped early (``limited``
    when that was because of ``limit``), ``seconds`` the time from request to the end,
    ``duplicates`` and ``dropped`` how many matches the refine left out (repeats of a unique
    key; matches that contradict the query), ``charset`` the Specific Character Set the query
    was sent in (``""``: all ASCII).
    A failure status raises :class:`OperationFailed` once the matches before it are yielded.
    """

    def __init__(
        self,
        node: RemoteNode,
        query: Query,
        *,
        calling_aet: str = DEFAULT_AE_TITLE,
        limit: int | None = None,
        cancel: CancelToken | None = None,
        cancel_grace: float | None = None,
        refine: bool = True,
    ) -> None:
        self.node = node
        self.query = query
        self.calling_aet = calling_aet
        self.limit = limit
        self.token = cancel or CancelToken()
        self.cancel_grace = CANCEL_GRACE if cancel_grace is None else cancel_grace
        self.status: StatusInfo | None = None
        self.count = 0
        self.limited = False
        self.seconds = 0.0
        self.refiner = Refiner(query) if refine else None
        self.duplicates = 0
        self.dropped = 0
        self.charset = ""
        self._lock = threading.Lock()
        self._assoc: LeanAssociation | None = None
        self._done = False
        self._cancel_sent = False
        self._abort_timer: threading.Timer | None = None
        self._raw: Generator[RawIdentifier, None, None] = self._run()

    def __next__(self) -> Dataset:
        return next(self._raw).dataset()

    def __iter__(self) -> FindResults:
        return self

    def raw(self) -> Iterator[RawIdentifier]:
        """The matches as raw identifiers (instead of iterating this object)."""
        return self._raw

    @property
    def cancelled(self) -> bool:
        return self._cancel_sent or self.token.cancelled

    def cancel(self) -> None:
        """Stop the query from any thread: C-CANCEL now, abort after the grace period."""
        self.token.cancel()

    def close(self) -> None:
        """Stop early from the iterating thread (also done by ``break`` in a ``for`` loop)."""
        self._raw.close()

    def _request_cancel(self) -> None:
        with self._lock:
            assoc = self._assoc
            if self._cancel_sent or self._done or assoc is None:
                return
            self._cancel_sent = True
        log.info("cancelling C-FIND on %s", self.node)
        try:
            assoc.send_c_cancel(_MESSAGE_ID, query_model=self.query.model.find_uid)
        except Exception as exc:  # the association may already be gone
            log.debug("C-CANCEL not sent: %s", exc)
        timer = threading.Timer(self.cancel_grace, self._abort_if_running)
        timer.daemon = True
        self._abort_timer = timer
        timer.start()

    def _abort_if_running(self) -> None:
        with self._lock:
            assoc = None if self._done else self._assoc
        if assoc is not None and assoc.is_established:
            log.info(
                "%s did not answer the C-CANCEL in %g s; aborting", self.node, self.cancel_grace
            )
            abort_now(assoc)

    def _run(self) -> Generator[RawIdentifier, None, None]:
        start = time.perf_counter()
        if self.token.cancelled:
            return
        model = self.query.model.find_uid
        identifier = self.query.identifier(charset=self.node.charset)
        self.charset = self.query.character_set(self.node.charset)
        with associate(self.node, [(model, None)], calling_aet=self.calling_aet) as assoc:
            with self._lock:
                self._assoc = assoc
            unregister = self.token.on_cancel(self._request_cancel)
            try:
                yield from self._responses(assoc, identifier, model)
            finally:
                unregister()
                with self._lock:
                    complete = self.status is not None
                    self._done = True
                if self._abort_timer is not None:
                    self._abort_timer.cancel()
                if not complete and assoc.is_established:
                    assoc.abort()  # abandoned mid-query: do not wait for a release reply
                self.seconds = time.perf_counter() - start
        if self.status is not None and self.status.category is Category.FAILURE:
            raise OperationFailed(f"C-FIND on {self.node} failed: {self.status}", self.status.code)

    def _responses(
        self, assoc: LeanAssociation, identifier: Dataset, model: str
    ) -> Iterator[RawIdentifier]:
        refiner = self.refiner
        held: list[RawIdentifier] = []  # matches whose study's series are asked at the end
        for status, match, _ in assoc.find_raw(identifier, model, msg_id=_MESSAGE_ID):
            if status < 0:  # the association ended before the final response
                if self._cancel_sent:
                    return
                if assoc.timed_out:
                    raise DimseTimeout(
                        f"{self.node} sent no C-FIND response for {self.node.dimse_timeout:g} "
                        "s: the query may be too broad, or raise the node's DIMSE timeout"
                    )
                raise ended_error(assoc, self.node, self.calling_aet)
            info = describe(status)
            if info.category is Category.PENDING:
                if match is None or self._cancel_sent:
                    continue  # matches after our C-CANCEL are not wanted
                found = RawIdentifier(match.data, implicit_vr=match.implicit_vr)
                if refiner is not None:
                    verdict = refiner.verdict(found.text)
                    if verdict is not Verdict.KEEP:
                        self._left_out(verdict, found, held)
                        continue
                self.count += 1
                yield found
                if self.limit is not None and self.count >= self.limit:
                    self.limited = True
                    self._request_cancel()
                continue
            self.status = info
            if held and refiner is not None and info.category in _ENDED_WELL:
                yield from self._check_series(assoc, model, refiner, held)
            return

    def _left_out(self, verdict: Verdict, found: RawIdentifier, held: list[RawIdentifier]) -> None:
        if verdict is Verdict.DUPLICATE:
            self.duplicates += 1
        elif verdict is Verdict.CONTRADICTS:
            self.dropped += 1
        else:
            held.append(found)

    def _check_series(
        self, assoc: LeanAssociation, model: str, refiner: Refiner, held: list[RawIdentifier]
    ) -> Iterator[RawIdentifier]:
        """Yield the held matches whose study has a series of a modality the query asks for
        (the PACS did not return ModalitiesInStudy); one SERIES-level C-FIND per study."""
        log.info(
            "%s returned no ModalitiesInStudy: listing the series of %d studies",
            self.node,
            len(held),
        )
        for number, found in enumerate(held):
            if self._cancel_sent or self.token.cancelled:
                return
            if self.limit is not None and self.count >= self.limit:
                self.limited = True
                return
            series = refiner.series_query(found.text)
            modalities = None
            if series is not None and number < MAX_SERIES_LOOKUPS and assoc.is_established:
                modalities = self._series_modalities(assoc, model, series, _MESSAGE_ID + 1 + number)
            if modalities is not None and not refiner.modalities_match(modalities):
                self.dropped += 1
                continue
            self.count += 1
            yield found

    def _series_modalities(
        self, assoc: LeanAssociation, model: str, series: Dataset, msg_id: int
    ) -> list[str] | None:
        """The Modality of every series of one study; None when the PACS will not say."""
        modalities = []
        for status, match, _ in assoc.find_raw(series, model, msg_id=msg_id):
            if status < 0:
                log.warning("%s ended the association while we listed series", self.node)
                return None
            info = describe(status)
            if info.category is Category.PENDING:
                if match is not None:
                    raw = RawIdentifier(match.data, implicit_vr=match.implicit_vr)
                    modalities.append(raw.text("Modality"))
            elif info.category is not Category.SUCCESS:
                return None
        return modalities


def find(
    node: RemoteNode,
    query: Query,
    *,
    calling_aet: str = DEFAULT_AE_TITLE,
    limit: int | None = None,
    cancel: CancelToken | None = None,
    refine: bool = True,
) -> FindResults:
    """Query ``node`` and return the matches as an iterator that streams them as they arrive.

    ``limit`` stops after that many matches (C-CANCEL); ``cancel`` lets another thread stop it.
    Non-ASCII values are sent in ``node.charset`` (a value it cannot encode raises
    :class:`~workstation.errors.InvalidInput` when iteration starts). ``refine`` (default on)
    drops repeated matches and matches that contradict the query (:mod:`workstation.refine`);
    ``refine=False`` yields exactly what the PACS sent. Transport failures raise
    :class:`~workstation.errors.NetworkError` subclasses; a failure status raises
    :class:`~workstation.errors.OperationFailed` after the matches before it.
    """
    if limit is not None and limit < 1:
        limit = None
    if node.is_web:  # a DICOMweb node: QIDO-RS, same results
        from workstation.dicomweb.qido import web_find

        return web_find(
            node, query, calling_aet=calling_aet, limit=limit, cancel=cancel, refine=refine
        )
    return FindResults(
        node, query, calling_aet=calling_aet, limit=limit, cancel=cancel, refine=refine
    )
