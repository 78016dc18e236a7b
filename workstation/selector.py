"""The ``-q`` selector syntax of C-FIND keys, and the checks every matching value passes.

:func:`parse_selector` reads ``KEY=VALUE``, ``KEY=`` or ``KEY`` (a keyword, a tag or a dotted
path through sequences) and :func:`apply_path` sets it in an identifier, converting the value
for its VR: text stays text (a backslash separates values except in LT, ST, UT and UR),
binary numbers become numbers, dates and times are checked to be possible and written as
DICOM writes them (PS3.4 C.2.2.2.5), and control characters are refused. The VR groups here
are shared with :mod:`workstation.query` and :mod:`workstation.attribute_match`.
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from typing import Any

from pydicom import Dataset, config
from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence as DicomSequence

from workstation.errors import InvalidInput

CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})  # PS3.5 6.1.2.3
SINGLE_VALUED_VRS = frozenset({"LT", "ST", "UT", "UR"})  # a backslash is an ordinary character
INT_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})
FLOAT_VRS = frozenset({"FL", "FD"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_TAG = re.compile(r"\(([0-9a-f]{4}),([0-9a-f]{4})\)|([0-9a-f]{4}),?([0-9a-f]{4})", re.I)
_TAGLIKE = re.compile(r"^[(0-9]|[,)]")  # keywords never start with a digit nor hold "," or ")"

Path_ = list[tuple[int, str, str]]  # (tag, VR, the part as written)


def parse_selector(selector: str) -> tuple[Path_, str | None]:
    """Split ``KEY=VALUE``, ``KEY=`` or ``KEY`` into a resolved path and value (None if no ``=``).

    KEY is a keyword, a tag as ``(GGGG,EEEE)``, ``GGGG,EEEE`` or ``GGGGEEEE``, or a dotted path
    through sequences (``ScheduledProcedureStepSequence.Modality``).
    """
    key, sep, value = selector.partition("=")
    parts = [part.strip() for part in key.split(".")]
    return [resolve_key(part, selector) for part in parts], (value if sep else None)


def resolve_key(part: str, selector: str) -> tuple[int, str, str]:
    if not part:
        raise InvalidInput(f"empty key in selector {selector!r}")
    tag = tag_for_keyword(part)
    if tag is None:
        if match := _TAG.fullmatch(part):
            tag = int("".join(g for g in match.groups() if g), 16)
        elif _TAGLIKE.search(part):
            raise InvalidInput(
                f"bad tag {part!r} in selector {selector!r}: "
                "write (GGGG,EEEE), GGGG,EEEE or GGGGEEEE in hexadecimal"
            )
        else:
            raise InvalidInput(
                f"unknown DICOM keyword {part!r} in selector {selector!r}{_hint(part)}"
            )
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise InvalidInput(
            f"tag {tag_str(tag)} in selector {selector!r} is not in the DICOM dictionary"
        ) from None
    return tag, vr.split(" or ")[0], part


def _hint(word: str) -> str:
    lowered = {k.lower(): k for k in keyword_dict}
    close = [lowered[word.lower()]] if word.lower() in lowered else []
    close = close or difflib.get_close_matches(word, keyword_dict, n=1, cutoff=0.8)
    return f" (did you mean {close[0]!r}?)" if close else ""


def apply_path(ds: Dataset, path: Path_, value: str | None, selector: str) -> None:
    """Set ``path`` to ``value`` in ``ds``, creating or using one item per sequence."""
    for tag, vr, part in path[:-1]:
        if vr != "SQ":
            raise InvalidInput(f"{part!r} in selector {selector!r} is not a sequence (VR {vr})")
        if tag not in ds or ds[tag].VR != "SQ" or not ds[tag].value:
            ds[tag] = DataElement(tag, "SQ", DicomSequence([Dataset()]))
        ds = ds[tag].value[0]
    tag, vr, part = path[-1]
    if vr == "SQ":
        if value:
            raise InvalidInput(
                f"{part!r} in selector {selector!r} is a sequence and takes no value: "
                f"select inside it, e.g. {part}.Keyword=VALUE"
            )
        if tag not in ds:
            ds[tag] = DataElement(tag, "SQ", DicomSequence())
        return
    ds[tag] = DataElement(
        tag, vr, _convert(vr, value, part, selector), validation_mode=config.IGNORE
    )


def _convert(vr: str, value: str | None, part: str, selector: str) -> Any:
    if not value:
        return "" if vr not in INT_VRS | FLOAT_VRS | BINARY_VRS | {"AT"} else None
    where = f"for {part!r} in selector {selector!r}"
    if vr in BINARY_VRS:
        raise InvalidInput(f"cannot match on VR {vr} {where}: leave the value empty")
    if vr not in CHARSET_VRS and not value.isascii():
        raise InvalidInput(f"value {value!r} {where} must be ASCII (VR {vr})")
    check_controls(vr, value, where)
    items = [value] if vr in SINGLE_VALUED_VRS else value.split("\\")
    if vr in DATE_VRS:
        dates = [date_value(vr, item, where) for item in items]
        return dates[0] if len(dates) == 1 else dates
    try:
        if vr in INT_VRS:
            converted: list[Any] = [int(item) for item in items]
        elif vr in FLOAT_VRS:
            converted = [float(item) for item in items]
        elif vr == "AT":
            converted = [resolve_key(item.strip(), selector)[0] for item in items]
        else:
            converted = items
    except ValueError:
        raise InvalidInput(f"value {value!r} {where} is not a number (VR {vr})") from None
    return converted[0] if len(converted) == 1 else converted


DATE_VRS = frozenset({"DA", "TM", "DT"})
#: What LT, ST and UT may hold besides ESC (PS3.5 6.1.3): TAB, LF, FF and CR.
_TEXT_CONTROLS = frozenset("\t\n\f\r")


def check_controls(vr: str, value: str, where: str) -> None:
    """Control characters have no place in a matching key: only ESC, in the text VRs that a
    character set extends (its escape sequences), and the line breaks of LT, ST and UT."""
    allowed = {"\x1b"} if vr in CHARSET_VRS else set()
    if vr in ("LT", "ST", "UT"):
        allowed |= _TEXT_CONTROLS
    for char in value:
        if (char < " " or char == "\x7f") and char not in allowed:
            raise InvalidInput(
                f"value {value!r} {where} holds the control character U+{ord(char):04X}: remove it"
            )


_DATE_FORM = re.compile(r"(\d{4})(?:(\d{2})(\d{2})|([-.])(\d{2})\4(\d{2}))")
_TIME_FORM = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?)?")
_DATETIME_FORM = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,6})?)?)?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?"
)
_DATE_HELP = {
    "DA": "write YYYYMMDD, or a range: 20240101-20241231, 20240101- or -20241231",
    "TM": "write HHMMSS (HH, HHMM and HHMMSS.FFFFFF too), or a range: 0800-1200, 0800- or -1200",
    "DT": "write YYYYMMDDHHMMSS (shorter to the year, +HHMM offset allowed), or a range A-B",
}
_DATE_NOUN = {"DA": "date", "TM": "time", "DT": "date-time"}


def date_value(vr: str, item: str, where: str) -> str:
    """A DA, TM or DT matching value checked to be possible, written as DICOM writes it.

    Single values and ranges (PS3.4 C.2.2.2.5) are checked; ``YYYY-MM-DD`` and ``HH:MM:SS``
    are accepted and written ``YYYYMMDD`` and ``HHMMSS``. Empty values and values with a
    wildcard (which some PACS accept) are sent as given.
    """
    text = item.strip(" ")
    if not text or "*" in text or "?" in text:
        return text
    form = {"DA": _DATE_FORM, "TM": _TIME_FORM, "DT": _DATETIME_FORM}[vr]
    noun = _DATE_NOUN[vr]
    parts = _range_parts(text, form)
    if parts is None:
        raise InvalidInput(f"invalid {noun} {item!r} {where}: {_DATE_HELP[vr]}")
    written = []
    for part, which in zip(parts, ("start", "end") if len(parts) == 2 else ("",), strict=True):
        if not part:
            written.append("")
            continue
        try:
            written.append(_check_date_part(vr, form.fullmatch(part)))  # type: ignore[arg-type]
        except ValueError as exc:
            label = f"{which} {noun} {part!r} of the range {text!r}" if which else repr(part)
            if not which:
                label = f"{noun} {label}"
            raise InvalidInput(f"impossible {label} {where}: {exc}") from None
    if vr == "DA" and len(written) == 2 and all(written) and written[0] > written[1]:
        raise InvalidInput(f"the date range {text!r} {where} starts after it ends")
    return "-".join(written)


def _range_parts(text: str, form: re.Pattern[str]) -> list[str] | None:
    """``[text]`` for a single value of ``form``, ``[start, end]`` for a range (one may be
    empty), ``None`` when neither reading fits."""
    if form.fullmatch(text):
        return [text]
    for i, char in enumerate(text):
        if char == "-":
            start, end = text[:i], text[i + 1 :]
            if (start or end) and all(not p or form.fullmatch(p) for p in (start, end)):
                return [start, end]
    return None


def _check_date_part(vr: str, match: re.Match[str]) -> str:
    """The value of ``match`` as DICOM writes it; ValueError saying what is impossible."""
    if vr == "DA":
        year, month, day = match[1], match[2] or match[5], match[3] or match[6]
        date(int(year), int(month), int(day))
        return year + month + day
    if vr == "TM":
        _check_clock(match[1], match[2], match[3])
        return "".join(g or "" for g in match.groups())
    year, month, day, hour, minute, second, _fraction, sign, off_h, off_m = match.groups()
    if month:
        date(int(year), int(month), int(day) if day else 1)
    if hour:
        _check_clock(hour, minute, second)
    if sign:
        offset = int(off_h) * 60 + int(off_m)
        if int(off_m) > 59 or (sign == "-" and offset > 12 * 60) or offset > 14 * 60:
            raise ValueError(f"UTC offset {sign}{off_h}{off_m} is not between -1200 and +1400")
    return match[0]


def _check_clock(hour: str, minute: str | None, second: str | None) -> None:
    if int(hour) > 23:
        raise ValueError(f"hour {hour} is not between 00 and 23")
    if minute and int(minute) > 59:
        raise ValueError(f"minute {minute} is not between 00 and 59")
    if second and int(second) > 60:  # 60: a leap second (PS3.5 Table 6.2-1)
        raise ValueError(f"second {second} is not between 00 and 60")


def tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
