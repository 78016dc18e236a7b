"""C-FIND queries: information models, levels, request identifiers and the ``-q`` selector syntax.

A :class:`Query` describes one C-FIND request identifier (PS3.4 C.4.1.1.3; K.4.1.1.3 for the
worklist). Its keys live in a private :class:`pydicom.Dataset` that is never handed out: text
values are plain ``str`` (a backslash-separated value of a multi-valued VR becomes a list of
``str``), binary numeric VRs hold ``int``/``float``. An empty value is a return key (universal
matching, PS3.4 C.2.2.2.3); an empty sequence asks for the whole sequence (C.2.2.2.6).
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydicom import Dataset, config, dcmread
from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, keyword_dict, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from workstation.errors import InvalidInput
from workstation.nodes import charset_label
from workstation.text import normalise

UTF8 = "ISO_IR 192"

_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})  # PS3.5 6.1.2.3
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})  # a backslash is an ordinary character
_INT_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})
_FLOAT_VRS = frozenset({"FL", "FD"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_TAG = re.compile(r"\(([0-9a-f]{4}),([0-9a-f]{4})\)|([0-9a-f]{4}),?([0-9a-f]{4})", re.I)
_TAGLIKE = re.compile(r"^[(0-9]|[,)]")  # keywords never start with a digit nor hold "," or ")"
_NOT_KEYS = ("QueryRetrieveLevel", "SpecificCharacterSet")

_QR = "1.2.840.10008.5.1.4.1.2."
_UIDS = {  # PS3.6 Annex A: (model, operation) -> SOP Class UID, as in pynetdicom.sop_class
    ("P", "FIND"): _QR + "1.1",  # PatientRootQueryRetrieveInformationModelFind
    ("P", "MOVE"): _QR + "1.2",
    ("P", "GET"): _QR + "1.3",
    ("S", "FIND"): _QR + "2.1",  # StudyRootQueryRetrieveInformationModelFind
    ("S", "MOVE"): _QR + "2.2",
    ("S", "GET"): _QR + "2.3",
    ("W", "FIND"): "1.2.840.10008.5.1.4.31",  # ModalityWorklistInformationFind
}


class InformationModel(StrEnum):
    """The C-FIND information models (PS3.4 C.6.1, C.6.2 and K.6.1)."""

    PATIENT_ROOT = "P"
    STUDY_ROOT = "S"
    WORKLIST = "W"

    def _uid(self, operation: str) -> UID:
        if (self.value, operation) not in _UIDS:
            raise InvalidInput(f"the modality worklist cannot be retrieved with C-{operation}")
        return UID(_UIDS[self.value, operation])

    @property
    def find_uid(self) -> UID:
        """The C-FIND SOP Class UID."""
        return self._uid("FIND")

    @property
    def move_uid(self) -> UID:
        """The C-MOVE SOP Class UID; :class:`InvalidInput` for the worklist (PS3.4 K.6)."""
        return self._uid("MOVE")

    @property
    def get_uid(self) -> UID:
        """The C-GET SOP Class UID; :class:`InvalidInput` for the worklist (PS3.4 K.6)."""
        return self._uid("GET")


class Level(StrEnum):
    """Query/Retrieve levels, the values of QueryRetrieveLevel (PS3.4 C.6.1.1, C.6.2.1)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def unique_key(self) -> str:
        """The level's unique key (PS3.4 C.6.1.1.2 to C.6.1.1.5)."""
        return _UNIQUE[self]


_UNIQUE = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}
_PATIENT = "PatientName PatientID PatientBirthDate PatientSex "
_DEFAULT_KEYS = {
    Level.PATIENT: _PATIENT + "NumberOfPatientRelatedStudies",
    Level.STUDY: _PATIENT + "StudyDate StudyTime AccessionNumber ModalitiesInStudy "
    "StudyDescription ReferringPhysicianName NumberOfStudyRelatedSeries "
    "NumberOfStudyRelatedInstances StudyInstanceUID StudyID",
    Level.SERIES: "StudyInstanceUID SeriesInstanceUID Modality SeriesNumber SeriesDescription "
    "BodyPartExamined NumberOfSeriesRelatedInstances SeriesDate SeriesTime",
    Level.IMAGE: "StudyInstanceUID SeriesInstanceUID SOPInstanceUID SOPClassUID InstanceNumber",
}
_WORKLIST_KEYS = _PATIENT + (
    "AccessionNumber RequestedProcedureID RequestedProcedureDescription StudyInstanceUID "
    "ReferringPhysicianName"
)
_SPS_KEYS = (
    "Modality ScheduledStationAETitle ScheduledProcedureStepStartDate "
    "ScheduledProcedureStepStartTime ScheduledPerformingPhysicianName "
    "ScheduledProcedureStepDescription ScheduledProcedureStepID"
)


def _check_model_level(
    model: InformationModel | str, level: Level | str | None
) -> tuple[InformationModel, Level | None]:
    """Parse a model (``P``/``S``/``W``, or patient/study/worklist) and a level, any case."""
    text = str(model).strip().upper()
    found = [m for m in InformationModel if text in (m, m.name, m.name.split("_")[0])]
    if not found:
        raise InvalidInput(f"unknown information model {model!r}: use P, S or W (worklist)")
    parsed = found[0]
    lvl = None if level is None else Level.__members__.get(str(level).strip().upper())
    if level is not None and lvl is None:
        raise InvalidInput(f"unknown query level {level!r}: use PATIENT, STUDY, SERIES or IMAGE")
    if parsed is InformationModel.WORKLIST and lvl is not None:
        raise InvalidInput(f"a worklist query has no level (got {lvl})")
    if parsed is not InformationModel.WORKLIST and lvl is None:
        raise InvalidInput(f"a {parsed.name.lower().replace('_', ' ')} query needs a level")
    if parsed is InformationModel.STUDY_ROOT and lvl is Level.PATIENT:
        raise InvalidInput("study root has no PATIENT level (PS3.4 C.6.2.1): use patient root")
    return parsed, lvl


def default_keys(model: InformationModel | str, level: Level | str | None) -> Dataset:
    """The default (empty) return keys of a model and level (PS3.4 C.6.1, C.6.2, K.6.1.2).

    Patient root below PATIENT level adds PatientID, the upper-level unique key (PS3.4 C.6.1).
    """
    model, level = _check_model_level(model, level)
    ds = Dataset()
    if level is None:
        names = _WORKLIST_KEYS.split()
        names += [f"ScheduledProcedureStepSequence.{key}" for key in _SPS_KEYS.split()]
    else:
        names = [*_DEFAULT_KEYS[level].split(), level.unique_key]
        if model is InformationModel.PATIENT_ROOT:
            names.append("PatientID")
    for name in names:
        _apply(ds, *parse_selector(name), name)
    return ds


@dataclass(frozen=True)
class Query:
    """One C-FIND request: model, level (``None`` for the worklist) and keys.

    Build it with :meth:`study`, :meth:`patient`, :meth:`series`, :meth:`image`,
    :meth:`worklist` or :meth:`build`; a dataset given here is copied in.
    """

    model: InformationModel
    level: Level | None
    _dataset: Dataset = field(default_factory=Dataset, repr=False, hash=False)

    def __post_init__(self) -> None:
        model, level = _check_model_level(self.model, self.level)
        ds = copy.deepcopy(self._dataset)
        if level is not None:
            given = _value_str(ds["QueryRetrieveLevel"]) if "QueryRetrieveLevel" in ds else ""
            if given and given.strip().upper() != level:
                raise InvalidInput(f"QueryRetrieveLevel {given!r} conflicts with level {level}")
            ds.QueryRetrieveLevel = level.value
        _check_charset(ds)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "_dataset", ds)

    @classmethod
    def patient(cls, *, model: InformationModel | str = "P", **keys: str | None) -> Query:
        """A PATIENT-level query (patient root only, PS3.4 C.6.1.1.2)."""
        return cls.build(model, Level.PATIENT).with_keys(**keys)

    @classmethod
    def study(cls, *, model: InformationModel | str = "S", **keys: str | None) -> Query:
        """A STUDY-level query: the default return keys plus ``keys``."""
        return cls.build(model, Level.STUDY).with_keys(**keys)

    @classmethod
    def series(cls, *, model: InformationModel | str = "S", **keys: str | None) -> Query:
        """A SERIES-level query; give StudyInstanceUID (and PatientID for patient root)."""
        return cls.build(model, Level.SERIES).with_keys(**keys)

    @classmethod
    def image(cls, *, model: InformationModel | str = "S", **keys: str | None) -> Query:
        """An IMAGE-level query; give the upper-level unique keys."""
        return cls.build(model, Level.IMAGE).with_keys(**keys)

    @classmethod
    def worklist(cls, **keys: str | None) -> Query:
        """A Modality Worklist query (PS3.4 K.6.1); SPS keys via :meth:`with_selectors`."""
        return cls.build(InformationModel.WORKLIST, None).with_keys(**keys)

    @classmethod
    def build(
        cls,
        model: InformationModel | str,
        level: Level | str | None,
        selectors: Sequence[str] | None = (),
        query_file: str | Path | None = None,
        defaults: bool = True,
    ) -> Query:
        """The CLI path: default keys, then the query file, then the selectors in order.

        The file's top-level attributes replace the defaults (a sequence as a whole); each
        selector then overrides whatever came before it.
        """
        parsed, lvl = _check_model_level(model, level)
        ds = default_keys(parsed, lvl) if defaults else Dataset()
        if query_file is not None:
            for elem in _read_query_file(query_file):
                ds[elem.tag] = elem
        selectors = (selectors,) if isinstance(selectors, str) else selectors or ()
        return cls(parsed, lvl, ds).with_selectors(*selectors)

    def with_keys(self, **keys: str | None) -> Query:
        """A copy with more keys (DICOM keywords); ``None`` or ``""`` makes a return key."""
        ds = copy.deepcopy(self._dataset)
        for keyword, value in keys.items():
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"value for {keyword} must be a string, not {type(value)}")
            selector = keyword if value is None else f"{keyword}={value}"
            _apply(ds, [_resolve(keyword, selector)], value, selector)
        return Query(self.model, self.level, ds)

    def with_selectors(self, *selectors: str) -> Query:
        """A copy with ``KEY=VALUE`` / ``KEY`` selectors (:func:`parse_selector`) in order."""
        ds = copy.deepcopy(self._dataset)
        for selector in selectors:
            _apply(ds, *parse_selector(selector), selector)
        return Query(self.model, self.level, ds)

    def identifier(self, charset: str | None = None) -> Dataset:
        """A fresh identifier to send, with a SpecificCharacterSet when a value is not ASCII.

        Non-ASCII text needs a Specific Character Set (PS3.4 C.2.2.2, PS3.5 6.1): ``charset``
        (the node's, a defined term such as ``ISO_IR 100``; ISO_IR 192, UTF-8, by default).
        One set by the query file or a selector wins, as it was checked to encode every value.
        A value ``charset`` cannot encode raises :class:`InvalidInput` naming the character.
        """
        ds = copy.deepcopy(self._dataset)
        term = self.character_set(charset)
        if term and not _explicit_charset(ds):
            ds.SpecificCharacterSet = term
        return ds

    def character_set(self, charset: str | None = None) -> str:
        """The Specific Character Set :meth:`identifier` sends: ``""`` when every value is
        ASCII, else the query's own or ``charset`` (checked to encode every value)."""
        if explicit := _explicit_charset(self._dataset):
            return "\\".join(explicit)
        values = [(name, v) for name, v in _text_values(self._dataset) if not v.isascii()]
        if not values:
            return ""
        term = (charset or UTF8).strip()
        codec = python_encoding.get(term)
        if codec is None:
            raise InvalidInput(f"unknown character set {term!r}")
        for name, text in values:
            for char in text:
                if not _encodes(char, codec):
                    raise InvalidInput(
                        f"{name} holds {char!r}, which the node's character set "
                        f"{charset_label(term)} cannot encode: change the value, "
                        "or the node's character set"
                    )
        return term

    def get(self, key: str) -> str | None:
        """The value of ``key`` (keyword, tag or dotted path) as text; ``None`` when absent."""
        path, _ = parse_selector(key)
        ds = self._dataset
        for tag, vr, name in path[:-1]:
            if vr != "SQ":
                raise InvalidInput(f"{name!r} in {key!r} is not a sequence")
            if tag not in ds or not ds[tag].value:
                return None
            ds = ds[tag].value[0]
        tag, vr, name = path[-1]
        if vr == "SQ":
            raise InvalidInput(f"{name!r} is a sequence: name an attribute inside it")
        return _value_str(ds[tag]) if tag in ds else None

    def matching_keys(self) -> dict[str, str]:
        """Keys with a value, by keyword or dotted path, for display (no level or charset)."""
        return {k: v for k, v in _flatten(self._dataset) if v and k not in _NOT_KEYS}

    def return_keys(self) -> tuple[str, ...]:
        """Keys without a value, i.e. only asked to be returned, by keyword or dotted path."""
        return tuple(k for k, v in _flatten(self._dataset) if not v and k not in _NOT_KEYS)

    def __str__(self) -> str:
        label = {"P": "patient root", "S": "study root", "W": "modality worklist"}[self.model]
        head = f"{label} {self.level} query" if self.level else f"{label} query"
        keys = ", ".join(f"{k}={v}" for k, v in self.matching_keys().items())
        return f"{head}: {keys}" if keys else f"{head} (no matching keys)"


Path_ = list[tuple[int, str, str]]  # (tag, VR, the part as written)


def parse_selector(selector: str) -> tuple[Path_, str | None]:
    """Split ``KEY=VALUE``, ``KEY=`` or ``KEY`` into a resolved path and value (None if no ``=``).

    KEY is a keyword, a tag as ``(GGGG,EEEE)``, ``GGGG,EEEE`` or ``GGGGEEEE``, or a dotted path
    through sequences (``ScheduledProcedureStepSequence.Modality``).
    """
    key, sep, value = selector.partition("=")
    parts = [part.strip() for part in key.split(".")]
    return [_resolve(part, selector) for part in parts], (value if sep else None)


def _resolve(part: str, selector: str) -> tuple[int, str, str]:
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
            f"tag {_tag_str(tag)} in selector {selector!r} is not in the DICOM dictionary"
        ) from None
    return tag, vr.split(" or ")[0], part


def _hint(word: str) -> str:
    lowered = {k.lower(): k for k in keyword_dict}
    close = [lowered[word.lower()]] if word.lower() in lowered else []
    close = close or difflib.get_close_matches(word, keyword_dict, n=1, cutoff=0.8)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _apply(ds: Dataset, path: Path_, value: str | None, selector: str) -> None:
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
        return "" if vr not in _INT_VRS | _FLOAT_VRS | _BINARY_VRS | {"AT"} else None
    where = f"for {part!r} in selector {selector!r}"
    if vr in _BINARY_VRS:
        raise InvalidInput(f"cannot match on VR {vr} {where}: leave the value empty")
    if vr not in _CHARSET_VRS and not value.isascii():
        raise InvalidInput(f"value {value!r} {where} must be ASCII (VR {vr})")
    _check_controls(vr, value, where)
    items = [value] if vr in _SINGLE_VALUED else value.split("\\")
    if vr in _DATE_VRS:
        dates = [_date_value(vr, item, where) for item in items]
        return dates[0] if len(dates) == 1 else dates
    try:
        if vr in _INT_VRS:
            converted: list[Any] = [int(item) for item in items]
        elif vr in _FLOAT_VRS:
            converted = [float(item) for item in items]
        elif vr == "AT":
            converted = [_resolve(item.strip(), selector)[0] for item in items]
        else:
            converted = items
    except ValueError:
        raise InvalidInput(f"value {value!r} {where} is not a number (VR {vr})") from None
    return converted[0] if len(converted) == 1 else converted


_DATE_VRS = frozenset({"DA", "TM", "DT"})
#: What LT, ST and UT may hold besides ESC (PS3.5 6.1.3): TAB, LF, FF and CR.
_TEXT_CONTROLS = frozenset("\t\n\f\r")


def _check_controls(vr: str, value: str, where: str) -> None:
    """Control characters have no place in a matching key: only ESC, in the text VRs that a
    character set extends (its escape sequences), and the line breaks of LT, ST and UT."""
    allowed = {"\x1b"} if vr in _CHARSET_VRS else set()
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


def _date_value(vr: str, item: str, where: str) -> str:
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


def _tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _value_str(elem: DataElement) -> str:
    if elem.value is None:
        return ""
    if isinstance(elem.value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in elem.value)
    return str(elem.value)


def _flatten(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, str]]:
    for elem in ds:
        name = prefix + (keyword_for_tag(elem.tag) or _tag_str(elem.tag))
        if elem.VR != "SQ":
            yield name, _value_str(elem)
        elif not elem.value:
            yield name, ""
        for item in elem.value if elem.VR == "SQ" and elem.value else ():
            yield from _flatten(item, name + ".")


def _text_values(ds: Dataset) -> Iterator[tuple[str, str]]:
    """(name, value) of every value the character set applies to, sequences included."""
    for elem in ds.iterall():
        if elem.VR in _CHARSET_VRS and elem.value is not None:
            yield elem.keyword or _tag_str(elem.tag), _value_str(elem)


def _explicit_charset(ds: Dataset) -> list[str]:
    value = ds["SpecificCharacterSet"].value if "SpecificCharacterSet" in ds else None
    terms = [str(v).strip() for v in (value if isinstance(value, MultiValue) else [value or ""])]
    return terms if any(terms) else []


def _check_charset(ds: Dataset) -> None:
    """A charset from the file or a selector must be known and encode every text value."""
    terms = _explicit_charset(ds)
    if unknown := [t for t in terms if t not in python_encoding]:
        raise InvalidInput(f"unknown SpecificCharacterSet term {unknown[0]!r}")
    codecs = [python_encoding[t] if t else "ascii" for t in terms]
    for name, text in _text_values(ds) if codecs else ():
        for char in text:
            if not any(_encodes(char, codec) for codec in codecs):
                charset = "\\".join(terms)
                raise InvalidInput(
                    f"{name} holds {char!r}, which SpecificCharacterSet {charset!r} "
                    f"cannot encode: remove it or use {UTF8}"
                )


def _encodes(char: str, codec: str) -> bool:
    try:
        char.encode(codec)
    except UnicodeError:
        return False
    return True


def _read_query_file(path: str | Path) -> Dataset:
    """The attributes of a Part-10 file or a raw dataset (no meta), text values decoded."""
    where = f"query file {str(path)!r}"
    if not Path(path).is_file():
        raise InvalidInput(f"{where} does not exist or is not a file")
    not_query = f"{path} is not a DICOM query file"
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.addFilter(_silence)  # what pydicom says of a non-DICOM file, the error says
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = dcmread(path, force=True)
            all(True for _ in raw.iterall())  # decode now, with the file's character set
            ds = _without_meta(raw)
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"cannot read {where}: {reason}") from None
    except Exception as exc:  # pydicom raises many types on damaged input
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"{not_query}: {reason}") from None
    finally:
        pydicom_log.removeFilter(_silence)
    if not len(ds):
        raise InvalidInput(f"{not_query}: it holds no DICOM attributes")
    if problem := _not_dicom(ds):
        raise InvalidInput(f"{not_query}: {problem}")
    if all(elem.tag.group % 2 for elem in ds):
        raise InvalidInput(f"{not_query}: it holds only private attributes")
    _check_file_values(ds, where)
    return ds


def _silence(record: logging.LogRecord) -> bool:
    return False


#: Odd groups that cannot hold private attributes (PS3.5 7.8.1).
_NOT_PRIVATE_GROUPS = frozenset({0x0001, 0x0003, 0x0005, 0x0007, 0xFFFF})


def _not_dicom(ds: Dataset) -> str | None:
    """Why the attributes read from a file cannot be a DICOM data set, or None.

    Read with ``force``, any bytes parse to something: random bytes come out as a tag the
    dictionary does not know or a private attribute without its private creator.
    """
    for elem in ds:
        group, element = elem.tag.group, elem.tag.element
        if group % 2 == 0:
            if not keyword_for_tag(elem.tag):
                return f"unknown tag {_tag_str(elem.tag)}"
        elif group in _NOT_PRIVATE_GROUPS or 0 < element < 0x10 or 0x100 <= element < 0x1000:
            return f"invalid tag {_tag_str(elem.tag)}"
        elif element >= 0x1000 and (group << 16 | element >> 8) not in ds:
            return f"private tag {_tag_str(elem.tag)} without its private creator"
        if elem.VR == "SQ":
            for item in elem.value or ():
                if reason := _not_dicom(item):
                    return reason
    return None


def _check_file_values(ds: Dataset, where: str) -> None:
    """The query file's values pass the checks a selector's do: no control characters, and
    possible dates and times (``YYYY-MM-DD`` written as ``YYYYMMDD``)."""
    for elem in ds.iterall():
        if elem.VR in _BINARY_VRS | _INT_VRS | _FLOAT_VRS | {"SQ", "AT"} or elem.value is None:
            continue
        text = _value_str(elem)
        if not text:
            continue
        at = f"for {elem.keyword or _tag_str(elem.tag)!r} in {where}"
        _check_controls(elem.VR, text, at)
        if elem.VR in _DATE_VRS:
            items = [_date_value(elem.VR, item, at) for item in text.split("\\")]
            elem.value = items[0] if len(items) == 1 else items


def _without_meta(source: Dataset) -> Dataset:
    """A copy without groups 0000/0002 and group lengths; every value decoded on the way."""
    out = Dataset()
    for elem in source:
        if elem.tag.group not in (0x0000, 0x0002) and elem.tag.element != 0:
            out[elem.tag] = copy.deepcopy(elem)
    return out


def date_range(start: date | None, end: date | None) -> str:
    """A DA range matching value (PS3.4 C.2.2.2.5): ``A-``, ``-B``, ``A-B``, ``A`` or ``""``."""
    first = start.date() if isinstance(start, datetime) else start
    last = end.date() if isinstance(end, datetime) else end
    if first and last and first > last:
        raise InvalidInput(f"date range starts after it ends: {first} > {last}")
    if first == last:
        return "" if first is None else f"{first:%Y%m%d}"
    return (f"{first:%Y%m%d}" if first else "") + "-" + (f"{last:%Y%m%d}" if last else "")


#: VRs matched as dates and times (single value or range, PS3.4 C.2.2.2.5), and as numbers.
_TEMPORAL_VRS = frozenset({"DA", "TM", "DT"})
_NUMBER_VRS = frozenset({"IS", "DS"}) | _INT_VRS | _FLOAT_VRS
_UNMATCHED_VRS = _BINARY_VRS | {"AT", "SQ"}


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
    single = vr in _SINGLE_VALUED
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
