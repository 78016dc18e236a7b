"""C-FIND queries: information models, levels, request identifiers and query files.

A :class:`Query` describes one C-FIND request identifier (PS3.4 C.4.1.1.3; K.4.1.1.3 for the
worklist). Its keys live in a private :class:`pydicom.Dataset` that is never handed out: text
values are plain ``str`` (a backslash-separated value of a multi-valued VR becomes a list of
``str``), binary numeric VRs hold ``int``/``float``. An empty value is a return key (universal
matching, PS3.4 C.2.2.2.3); an empty sequence asks for the whole sequence (C.2.2.2.6).
Keys are set through the ``-q`` selector syntax of :mod:`workstation.selector`; the matching
of values against keys (:func:`matches_value`) lives in :mod:`workstation.attribute_match` and
is importable from here.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.charset import python_encoding
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.uid import UID

from workstation.attribute_match import matches_pattern, matches_value
from workstation.errors import InvalidInput
from workstation.nodes import charset_label
from workstation.selector import (
    BINARY_VRS,
    CHARSET_VRS,
    DATE_VRS,
    FLOAT_VRS,
    INT_VRS,
    apply_path,
    check_controls,
    date_value,
    parse_selector,
    resolve_key,
    tag_str,
)

__all__ = [
    "UTF8",
    "InformationModel",
    "Level",
    "Query",
    "date_range",
    "default_keys",
    "matches_pattern",
    "matches_value",
    "parse_selector",
]

UTF8 = "ISO_IR 192"

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
        apply_path(ds, *parse_selector(name), name)
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
            apply_path(ds, [resolve_key(keyword, selector)], value, selector)
        return Query(self.model, self.level, ds)

    def with_selectors(self, *selectors: str) -> Query:
        """A copy with ``KEY=VALUE`` / ``KEY`` selectors (:func:`parse_selector`) in order."""
        ds = copy.deepcopy(self._dataset)
        for selector in selectors:
            apply_path(ds, *parse_selector(selector), selector)
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


def _value_str(elem: DataElement) -> str:
    if elem.value is None:
        return ""
    if isinstance(elem.value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in elem.value)
    return str(elem.value)


def _flatten(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, str]]:
    for elem in ds:
        name = prefix + (keyword_for_tag(elem.tag) or tag_str(elem.tag))
        if elem.VR != "SQ":
            yield name, _value_str(elem)
        elif not elem.value:
            yield name, ""
        for item in elem.value if elem.VR == "SQ" and elem.value else ():
            yield from _flatten(item, name + ".")


def _text_values(ds: Dataset) -> Iterator[tuple[str, str]]:
    """(name, value) of every value the character set applies to, sequences included."""
    for elem in ds.iterall():
        if elem.VR in CHARSET_VRS and elem.value is not None:
            yield elem.keyword or tag_str(elem.tag), _value_str(elem)


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
                return f"unknown tag {tag_str(elem.tag)}"
        elif group in _NOT_PRIVATE_GROUPS or 0 < element < 0x10 or 0x100 <= element < 0x1000:
            return f"invalid tag {tag_str(elem.tag)}"
        elif element >= 0x1000 and (group << 16 | element >> 8) not in ds:
            return f"private tag {tag_str(elem.tag)} without its private creator"
        if elem.VR == "SQ":
            for item in elem.value or ():
                if reason := _not_dicom(item):
                    return reason
    return None


def _check_file_values(ds: Dataset, where: str) -> None:
    """The query file's values pass the checks a selector's do: no control characters, and
    possible dates and times (``YYYY-MM-DD`` written as ``YYYYMMDD``)."""
    for elem in ds.iterall():
        if elem.VR in BINARY_VRS | INT_VRS | FLOAT_VRS | {"SQ", "AT"} or elem.value is None:
            continue
        text = _value_str(elem)
        if not text:
            continue
        at = f"for {elem.keyword or tag_str(elem.tag)!r} in {where}"
        check_controls(elem.VR, text, at)
        if elem.VR in DATE_VRS:
            items = [date_value(elem.VR, item, at) for item in text.split("\\")]
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
