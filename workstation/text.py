"""DICOM text for people: display of names, dates and times, and the one folding rule.

Every face of the workstation shows a PN, DA or TM the same way and compares text with the same
folding, so that the Query/Retrieve tab, the Local store, the CLI's tables and the store's SQL
filter never disagree:

- :func:`format_person_name` shows ``Family^Given^Middle^Prefix^Suffix`` family name first
  (``Smith, Dr John A, Jr``), so that a column of names reads and sorts by family name;
- :func:`format_date` shows DA as ``YYYY-MM-DD`` (unambiguous in every locale), also from the
  old ``YYYY.MM.DD`` form; :func:`format_time` shows TM as ``HH:MM``;
- :func:`normalise` is the matcher's folding (case, ``^`` as a space, accents if asked), and
  :func:`fold` the search form used by filters and the store index: accents removed,
  case-folded, PN separators (``^`` and ``=``) as spaces, runs of spaces as one.

No pydicom, no Qt: this module is imported by the core, the CLI and the window alike.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["fold", "format_date", "format_person_name", "format_sex", "format_time", "normalise"]


def normalise(text: str, accents: bool = True, ignore_case: bool = True) -> str:
    """Case folded (unless ``ignore_case`` is False), ``^`` read as a space, runs of spaces as
    one; accents stripped when ``accents`` (and ``ignore_case``) is true.

    With ``accents=False`` one character stays one character, so that a wildcard ``?`` keeps
    its meaning against the folded value.
    """
    if not ignore_case:
        folded = unicodedata.normalize("NFC", text)
    elif text.isascii():  # the usual value: nothing to decompose
        folded = text.lower()
    elif accents:
        decomposed = unicodedata.normalize("NFKD", text)
        folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    else:
        folded = unicodedata.normalize("NFC", text).lower()
    return " ".join(folded.replace("^", " ").split())


@lru_cache(maxsize=131072)  # sort keys and filters fold the same names again and again
def fold(text: str) -> str:
    """Search form: accents removed, case-folded, PN separators (``^`` ``=``) as spaces.

    ``fold("Müller^Jürgen=ミュラー")`` is ``"muller jurgen ミュラー"``.
    """
    return normalise(text.replace("=", " "))


def format_person_name(value: str) -> str:
    """PN ``Family^Given^Middle^Prefix^Suffix`` as ``Family, Prefix Given Middle, Suffix``.

    Of the alphabetic, ideographic and phonetic groups (``=``, PS3.5 6.2), the first non-empty
    one is shown; a second non-empty group follows in parentheses.
    """
    groups = [g for g in value.split("=") if g.strip("^ ")]
    if not groups:
        return ""

    def one(group: str) -> str:
        parts = [p.strip() for p in group.split("^")] + [""] * 5
        family, given, middle, prefix, suffix = parts[:5]
        first = " ".join(p for p in (prefix, given, middle) if p)
        name = f"{family}, {first}" if family and first else family or first
        return f"{name}, {suffix}" if suffix else name

    shown = one(groups[0])
    if len(groups) > 1:
        shown += f" ({one(groups[1])})"
    return shown


def format_date(value: str) -> str:
    """DA ``YYYYMMDD`` (or the old ``YYYY.MM.DD``) as ``YYYY-MM-DD``; other text unchanged."""
    text = value.strip().replace(".", "")
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return value.strip()


def format_time(value: str) -> str:
    """TM ``HHMMSS.frac`` (or the old ``HH:MM:SS``) as ``HH:MM``; other text unchanged."""
    text = value.strip().replace(":", "")
    if len(text) >= 4 and text[:4].isdigit():
        return f"{text[:2]}:{text[2:4]}"
    return value.strip()


def format_sex(value: str) -> str:
    """CS ``M``/``F``/``O`` as shown in a table."""
    return {"M": "M", "F": "F", "O": "Other"}.get(value.strip().upper(), value.strip())
