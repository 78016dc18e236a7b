"""Attribute matching (PS3.4 C.2.2.2): whether a value satisfies a C-FIND matching key.

:func:`matches_value` is the one matcher of the package: the refine of C-FIND results
(:mod:`workstation.refine`), the demo archive (:mod:`workstation.demo.matching`) and the Q/R
SCP over the local store (:mod:`workstation.serve.catalogue`) all use it;
:func:`matches_pattern` is its wildcard matching of text. Both are importable from
:mod:`workstation.query` too.
"""

from __future__ import annotations

import re
from functools import lru_cache

from workstation.errors import InvalidInput
from workstation.selector import BINARY_VRS, FLOAT_VRS, INT_VRS, SINGLE_VALUED_VRS
from workstation.text import normalise

#: VRs matched as dates and times (single value or range, PS3.4 C.2.2.2.5), and as numbers.
_TEMPORAL_VRS = frozenset({"DA", "TM", "DT"})
_NUMBER_VRS = frozenset({"IS", "DS"}) | INT_VRS | FLOAT_VRS
_UNMATCHED_VRS = BINARY_VRS | {"AT", "SQ"}


@lru_cache(maxsize=512)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.S)


def matches_pattern(value: str, pattern: str, *, accents: bool = True) -> bool:
    """DICOM wildcard matching (PS3.4 C.2.2.2.4) ignoring case and ``^`` versus spaces, and
    accents unless ``accents=False``.

    ``*`` matches any run of characters, ``?`` exactly one; an empty pattern matches everything
    (universal matching, C.2.2.2.3). Backslash-separated values or patterns match when any pair
    does. This is the one text matcher: the refine of C-FIND results (:mod:`workstation.refine`,
    the window's search) folds accents; the demo archive, a PACS, does not.
    """
    patterns = [normalise(p, accents) for p in pattern.split("\\")]
    if not any(patterns):
        return True
    values = [normalise(v, accents) for v in value.split("\\")]
    return any(_wildcard_regex(p).fullmatch(v) for p in patterns if p for v in values)


def matches_value(
    vr: str, pattern: str, value: str, *, accents: bool = True, ignore_case: bool = True
) -> bool:
    """Whether ``value`` (of VR ``vr``) satisfies the matching key value ``pattern``.

    PS3.4 C.2.2.2: universal matching (empty or ``*``), UID list matching (exact, any of a
    backslash list), range matching of DA/TM/DT (``A-B``, ``A-``, ``-B``; partial values
    compare as prefixes), numbers by value, and wildcard matching of text through
    :func:`matches_pattern` (a PN also matches by each of its component groups, ``=``). A
    multi-valued ``value`` matches when one of its values does. Binary VRs, AT and sequences
    are not compared (True). Raises :class:`InvalidInput` for a malformed range.
    ``ignore_case=False`` compares text case-sensitively (and keeps accents), as a Q/R SCP
    matches attributes other than PN (PS3.4 C.2.2.2.1).
    """
    single = vr in SINGLE_VALUED_VRS
    patterns = [pattern.strip()] if single else [p.strip() for p in pattern.split("\\")]
    if not any(patterns) or "*" in patterns or vr in _UNMATCHED_VRS:
        return True
    values = [value] if single else value.split("\\")
    for wanted in filter(None, patterns):
        if vr == "UI":
            hit = any(v.strip(" \x00") == wanted for v in values)
        elif vr in _TEMPORAL_VRS:
            hit = any(_matches_temporal(vr, wanted, v) for v in values)
        elif vr in _NUMBER_VRS:
            hit = any(_matches_number(wanted, v) for v in values)
        else:
            regex = _text_regex(wanted, accents, ignore_case)
            texts = values
            if vr == "PN":
                texts = [*values, *(g for v in values if "=" in v for g in v.split("=") if g)]
            hit = any(regex.fullmatch(normalise(t, accents, ignore_case)) for t in texts)
        if hit:
            return True
    return False


@lru_cache(maxsize=512)
def _text_regex(pattern: str, accents: bool, ignore_case: bool = True) -> re.Pattern[str]:
    return _wildcard_regex(normalise(pattern, accents, ignore_case))


@lru_cache(maxsize=512)
def _split_range(vr: str, query: str) -> tuple[str, str] | None:
    """``(low, high)`` of a DA/TM/DT range (PS3.4 C.2.2.2.5), or None for a single value."""
    if "-" not in query:
        return None
    if vr == "DT":  # a hyphen may also start a UTC offset: split where both halves are DTs
        dt = r"(?:\d{4,14}(?:\.\d{1,6})?(?:[+-]\d{4})?)?"
        for index in (i for i, c in enumerate(query) if c == "-"):
            low, high = query[:index], query[index + 1 :]
            if re.fullmatch(dt, low) and re.fullmatch(dt, high) and (low or high):
                return low, high
        return None
    low, _, high = query.partition("-")
    if "-" in high or not (low or high):
        raise InvalidInput(f"invalid {vr} range matching value {query!r} (PS3.4 C.2.2.2.5)")
    return low, high


def _clean_temporal(vr: str, text: str) -> str:
    text = text.strip(" \x00")
    if vr == "DA":
        return text.replace(".", "")  # ACR-NEMA 2024.01.31
    if vr == "TM":
        return text.replace(":", "")  # ACR-NEMA 12:30:00
    return text


def _matches_temporal(vr: str, query: str, raw: str) -> bool:
    """Single value or range matching of a date or time; partial values match as prefixes."""
    value = _clean_temporal(vr, raw)
    bounds = _split_range(vr, query)
    if bounds is None:
        wanted = _clean_temporal(vr, query)
        if "*" in wanted or "?" in wanted:
            return bool(_wildcard_regex(wanted).fullmatch(value))
        return value[: len(wanted)] == wanted
    low, high = (_clean_temporal(vr, b) for b in bounds)
    if not value:
        return False
    return not (low and value[: len(low)] < low) and not (high and value[: len(high)] > high)


def _matches_number(query: str, value: str) -> bool:
    try:
        wanted = float(query)
    except ValueError:
        return query.strip() == value.strip()
    try:
        return float(value) == wanted
    except ValueError:
        return False
