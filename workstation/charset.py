"""Decoding text in datasets whose Specific Character Set is missing (PS3.5 6.1).

pydicom falls back to Latin-1 when (0008,0005) is absent, so a PACS that sends UTF-8 without
declaring it produces mojibake (Weasis#627, fo-dicom#659). Before any value is read we look at
the raw bytes of the top-level text elements: if every non-ASCII value is valid UTF-8 we declare
ISO_IR 192, otherwise ISO_IR 100 (Latin-1), which is what such PACS mostly mean.
"""

from __future__ import annotations

from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

_TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC"}


def _raw_text_values(ds: Dataset) -> list[bytes]:
    values: list[bytes] = []
    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        if not isinstance(elem, RawDataElement) or not elem.value:
            continue
        vr = elem.VR
        if vr is None:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
        if vr in _TEXT_VRS:
            values.append(bytes(elem.value))
    return values


def guess_character_set(ds: Dataset) -> str | None:
    """Return the character set the undeclared text of ``ds`` is in, or ``None`` if ASCII."""
    non_ascii = [value for value in _raw_text_values(ds) if not value.isascii()]
    if not non_ascii:
        return None
    try:
        for value in non_ascii:
            value.decode("utf-8")
    except UnicodeDecodeError:
        return "ISO_IR 100"
    return "ISO_IR 192"


def ensure_character_set(ds: Dataset) -> Dataset:
    """Declare a character set on ``ds`` when it has none but carries non-ASCII text.

    Must run before any text element is accessed (pydicom converts raw values lazily with the
    character set in force at first access).
    """
    if "SpecificCharacterSet" in ds and ds.SpecificCharacterSet:
        return ds
    guessed = guess_character_set(ds)
    if guessed:
        ds.SpecificCharacterSet = guessed
        # pydicom decodes raw values with the character set recorded at read time.
        implicit, little = ds.original_encoding
        ds.set_original_encoding(implicit, little, convert_encodings(guessed))
    return ds
