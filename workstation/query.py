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
import re
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
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

    def identifier(self) -> Dataset:
        """A fresh identifier to send, with SpecificCharacterSet ISO_IR 192 when needed.

        Non-ASCII text needs a Specific Character Set (PS3.4 C.2.2.2, PS3.5 6.1); one set by the
        query file or a selector is kept, as it was checked to encode every value.
        """
        ds = copy.deepcopy(self._dataset)
        if not _explicit_charset(ds) and any(not v.isascii() for _, v in _text_values(ds)):
            ds.SpecificCharacterSet = UTF8
        return ds

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
    items = [value] if vr in _SINGLE_VALUED else value.split("\\")
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = dcmread(path, force=True)
            all(True for _ in raw.iterall())  # decode now, with the file's character set
            ds = _without_meta(raw)
    except Exception as exc:  # pydicom raises many types on damaged input
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"cannot read {where}: {reason}") from None
    if not len(ds):
        raise InvalidInput(f"{where} holds no DICOM attributes")
    for elem in ds.iterall():
        if elem.tag.group % 2 == 0 and not keyword_for_tag(elem.tag):
            raise InvalidInput(f"{where} is not DICOM: unknown tag {_tag_str(elem.tag)}")
    return ds


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


def _normalise(text: str) -> str:
    bare = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(bare.casefold().replace("^", " ").split())


def matches_pattern(value: str, pattern: str) -> bool:
    """DICOM wildcard matching (PS3.4 C.2.2.2.4) ignoring case, accents and ``^`` versus spaces.

    ``*`` matches any run of characters, ``?`` exactly one; an empty pattern matches everything
    (universal matching, C.2.2.2.3). Backslash-separated values or patterns match when any pair
    does. Meant to refine results locally: peers such as dcmqrscp match case-sensitively.
    """
    patterns = [_normalise(p) for p in pattern.split("\\")]
    if not any(patterns):
        return True
    values = [_normalise(v) for v in value.split("\\")]
    for p in filter(None, patterns):
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p)
        if any(re.fullmatch(regex, v, re.S) for v in values):
            return True
    return False
