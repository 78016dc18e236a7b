"""C-FIND identifiers kept as the bytes that came off the wire, decoded only as far as asked.

``workstation find --json`` of many matches used to spend most of its time in pydicom: decoding
each identifier into a :class:`~pydicom.dataset.Dataset`, then :meth:`Dataset.to_json_dict`
building a ``DataElement`` per element, validating and converting numbers. A
:class:`RawIdentifier` walks the top-level elements of the bytes once with :mod:`struct` and
converts each value straight to its DICOM JSON (PS3.18 Annex F) or text form, exactly as pydicom
would (same splitting, padding, character sets and number rules). Anything unusual takes
pydicom's own path, through :meth:`RawIdentifier.dataset`:

- for the whole identifier: bytes that do not walk cleanly (undefined lengths, a VR pydicom does
  not know, truncated data, a repeated tag, explicit/implicit VR other than announced, an item
  tag), a Specific Character Set with a VR other than CS, or a pydicom configuration other than
  the default (``datetime_conversion``, ``use_DS_decimal``/numpy, ``use_none_as_empty...``,
  a data element callback or custom hooks, ``reading_validation_mode`` RAISE);
- for one element: a sequence or a VR outside AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT
  US UL SS SL FL FD (AT, OB, UN, ambiguous VRs...), a private tag in implicit VR, a tag the
  dictionary does not know, an LUT descriptor, a binary value of the wrong length, an IS/DS value
  that is not a plain number (or an IS longer than 12 characters, which pydicom warns about), a
  PN with several values one of which is empty.

:meth:`RawIdentifier.dataset` itself (what ``workstation.find()`` yields) is built from the same
walk: the :class:`~pydicom.dataelem.RawDataElement` objects, encoding attributes and converted
(0008,0005) that ``read_dataset`` followed by ``ensure_character_set`` leave, so that pydicom
converts each element on first access exactly as before. It is read by pydicom's
``read_dataset`` instead when the walk falls back for the whole identifier (above), also when
pydicom's ``config.debugging`` is on (its reader logs each element).
"""

from __future__ import annotations

import re
import struct
from codecs import lookup as codec_lookup
from collections.abc import Callable
from functools import lru_cache
from io import BytesIO
from typing import Any, cast

from pydicom import config
from pydicom import hooks as pydicom_hooks
from pydicom.charset import convert_encodings, decode_bytes, default_encoding
from pydicom.datadict import dictionary_has_tag, dictionary_keyword, dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.valuerep import STR_VR, TEXT_VR_DELIMS
from pydicom.values import convert_string

from workstation.charset import _TEXT_VRS as _GUESSED_FROM_VRS  # what ensure_character_set reads
from workstation.charset import ensure_character_set

_CHARSET_TAG = 0x00080005
_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})

_IMPLICIT_HEADER = struct.Struct("<HHI").unpack_from
_EXPLICIT_HEADER = struct.Struct("<HH2sH").unpack_from
_LONG_LENGTH = struct.Struct("<I").unpack_from

#: VRs pydicom reads in explicit VR, and those of them with a 4-byte length (PS3.5 7.1.2).
_KNOWN_VRS = (
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL",
    "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US",
    "UT", "UV",
)  # fmt: skip
_VR_OF_BYTES = {vr.encode("ascii"): vr for vr in _KNOWN_VRS}
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}

_IS = re.compile(r" *[+-]?[0-9]+ *")  # pydicom's IS rule, ASCII digits only
_DS = re.compile(r" *[+-]?([0-9]+|[0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *")  # its DS rule
_NUMBERS = {"US": ("H", 2), "UL": ("I", 4), "SS": ("h", 2), "SL": ("i", 4)}
_NUMBERS |= {"FL": ("f", 4), "FD": ("d", 8)}

Elements = dict[int, tuple[str | None, bytes]]
#: (a fast name of the first Python codec, pydicom's list of them) to decode text with.
Codecs = tuple[str, list[str]]


class RawIdentifier:
    """One C-FIND identifier as received (raw bytes); decoded only as far as asked.

    ``data`` is the data set in the negotiated transfer syntax: Implicit VR Little Endian
    (``implicit_vr=True``) or Explicit VR Little Endian. Every method gives what the same
    identifier decoded by pydicom (as pynetdicom does) and passed through
    :func:`workstation.charset.ensure_character_set` gives.
    """

    __slots__ = (
        "_dataset", "_elements", "_state", "_state_yet", "_walked_yet", "data", "implicit_vr",
    )  # fmt: skip

    def __init__(self, data: bytes, *, implicit_vr: bool = True) -> None:
        self.data = bytes(data)
        self.implicit_vr = implicit_vr
        self._walked_yet = False
        self._elements: Elements | None = None
        self._state_yet = False
        self._state: tuple[Elements, Codecs] | None = None
        self._dataset: Dataset | None = None

    def __repr__(self) -> str:
        syntax = "implicit" if self.implicit_vr else "explicit"
        return f"<RawIdentifier {len(self.data)} bytes, {syntax} VR>"

    def dataset(self) -> Dataset:
        """pydicom's decoding of the bytes with :func:`ensure_character_set` applied.

        Built on first use and kept: every call returns the same object, which the fallback
        paths of the other methods also read (so do not change it). Usually built from the walk
        of the bytes (:func:`_dataset_of`): the same raw elements, encoding attributes and
        converted (0008,0005) that ``read_dataset`` and ``ensure_character_set`` leave.
        """
        if self._dataset is None:
            ds = None
            if _pydicom_as_shipped() and not config.debugging:
                elements = self._walked_elements()
                if elements is not None:
                    ds = _dataset_of(elements, self.implicit_vr)
            if ds is None:
                ds = ensure_character_set(read_dataset(BytesIO(self.data), self.implicit_vr, True))
            self._dataset = ds
        return self._dataset

    def json_dict(self) -> dict[str, Any]:
        """``self.dataset().to_json_dict()`` (PS3.18 Annex F), without building the dataset for
        the usual flat identifiers."""
        state = self._walked() if _pydicom_as_shipped() else None
        if state is None:
            return self.dataset().to_json_dict()
        elements, codecs = state
        out: dict[str, Any] = {}
        converters = _JSON
        keys = _JSON_KEYS
        lut = _LUT_DESCRIPTORS
        for tag, (vr, raw) in elements.items():
            key = keys.get(tag) or _json_key(tag)
            convert = converters.get(vr)  # type: ignore[arg-type]  # None: no converter
            value = None
            if convert is not None and tag not in lut:
                try:
                    value = convert(raw, codecs)
                except Exception:  # let pydicom decide (and warn, or raise) about the value
                    value = None
            if value is None:
                out[key] = self.dataset()[tag].to_json_dict(None, 1024)
            elif value:
                out[key] = {"vr": vr, "Value": value}
            else:
                out[key] = {"vr": vr}
        return out

    def keywords(self) -> list[str]:
        """The keywords of the top-level elements present, in tag order (private and unknown
        tags have none), as ``[e.keyword for e in self.dataset() if e.keyword]``."""
        state = self._walked()
        if state is None:
            return [elem.keyword for elem in self.dataset() if elem.keyword]
        return [kw for kw in map(_keyword, sorted(state[0])) if kw]

    def text(self, keyword: str) -> str:
        """The value of ``keyword`` as one line of text, ``""`` when absent or empty:
        :func:`text_of_dataset` of :meth:`dataset`."""
        tag = _tag(keyword)
        state = self._walked() if tag is not None and _pydicom_as_shipped() else None
        if tag is None or state is None:
            return text_of_dataset(self.dataset(), keyword)
        elements, codecs = state
        found = elements.get(tag)
        if found is None:
            return ""
        vr, raw = found
        convert = _TEXT.get(vr) if vr is not None else None
        if convert is not None and tag not in _LUT_DESCRIPTORS:
            try:
                text = convert(raw, codecs)
            except Exception:
                text = None
            if text is not None:
                return text
        return text_of_dataset(self.dataset(), keyword)

    def _walked(self) -> tuple[Elements, Codecs] | None:
        """{tag: (VR, raw value)} in the order of the bytes, and the text codecs; None when
        the bytes need pydicom's reader."""
        if not self._state_yet:
            elements = self._walked_elements()
            self._state = None if elements is None else _with_character_set(elements)
            self._state_yet = True
        return self._state

    def _walked_elements(self) -> Elements | None:
        """:func:`_walk` of the bytes, kept."""
        if not self._walked_yet:
            self._elements = _walk(self.data, self.implicit_vr)
            self._walked_yet = True
        return self._elements


def text_of_dataset(ds: Dataset, keyword: str) -> str:
    """The value of ``keyword`` in ``ds`` as one line of text (``""`` when absent): multiple
    values joined with backslashes, each as ``str`` shows it."""
    value = ds.get(keyword)
    if value is None or value == "":
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


# -- walking the bytes ------------------------------------------------------------------------


def _walk(data: bytes, implicit: bool) -> Elements | None:
    """The top-level elements of ``data``, or None where pydicom's reader would do more than
    read defined-length elements one after another (or warn, or raise)."""
    end = len(data)
    if end >= 6:  # pydicom checks the first element's VR bytes and switches if they disagree
        looks_implicit = not (0x40 < data[4] < 0x5B and 0x40 < data[5] < 0x5B)
        if looks_implicit != implicit:
            return None
    elements: Elements = {}
    pos = 0
    vr: str | None
    if implicit:
        header = _IMPLICIT_HEADER
        known = _VR_CACHE
        while pos < end:
            if end - pos < 8:
                return None
            group, number, length = header(data, pos)
            pos += 8
            tag = group << 16 | number
            vr = known.get(tag, _MISSING)
            if vr is _MISSING:
                vr = _dictionary_vr(tag)
            if end - pos < length or group == 0xFFFE or tag in elements:
                return None  # (undefined length 0xFFFFFFFF is always beyond the end)
            elements[tag] = (vr, data[pos : pos + length])
            pos += length
        return elements
    explicit = _EXPLICIT_HEADER
    vrs = _VR_OF_BYTES
    long_vrs = _LONG_VRS
    while pos < end:
        if end - pos < 8:
            return None
        group, number, vr_bytes, length = explicit(data, pos)
        pos += 8
        tag = group << 16 | number
        vr = vrs.get(vr_bytes)
        if vr is None:
            return None
        if vr in long_vrs:
            if end - pos < 4:
                return None
            length = _LONG_LENGTH(data, pos)[0]
            pos += 4
        if end - pos < length or group == 0xFFFE or tag in elements:
            return None
        elements[tag] = (vr, data[pos : pos + length])
        pos += length
    return elements


def _with_character_set(elements: Elements) -> tuple[Elements, Codecs] | None:
    """The codecs pydicom decodes the text with (PS3.5 6.1): those of the declared (0008,0005),
    or of ensure_character_set's guess, which also adds or fills (0008,0005) as it does; None
    where pydicom's reader is needed."""
    declared = elements.get(_CHARSET_TAG)
    if declared is not None:
        if declared[0] != "CS":
            return None
        codecs = _declared_codecs(declared[1])
        if codecs is not None:
            return elements, codecs
    guessed = _guess_character_set(elements)
    if guessed is None:
        return elements, _codecs(["iso8859"])  # pydicom's default_encoding
    if any(
        not raw and tag >> 16 & 1 and _EMPTY_RAW.get(vr) is None
        for tag, (vr, raw) in elements.items()
    ):
        # an empty private element whose raw value is None: ensure_character_set converts it
        # while guessing, and with it its private creator, in the character set of before
        return None
    # a copy (the walk itself is what the dataset is built from), in place if present but empty
    elements = {**elements, _CHARSET_TAG: ("CS", guessed.encode("ascii"))}
    return elements, _codecs(convert_encodings(guessed))


@lru_cache(maxsize=64)
def _declared_codecs(raw: bytes) -> Codecs | None:
    """The codecs of a (0008,0005) value as pydicom reads it; None when it is empty."""
    value = convert_string(raw, True)
    return _codecs(convert_encodings(value)) if value else None


def _codecs(encodings: list[str]) -> Codecs:
    """pydicom's Python encodings, with a name of the first that Python decodes fastest."""
    first = encodings[0]
    try:
        name = codec_lookup(first).name
    except LookupError:  # decode_bytes warns about it
        return first, list(encodings)
    return _FAST_NAMES.get(name, first), list(encodings)


_FAST_NAMES = {"iso8859-1": "latin-1", "utf-8": "utf-8", "ascii": "ascii"}


def _guess_character_set(elements: Elements) -> str | None:
    """workstation.charset.guess_character_set on the raw values."""
    non_ascii = [
        raw
        for vr, raw in elements.values()
        if raw and vr in _GUESSED_FROM_VRS and not raw.isascii()
    ]
    if not non_ascii:
        return None
    try:
        for raw in non_ascii:
            raw.decode("utf-8")
    except UnicodeDecodeError:
        return "ISO_IR 100"
    return "ISO_IR 192"


# -- the dataset, as read_dataset builds it -------------------------------------------------------


def _dataset_of(elements: Elements, implicit: bool) -> Dataset | None:
    """``ensure_character_set(read_dataset(BytesIO(data), implicit, True))`` from the walk of
    ``data``; None where (0008,0005) has an explicit VR other than CS.

    read_dataset keeps every defined-length element (sequences included) as the
    :class:`RawDataElement` built here: VR None in implicit VR, the value's offset in ``data``,
    ``empty_value_for_VR(VR, raw=True)`` for an empty value. It records the encoding, with the
    character sets of (0008,0005) converted as pydicom converts that element. Then
    ensure_character_set reads (0008,0005), which converts it into a :class:`DataElement` in
    place; when it is absent, guesses from the walk as that function guesses from the dataset;
    when it is empty, or the tags are out of order, that function itself runs.
    """
    tags = _BASE_TAGS
    new = tuple.__new__
    raw_element = RawDataElement
    raw_elements: dict[BaseTag, RawDataElement | DataElement] = {}
    tell = 0
    if implicit:  # empty_value_for_VR(None, raw=True) is None
        for tag, (_, raw) in elements.items():
            base = tags.get(tag) or _base_tag(tag)
            tell += 8
            length = len(raw)
            implicit_fields = (base, None, length, raw or None, tell, True, True, True, False)
            raw_elements[base] = new(raw_element, implicit_fields)
            tell += length
    else:
        empty = _EMPTY_RAW
        long_vrs = _LONG_VRS
        for tag, (vr, raw) in elements.items():
            base = tags.get(tag) or _base_tag(tag)
            tell += 12 if vr in long_vrs else 8
            length = len(raw)
            explicit_fields = (base, vr, length, raw or empty[vr], tell, False, True, True, False)
            raw_elements[base] = new(raw_element, explicit_fields)
            tell += length

    charset = cast(RawDataElement | None, raw_elements.get(_CHARSET_BASE_TAG))
    declared: Any = None
    if charset is None:
        encoding: str | list[str] = default_encoding
    else:
        if charset.VR not in (None, "CS"):
            return None  # pydicom converts it as that VR
        # convert_string's value (multi_string), made for data_element_generator (which
        # converts the encodings for the sequences that follow: warnings once more), for
        # read_dataset, then for ensure_character_set
        items = (charset.value or b"").decode(default_encoding).rstrip(" \x00").split("\\")
        if len(items) == 1:
            convert_encodings(items[0])
            encoding = convert_encodings(items[0])
            declared = items[0]
        else:
            convert_encodings(MultiValue(str, items))
            encoding = convert_encodings(MultiValue(str, items))
            declared = MultiValue(str, items)
        if declared:  # ensure_character_set reads it (ds.SpecificCharacterSet)
            raw_elements[_CHARSET_BASE_TAG] = DataElement(
                _CHARSET_BASE_TAG, "CS", declared, charset.value_tell, False, True
            )
    ds = _new_dataset(raw_elements, implicit, encoding)
    if declared:
        return ds  # ensure_character_set stops there
    guessed = None if charset is not None else _guess_character_set(elements)
    if charset is not None or (guessed is not None and not _ascending(elements)):
        return ensure_character_set(ds)
    # ensure_character_set: guess_character_set reads the raw text values with
    # Dataset.get_item, which takes a raw value of None for a deferred read and converts the
    # element (and, for a private one, its creator, which comes before it in ascending order:
    # read already). Then it declares what it guessed.
    for tag in list(raw_elements):
        elem = raw_elements[tag]
        if isinstance(elem, RawDataElement) and elem.value is None:
            ds[tag]  # the conversion is the point
    if guessed is not None:
        ds.SpecificCharacterSet = guessed
        ds.set_original_encoding(implicit, True, convert_encodings(guessed))
    return ds


def _ascending(elements: Elements) -> bool:
    tags = list(elements)
    return tags == sorted(tags)


def _new_dataset(
    elements: dict[BaseTag, RawDataElement | DataElement], implicit: bool, encoding: Any
) -> Dataset:
    """``Dataset(elements, parent_encoding=default_encoding)`` with ``set_original_encoding(
    implicit, True, encoding)``, as read_dataset ends; the attributes of a new Dataset are
    copied from one made earlier (Dataset.__init__ sets a dozen of them, one at a time
    through Dataset.__setattr__)."""
    template = _DATASET_TEMPLATES.get(config._use_future, _MISSING_TEMPLATE)
    if template is _MISSING_TEMPLATE:
        template = _dataset_template()
    if template is None or Dataset.__init__ is not _DATASET_INIT:
        ds = Dataset(elements, parent_encoding=default_encoding)
        ds.set_original_encoding(implicit, True, encoding)
        return ds
    ds = Dataset.__new__(Dataset)
    attributes = ds.__dict__
    attributes.update(template)
    for name in _FRESH_DICTS:
        attributes[name] = attributes[name].copy()
    attributes["_dict"] = elements
    attributes["_read_implicit"] = implicit
    attributes["_read_little"] = True
    attributes["_read_charset"] = encoding
    return ds


def _dataset_template() -> dict[str, Any] | None:
    """The attributes of ``Dataset({}, parent_encoding=default_encoding)``, if all are flat
    (None, bool, int, str, or a dict of those, copied for each dataset); else None."""
    attributes = dict(vars(Dataset({}, parent_encoding=default_encoding)))
    flat = (type(None), bool, int, str)
    needed = {"_dict", "_read_implicit", "_read_little", "_read_charset", *_FRESH_DICTS}
    usable = needed <= set(attributes)
    for name, value in attributes.items():
        if isinstance(value, dict):
            usable = usable and (name == "_dict" or name in _FRESH_DICTS)
            usable = usable and all(isinstance(v, flat) for v in value.values())
        elif not isinstance(value, flat):
            usable = False
    template = attributes if usable else None
    _DATASET_TEMPLATES[config._use_future] = template
    return template


_DATASET_INIT = Dataset.__init__
_DATASET_TEMPLATES: dict[bool, dict[str, Any] | None] = {}
_MISSING_TEMPLATE: dict[str, Any] = {}
_FRESH_DICTS = ("_private_blocks", "_pixel_array_opts", "_pixel_id")
_CHARSET_BASE_TAG = BaseTag(_CHARSET_TAG)
_BASE_TAGS: dict[int, BaseTag] = {_CHARSET_TAG: _CHARSET_BASE_TAG}  # found by identity


def _base_tag(tag: int) -> BaseTag:
    base = BaseTag(tag)
    if len(_BASE_TAGS) < 20000:
        _BASE_TAGS[tag] = base
    return base


#: empty_value_for_VR(VR, raw=True) with use_none_as_empty_text_VR_value off (a condition of
#: the fast paths): b"" for sequences and text, None for numbers, bytes and implicit VR.
_EMPTY_RAW: dict[str | None, bytes | None] = {
    vr: b"" if vr in ("SQ", "PN") or (vr in STR_VR and vr not in ("DS", "IS")) else None
    for vr in (None, *_KNOWN_VRS)
}


def _pydicom_as_shipped() -> bool:
    """pydicom's configuration is the one the fast paths reproduce."""
    return (
        not config.datetime_conversion
        and not config.use_DS_decimal
        and not config.use_DS_numpy
        and not config.use_IS_numpy
        and not config.use_none_as_empty_text_VR_value
        and config.data_element_callback is None
        and config.settings.reading_validation_mode != config.RAISE
        and pydicom_hooks.hooks.raw_element_vr is pydicom_hooks.raw_element_vr
        and pydicom_hooks.hooks.raw_element_value is pydicom_hooks.raw_element_value
        and not pydicom_hooks.hooks.raw_element_kwargs
    )


_VR_CACHE: dict[int, str | None] = {}
_MISSING = "?"


def _dictionary_vr(tag: int) -> str | None:
    try:
        return _VR_CACHE[tag]
    except KeyError:
        pass
    try:
        vr: str | None = str(dictionary_VR(tag))
    except KeyError:  # private or unknown: pydicom's own rules (private dictionary, UN...)
        vr = None
    if len(_VR_CACHE) < 20000:
        _VR_CACHE[tag] = vr
    return vr


_JSON_KEYS: dict[int, str] = {}


def _json_key(tag: int) -> str:
    key = f"{tag:08X}"
    if len(_JSON_KEYS) < 20000:
        _JSON_KEYS[tag] = key
    return key


@lru_cache(maxsize=4096)
def _keyword(tag: int) -> str:
    return str(dictionary_keyword(tag)) if dictionary_has_tag(tag) else ""


@lru_cache(maxsize=1024)
def _tag(keyword: str) -> int | None:
    tag = tag_for_keyword(keyword)
    return None if tag is None else int(tag)


# -- values, as pydicom.values converts them -----------------------------------------------------


def _decode(raw: bytes, codecs: Codecs) -> str:
    """pydicom.charset.decode_bytes, its common case inlined."""
    if b"\x1b" not in raw:
        try:
            return raw.decode(codecs[0])
        except (UnicodeError, LookupError):
            pass  # decode_bytes warns and replaces
    return decode_bytes(raw, codecs[1], TEXT_VR_DELIMS)


def _string_items(raw: bytes, codecs: Codecs) -> list[str]:
    """AS CS DA DT TM (convert_string: multi_string)."""
    text = raw.decode("latin-1").rstrip(" \x00")
    return text.split("\\") if text else []


def _string_text(raw: bytes, codecs: Codecs) -> str:
    return raw.decode("latin-1").rstrip(" \x00")


def _ui_items(raw: bytes, codecs: Codecs) -> list[str]:
    """UI (convert_UI: multi_string of UID, which strips each value)."""
    items = [v.strip() for v in raw.decode("latin-1").rstrip(" \x00").split("\\")]
    return [] if items == [""] else items


def _ui_text(raw: bytes, codecs: Codecs) -> str:
    return "\\".join([v.strip() for v in raw.decode("latin-1").rstrip(" \x00").split("\\")])


def _ae_items(raw: bytes, codecs: Codecs) -> list[str]:
    items = [v.strip() for v in raw.decode("latin-1").split("\\")]
    return [] if items == [""] else items


def _ae_text(raw: bytes, codecs: Codecs) -> str:
    return "\\".join([v.strip() for v in raw.decode("latin-1").split("\\")])


def _multi_text_items(raw: bytes, codecs: Codecs) -> list[str]:
    """SH LO UC (convert_text)."""
    text = _decode(raw, codecs)
    if "\\" not in text:
        text = text.rstrip("\x00 ")
        return [text] if text else []
    return [v.rstrip("\x00 ") for v in text.split("\\")]


def _multi_text_text(raw: bytes, codecs: Codecs) -> str:
    return "\\".join([v.rstrip("\x00 ") for v in _decode(raw, codecs).split("\\")])


def _single_text_items(raw: bytes, codecs: Codecs) -> list[str]:
    """LT ST UT (convert_single_string)."""
    text = _decode(raw, codecs).rstrip("\x00 ")
    return [text] if text else []


def _single_text_text(raw: bytes, codecs: Codecs) -> str:
    return _decode(raw, codecs).rstrip("\x00 ")


def _ur_items(raw: bytes, codecs: Codecs) -> list[str]:
    text = raw.decode("latin-1").rstrip()
    return [text] if text else []


def _ur_text(raw: bytes, codecs: Codecs) -> str:
    return raw.decode("latin-1").rstrip()


def _name_groups(text: str) -> list[list[str]]:
    """PN (convert_PN, PersonName.components): the groups of each value, empty ones removed
    from the end."""
    names = []
    for name in text.split("\\"):
        groups = name.split("=")
        while groups and not groups[-1]:
            groups.pop()
        names.append(groups)
    return names


def _pn_items(raw: bytes, codecs: Codecs) -> list[dict[str, str]] | None:
    text = _decode(raw.rstrip(b"\x00 "), codecs)
    if "\\" not in text and "=" not in text:  # the usual: one name, alphabetic only
        return [{"Alphabetic": text}] if text else []
    names = _name_groups(text)
    if len(names) == 1 and not names[0]:
        return []  # an empty PersonName: no value
    items = []
    for groups in names:
        if not groups:
            return None  # pydicom's to_json_dict fails on an empty name among several
        entry = {"Alphabetic": groups[0]}
        if len(groups) > 1:
            entry["Ideographic"] = groups[1]
        if len(groups) > 2:
            entry["Phonetic"] = groups[2]
        items.append(entry)
    return items


def _pn_text(raw: bytes, codecs: Codecs) -> str:
    names = _name_groups(_decode(raw.rstrip(b"\x00 "), codecs))
    return "\\".join(["=".join(groups) for groups in names])


def _is_values(raw: bytes) -> list[str] | None:
    """IS (convert_IS_string) as the strings IS keeps; None unless every one is a plain
    integer pydicom takes without a warning."""
    text = raw.decode("latin-1").rstrip(" \x00")
    if not text:
        return []
    items = text.split("\\")
    for item in items:
        if len(item) > 12 or not _IS.fullmatch(item):
            return None
    return items


def _is_items(raw: bytes, codecs: Codecs) -> list[int] | None:
    items = _is_values(raw)
    return None if items is None else [int(v) for v in items]


def _is_text(raw: bytes, codecs: Codecs) -> str | None:
    items = _is_values(raw)
    return None if items is None else "\\".join([v.strip() for v in items])


def _ds_values(raw: bytes) -> list[str] | None:
    """DS (convert_DS_string) as the strings DSfloat keeps; None unless every one is a plain
    decimal number."""
    text = raw.decode("latin-1").strip().rstrip(" \x00")
    if not text:
        return []
    items = text.split("\\")
    for item in items:
        if not _DS.fullmatch(item):
            return None
    return items


def _ds_items(raw: bytes, codecs: Codecs) -> list[float] | None:
    items = _ds_values(raw)
    return None if items is None else [float(v) for v in items]


def _ds_text(raw: bytes, codecs: Codecs) -> str | None:
    items = _ds_values(raw)
    return None if items is None else "\\".join([v.strip() for v in items])


def _binary(vr: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """US UL SS SL FL FD (convert_numbers): JSON values and text."""
    code, size = _NUMBERS[vr]

    def values(raw: bytes, codecs: Codecs) -> list[Any] | None:
        if len(raw) % size:
            return None  # pydicom raises (or makes it UN)
        return list(struct.unpack(f"<{len(raw) // size}{code}", raw))

    def text(raw: bytes, codecs: Codecs) -> str | None:
        found = values(raw, codecs)
        return None if found is None else "\\".join([str(v) for v in found])

    return values, text


_JSON: dict[str, Callable[[bytes, Codecs], list[Any] | None]] = {
    "AE": _ae_items,
    "UI": _ui_items,
    "LO": _multi_text_items,
    "SH": _multi_text_items,
    "UC": _multi_text_items,
    "LT": _single_text_items,
    "ST": _single_text_items,
    "UT": _single_text_items,
    "UR": _ur_items,
    "PN": _pn_items,
    "IS": _is_items,
    "DS": _ds_items,
}
_TEXT: dict[str, Callable[[bytes, Codecs], str | None]] = {
    "AE": _ae_text,
    "UI": _ui_text,
    "LO": _multi_text_text,
    "SH": _multi_text_text,
    "UC": _multi_text_text,
    "LT": _single_text_text,
    "ST": _single_text_text,
    "UT": _single_text_text,
    "UR": _ur_text,
    "PN": _pn_text,
    "IS": _is_text,
    "DS": _ds_text,
}
for _vr in ("AS", "CS", "DA", "DT", "TM"):
    _JSON[_vr] = _string_items
    _TEXT[_vr] = _string_text
for _vr in _NUMBERS:
    _JSON[_vr], _TEXT[_vr] = _binary(_vr)
del _vr

__all__ = ["RawIdentifier", "text_of_dataset"]
