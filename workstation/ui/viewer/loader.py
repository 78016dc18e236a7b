"""The viewer's background work: one decoding thread, a bounded frame cache, a series listing.

:class:`FrameLoader` owns one thread that decodes frames in the order the viewer last asked:
the frame shown first, then its neighbours. Asking again replaces the whole wish list, so
scrolling fast never queues up stale work. Results go to ``deliver(key, frame_or_message)``
on the decoding thread; the viewer hands them to the GUI thread (it never touches a widget
here). :class:`FrameCache` keeps decoded frames up to a byte budget, least recently used
first out, so a 2,000-image series does not fill the memory. Qt-free.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from workstation.store import LocalStore
from workstation.store.layout import resolve_in_root
from workstation.ui.viewer.imaging import Frame, FrameUnavailable, decode_frame, frame_count

log = logging.getLogger(__name__)

#: Bytes of decoded frames a viewer keeps (a 512 × 512 CT frame is 1 MB as float32).
CACHE_BYTES = 256 * 1024 * 1024


class FrameKey(NamedTuple):
    """One image of a series: a file and a frame of it (0 for single-frame files)."""

    path: str
    frame: int


Delivery = Callable[[FrameKey, "Frame | str"], object]


class FrameLoader:
    """Decodes the frames asked for, most wanted first, on one daemon thread."""

    def __init__(self, deliver: Delivery, name: str = "viewer-decode") -> None:
        self._deliver = deliver
        self._wanted: list[FrameKey] = []
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def want(self, keys: Iterable[FrameKey]) -> None:
        """Replace the wish list (first is most wanted); keys already decoding finish."""
        with self._condition:
            self._wanted = list(dict.fromkeys(keys))
            self._condition.notify()

    def close(self) -> None:
        """Stop after the frame being decoded (does not wait)."""
        with self._condition:
            self._closed = True
            self._wanted = []
            self._condition.notify()

    @property
    def closed(self) -> bool:
        return self._closed

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._wanted and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
                key = self._wanted.pop(0)
            result: Frame | str
            try:
                result = decode_frame(key.path, key.frame)
            except FrameUnavailable as exc:
                result = str(exc)
            except Exception as exc:  # a bug or an odd file must not end the thread
                log.exception("decoding %s failed", Path(key.path).name)
                result = f"Cannot show the image: {exc}"
            if self._closed:
                return
            try:
                self._deliver(key, result)
            except Exception:
                log.exception("delivering a decoded frame failed")


class FrameCache:
    """Decoded frames by key, up to ``limit`` bytes; the least recently used go first."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self._frames: OrderedDict[FrameKey, Frame] = OrderedDict()
        self._bytes = 0

    def get(self, key: FrameKey) -> Frame | None:
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
        return frame

    def __contains__(self, key: object) -> bool:
        return key in self._frames

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, key: FrameKey, frame: Frame, keep: FrameKey | None = None) -> None:
        """Add ``frame``; evict the oldest others (never ``keep``, the frame on screen)."""
        old = self._frames.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._frames[key] = frame
        self._bytes += frame.nbytes
        self._trim(key, keep)

    def set_limit(self, limit: int, keep: FrameKey | None = None) -> None:
        """Change the budget, evicting at once what no longer fits."""
        self.limit = limit
        self._trim(keep)

    def _trim(self, *keep: FrameKey | None) -> None:
        for candidate in list(self._frames):
            if self._bytes <= self.limit:
                break
            if candidate not in keep:
                self._bytes -= self._frames.pop(candidate).nbytes

    def clear(self) -> None:
        self._frames.clear()
        self._bytes = 0


@dataclass(frozen=True)
class SeriesListing:
    """The images of a series in display order, as far as they are known."""

    series_uid: str
    keys: tuple[FrameKey, ...]
    #: False while the frame counts of some files are still assumed to be 1.
    complete: bool


def list_series(store: LocalStore, series_uid: str) -> SeriesListing:
    """The series' files by Instance Number, one image each, except the first file whose
    frames are counted (a multi-frame series is usually one file). Blocking: run in a worker."""
    entries = store.index.instances(series_uid=series_uid)
    paths = [str(resolve_in_root(store.root, entry.path)) for entry in entries]
    if not paths:
        return SeriesListing(series_uid, (), True)
    first = frame_count(paths[0]) or 1
    keys = [FrameKey(paths[0], f) for f in range(first)]
    keys += [FrameKey(path, 0) for path in paths[1:]]
    return SeriesListing(series_uid, tuple(keys), len(paths) == 1)


def count_frames(listing: SeriesListing, stop: Callable[[], bool]) -> SeriesListing | None:
    """The listing with every file's frames counted (reads each header; None if stopped)."""
    paths = list(dict.fromkeys(key.path for key in listing.keys))
    keys: list[FrameKey] = []
    for number, path in enumerate(paths):
        if stop():
            return None
        if number == 0:
            count = sum(1 for key in listing.keys if key.path == path)
        else:
            count = frame_count(path) or 1
        keys += [FrameKey(path, f) for f in range(count)]
    return SeriesListing(listing.series_uid, tuple(keys), True)
