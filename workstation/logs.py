"""Warnings as one log line each, and a rate limit on what a peer's data can make us say.

pydicom reports an invalid value (a DA of ``2024XX01``, an IS of ``abc``) twice: a log record
on the ``pydicom`` logger and a Python warning, which Python prints with its file, line number
and source line. A hostile or broken peer that sends 100,000 such matches would flood the
terminal or the log pane. :func:`tame_warnings`, called by the CLI and the window:

- shows Python warnings through logging (the ``pydicom`` logger for pydicom's, ``py.warnings``
  for the rest), as the message alone on one line, without pydicom's link to the standard;
- lets each distinct message through once, so pydicom's log-and-warn pair prints once;
- lets at most :data:`PER_MINUTE` distinct messages through a minute, and says how many more
  were suppressed when the minute is over (or when the program ends).

It imports nothing from pydicom, so ``workstation echo`` stays light.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
import warnings
from collections.abc import Callable
from typing import TextIO

#: The loggers a peer's data can make talk: pydicom's, Python warnings shown through logging,
#: and ours that report a value pydicom cannot convert.
NOISY = ("pydicom", "py.warnings", "workstation.cli.output")
#: Distinct messages shown per minute; the rest are counted and summed up.
PER_MINUTE = 10
WINDOW = 60.0
#: Messages longer than this are cut (a value in a message can be 64 kB long).
MAX_LENGTH = 300

_SEE_STANDARD = re.compile(r"\s*Please see <[^>]*>[^.]*\.?")


def one_line(message: str) -> str:
    """``message`` on one line, without pydicom's pointer to the standard, cut if very long."""
    text = " ".join(_SEE_STANDARD.sub("", message).split())
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 3] + "..."


class RateLimit(logging.Filter):
    """A logger filter: each message once, at most ``per_minute`` of them a minute.

    Install it on the loggers a peer can make talk (:data:`NOISY`); it rewrites the records it
    lets through to :func:`one_line`. When messages were held back, the next record after the
    minute is over (or :meth:`flush`) first logs ``... N more ... suppressed`` on ``report_to``.
    """

    def __init__(
        self,
        per_minute: int = PER_MINUTE,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
        report_to: str = "workstation",
    ) -> None:
        super().__init__()
        self.per_minute = per_minute
        self.window = window
        self.clock = clock
        self.report_to = report_to
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._last = ""
        self._start = clock()
        self._shown = 0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        text = one_line(record.getMessage())
        with self._lock:
            # pydicom logs and then warns the same text: the pair counts as one message.
            if text in self._seen or text == self._last:
                return False
            self._last = text
            now = self.clock()
            report = 0
            if now - self._start >= self.window:
                report, self._suppressed = self._suppressed, 0
                self._start, self._shown = now, 0
            show = self._shown < self.per_minute
            if show:
                self._shown += 1
                self._seen.add(text)
            else:
                self._suppressed += 1
        if report:
            self._report(report)
        if show:
            record.msg, record.args = text, None
        return show

    def flush(self) -> None:
        """Say how many messages were held back since the last report, if any."""
        with self._lock:
            report, self._suppressed = self._suppressed, 0
        if report:
            self._report(report)

    def _report(self, count: int) -> None:
        noun = "warning" if count == 1 else "warnings"
        logging.getLogger(self.report_to).warning(
            "... %d more %s about invalid data suppressed", count, noun
        )


_installed: RateLimit | None = None
_install_lock = threading.Lock()


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    name = "pydicom" if "pydicom" in filename.replace("\\", "/").split("/") else "py.warnings"
    logging.getLogger(name).warning("%s", one_line(str(message)))


def tame_warnings(*, report_at_exit: bool = True) -> RateLimit:
    """Show warnings as log lines and rate-limit :data:`NOISY` loggers (idempotent).

    ``report_at_exit``: log the count of messages still held back when the program ends (not
    in a helper process whose log handler may be gone by then)."""
    global _installed
    with _install_lock:
        if _installed is None:
            limit = RateLimit()
            for name in NOISY:
                logging.getLogger(name).addFilter(limit)
            warnings.showwarning = _show_warning
            if report_at_exit:
                atexit.register(limit.flush)
            _installed = limit
        return _installed
