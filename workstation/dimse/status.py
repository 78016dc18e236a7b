"""DICOM status codes in plain language: what they mean and what to do (PS3.7 Annex C, PS3.4
Annexes C.4 and B.2).

Statuses are results, not exceptions: operations return them in their outcomes and the
interfaces show :func:`describe` to the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    SUCCESS = "success"
    PENDING = "pending"
    WARNING = "warning"
    CANCEL = "cancel"
    FAILURE = "failure"


@dataclass(frozen=True)
class StatusInfo:
    code: int
    category: Category
    meaning: str
    advice: str = ""

    def __str__(self) -> str:
        text = f"0x{self.code:04X} {self.meaning}"
        return f"{text}: {self.advice}" if self.advice else text


_KNOWN: dict[int, tuple[Category, str, str]] = {
    0x0000: (Category.SUCCESS, "success", ""),
    0xFF00: (Category.PENDING, "pending", ""),
    0xFF01: (Category.PENDING, "pending (optional keys not supported)", ""),
    0xFE00: (Category.CANCEL, "cancelled", ""),
    0x0001: (Category.WARNING, "requested optional attributes are not supported", ""),
    0x0107: (Category.WARNING, "attribute list error", ""),
    0x0116: (Category.WARNING, "attribute value out of range", ""),
    0xB000: (
        Category.WARNING,
        "sub-operations complete, one or more failures",
        "some instances did not arrive; retry to fetch only the missing ones",
    ),
    0xB006: (Category.WARNING, "elements discarded", ""),
    0xB007: (Category.WARNING, "data set does not match SOP class", ""),
    0x0110: (Category.FAILURE, "processing failure", "the PACS failed internally; see its log"),
    0x0112: (Category.FAILURE, "no such SOP instance", ""),
    0x0122: (
        Category.FAILURE,
        "SOP class not supported",
        "the peer does not accept this kind of object",
    ),
    0x0124: (Category.FAILURE, "not authorised", "the PACS refuses this operation to our AE"),
    0x0211: (Category.FAILURE, "unrecognised operation", "the PACS does not offer this service"),
    0xA700: (Category.FAILURE, "out of resources", "the PACS is overloaded; try again later"),
    0xA701: (
        Category.FAILURE,
        "out of resources: unable to calculate number of matches",
        "narrow the query (add a date range or a patient ID)",
    ),
    0xA702: (
        Category.FAILURE,
        "out of resources: unable to perform sub-operations",
        "the PACS could not open the connection back to us or ran out of resources; "
        "check that it can reach our storage port",
    ),
    0xA801: (
        Category.FAILURE,
        "move destination unknown",
        "the PACS does not know our AE title as a move destination; "
        "add it (with our host and port) to its configuration",
    ),
    0xA900: (
        Category.FAILURE,
        "identifier does not match SOP class",
        "the query keys do not fit this information model or level",
    ),
    0xC000: (Category.FAILURE, "unable to process", "the PACS could not process the request"),
}


def describe(code: int | None) -> StatusInfo:
    """Return what ``code`` means; ranges defined by the standard are recognised too."""
    if code is None:
        return StatusInfo(-1, Category.FAILURE, "no response", "the peer did not answer")
    if code in _KNOWN:
        category, meaning, advice = _KNOWN[code]
        return StatusInfo(code, category, meaning, advice)
    if 0xC000 <= code <= 0xCFFF:
        return StatusInfo(
            code, Category.FAILURE, "unable to process", "the PACS could not process the request"
        )
    if 0xA700 <= code <= 0xA7FF:
        return StatusInfo(code, Category.FAILURE, "out of resources", "try again later")
    if 0xA900 <= code <= 0xA9FF:
        return StatusInfo(code, Category.FAILURE, "data set does not match SOP class")
    if 0xB000 <= code <= 0xBFFF:
        return StatusInfo(code, Category.WARNING, "warning")
    return StatusInfo(code, Category.FAILURE, "failure")


def category(code: int | None) -> Category:
    return describe(code).category
