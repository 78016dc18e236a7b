"""RawIdentifier against pydicom: the same DICOM JSON, text, keywords and printed output.

The reference for every identifier is what the C-FIND path yields today: pydicom's decoding of
the bytes (``read_dataset``, as pynetdicom does) followed by ``ensure_character_set``.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import pickle
import random
import struct
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from io import BytesIO
from typing import Any
from unittest import mock

import pytest
from pydicom import config
from pydicom import hooks as pydicom_hooks
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence as DicomSequence

from workstation import identifiers as identifiers_module
from workstation.charset import ensure_character_set
from workstation.cli import output
from workstation.identifiers import RawIdentifier
from workstation.query import InformationModel, Level, default_keys

BOTH = pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
ABSENT = ["PatientWeight", "SeriesInstanceUID", "OtherPatientIDs", "NotAKeyword", "keys"]


# -- references -----------------------------------------------------------------------------------


def today_text_of(ds: Dataset, keyword: str) -> str:
    """workstation.cli.output.text_of before RawIdentifier, verbatim."""
    value = ds.get(keyword)
    if value is None or value == "":
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def today_columns_for(rows: Sequence[Dataset]) -> list[str]:
    present: set[str] = set()
    for ds in rows:
        present.update(elem.keyword for elem in ds if elem.keyword)
    columns = [c for c in output.PREFERRED_COLUMNS if c in present]
    columns += sorted(
        k
        for k in present
        if k not in columns
        and k not in {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"}
        and not k.endswith("Sequence")
    )
    return columns


def today_table(rows: Sequence[Dataset]) -> str:
    out = io.StringIO()
    columns = today_columns_for(rows)
    cells = [[today_text_of(ds, c) for c in columns] for ds in rows]
    headers = [output.HEADERS.get(c, c) for c in columns]
    width = output.display_width
    widths = [max(width(headers[i]), *(width(r[i]) for r in cells)) for i in range(len(columns))]
    for row in [headers, *cells]:
        padded = (c + " " * (w - width(c)) for c, w in zip(row, widths, strict=True))
        out.write("  ".join(padded).rstrip() + "\n")
    return out.getvalue()


def today_json_lines(rows: Sequence[Dataset]) -> str:
    dumps = json.dumps
    return "".join(
        dumps(ds.to_json_dict(), ensure_ascii=False, separators=(",", ":")) + "\n" for ds in rows
    )


def today_csv(rows: Sequence[Dataset]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    columns = today_columns_for(rows[:1])
    writer.writerow(columns)
    for ds in rows:
        writer.writerow([today_text_of(ds, c) for c in columns])
    return out.getvalue()


def reference(data: bytes, implicit: bool) -> Dataset:
    return ensure_character_set(read_dataset(BytesIO(data), implicit, True))


def outcome(function: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result), or ("raises", the exception's type)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "ok", function()
        except Exception as exc:
            return "raises", type(exc)


def check(data: bytes, implicit: bool, *, absent: Sequence[str] = ABSENT) -> RawIdentifier:
    """RawIdentifier(data) gives what pydicom + ensure_character_set gives, in every respect."""
    raw = RawIdentifier(data, implicit_vr=implicit)
    read = outcome(lambda: reference(data, implicit))
    same_dataset(data, implicit)
    if read[0] != "ok":  # pydicom cannot read the bytes: neither can we
        assert outcome(raw.json_dict) == outcome(raw.keywords) == read
        assert outcome(lambda: raw.text("PatientName")) == read
        return raw
    decoded = read[1]
    want = outcome(decoded.to_json_dict)
    same_json(outcome(raw.json_dict), want, data)
    # again, from the walked state (and pydicom's state after a failure, if any)
    same_json(outcome(raw.json_dict), outcome(decoded.to_json_dict), data)
    ds = reference(data, implicit)
    keywords = outcome(lambda: [elem.keyword for elem in ds if elem.keyword])
    if keywords[0] == "ok":
        assert raw.keywords() == keywords[1]
        for keyword in [*keywords[1], *absent]:
            want_text = outcome(partial(today_text_of, reference(data, implicit), keyword))
            assert outcome(partial(raw.text, keyword)) == want_text, keyword
    # the dataset itself is the reference
    want = outcome(reference(data, implicit).to_json_dict)
    same_json(
        outcome(lambda: RawIdentifier(data, implicit_vr=implicit).dataset().to_json_dict()),
        want,
        data,
    )
    return raw


def same_json(got: tuple[str, Any], want: tuple[str, Any], data: bytes) -> None:
    """Equal outcomes; for objects also the same order and types, so the same JSON text."""
    assert got[0] == want[0], (got, want, data)
    if want[0] != "ok":
        assert got == want, data
        return
    assert list(got[1]) == list(want[1])  # the same order
    try:
        text = json.dumps(got[1], ensure_ascii=False)
    except TypeError:  # pydicom's own to_json_dict is not JSON with datetime_conversion
        assert got[1] == want[1], data
        return
    assert text == json.dumps(want[1], ensure_ascii=False), data
    if "NaN" not in text:  # NaN != NaN
        assert got[1] == want[1], data


# -- the dataset, in every respect -----------------------------------------------------------------


def recorded(function: Callable[[], Any]) -> tuple[tuple[Any, ...], list[tuple[str, str]]]:
    """The outcome of ``function`` (a result, or the type and message of its exception) and
    the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result: tuple[Any, ...] = ("ok", function())
        except Exception as exc:
            result = ("raises", type(exc).__name__, str(exc))
    return result, [(w.category.__name__, str(w.message)) for w in caught]


def plain(value: Any) -> Any:
    """A comparable picture of a pydicom object: types, reprs and every attribute, and for a
    dataset each element as converted by ``ds[tag]`` (outcome and warnings), in order."""
    if isinstance(value, Dataset):
        attributes = {k: plain(v) for k, v in vars(value).items() if k != "_dict"}
        elements = [
            (type(tag).__name__, int(tag), recorded(partial(lambda t: plain(value[t]), tag)))
            for tag in list(value.keys())
        ]
        return type(value).__name__, attributes, elements
    if isinstance(value, weakref.ref):
        return "weakref"
    if isinstance(value, dict):
        return "dict", [(plain(k), plain(v)) for k, v in value.items()]
    picture: list[Any] = [type(value).__name__]
    if value is None or isinstance(value, str | bytes | int | float | type):
        picture.append(repr(value))
    if isinstance(value, list | tuple):  # RawDataElement too
        picture.append([plain(v) for v in value])
    if hasattr(value, "__dict__") and not isinstance(value, type) and not callable(value):
        picture.append({k: plain(v) for k, v in vars(value).items()})
    elif callable(value):  # a function, maybe a closure made for each value
        picture.append(getattr(value, "__qualname__", None) or repr(value))
    return picture


def stored(ds: Dataset) -> Any:
    """The dataset as stored, converting nothing: its attributes and its ``_dict``."""
    attributes = {k: plain(v) for k, v in vars(ds).items() if k != "_dict"}
    return attributes, [(type(k).__name__, int(k), plain(e)) for k, e in ds._dict.items()]


def written(ds: Dataset, implicit: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = True
    write_dataset(fp, ds)
    return fp.getvalue()


DATASET_VIEWS: list[Callable[[Dataset, bool], Any]] = [
    lambda ds, implicit: stored(ds),
    lambda ds, implicit: stored(pickle.loads(pickle.dumps(ds))),  # (VR strings are shared)
    lambda ds, implicit: stored(copy.deepcopy(ds)),
    lambda ds, implicit: written(ds, implicit),  # raw elements as they are
    lambda ds, implicit: (ds.original_encoding, ds.original_character_set, ds._character_set),
    lambda ds, implicit: (ds.is_original_encoding, ds.is_implicit_VR, ds.is_little_endian),
    lambda ds, implicit: (plain(ds.get("SpecificCharacterSet")), "SpecificCharacterSet" in ds),
    lambda ds, implicit: repr(ds.to_json_dict()),  # repr: NaN, dates
    lambda ds, implicit: str(ds),
    lambda ds, implicit: plain(ds),
    lambda ds, implicit: written(ds, implicit),  # converted
    lambda ds, implicit: written(ds, not implicit),
    lambda ds, implicit: stored(ds),
]


def same_dataset(data: bytes, implicit: bool) -> None:
    """RawIdentifier(data).dataset() is read_dataset + ensure_character_set in every respect:
    the same warnings or exception making it, the same attributes and stored elements (raw or
    not), then the same encoding attributes, (0008,0005), JSON, printed text, converted
    elements (sequences' items and their attributes included) and written bytes, step by step.
    """
    fast, fast_warnings = recorded(lambda: RawIdentifier(data, implicit_vr=implicit).dataset())
    want, want_warnings = recorded(lambda: reference(data, implicit))
    assert fast_warnings == want_warnings, data
    assert fast[:1] == want[:1], (fast, want, data)
    if want[0] != "ok":
        assert fast == want, data
        return
    for number, view in enumerate(DATASET_VIEWS):
        assert recorded(partial(view, fast[1], implicit)) == recorded(
            partial(view, want[1], implicit)
        ), (number, data)


def uses_read_dataset(data: bytes, implicit: bool) -> bool:
    """Whether RawIdentifier(data).dataset() falls back to pydicom's reader."""
    with (
        mock.patch.object(
            identifiers_module, "read_dataset", wraps=identifiers_module.read_dataset
        ) as read,
        warnings.catch_warnings(),
        contextlib.suppress(Exception),
    ):
        warnings.simplefilter("ignore")
        RawIdentifier(data, implicit_vr=implicit).dataset()
    return bool(read.called)


# -- encoding -------------------------------------------------------------------------------------


def encode(ds: Dataset, implicit: bool, parent_encoding: str = "iso8859") -> bytes:
    """``ds`` as an identifier on the wire (pydicom's writer, as pynetdicom uses it)."""
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = True
    write_dataset(fp, ds, parent_encoding=parent_encoding)
    return fp.getvalue()


LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def element(tag: int, vr: str, value: bytes, implicit: bool, length: int | None = None) -> bytes:
    """One element as raw bytes, value as given (no padding added)."""
    size = len(value) if length is None else length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<I", size) + value
    if vr in LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack("<I", size) + value
    return head + vr.encode() + struct.pack("<H", size) + value


def pack(elements: Sequence[tuple[int, str, bytes]], implicit: bool) -> bytes:
    return b"".join(element(tag, vr, value, implicit) for tag, vr, value in elements)


# -- identifiers as PACS send them ---------------------------------------------------------------


def study(**changes: Any) -> Dataset:
    """A typical STUDY-level match with the workstation's default return keys."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.QueryRetrieveLevel = "STUDY"
    ds.RetrieveAETitle = "ORTHANC"
    ds.PatientName = "Müller^Jürgen^^Dr.^"
    ds.PatientID = "TB1234"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    ds.StudyDate = "20200101"
    ds.StudyTime = "101010.123"
    ds.AccessionNumber = "ACC0001"
    ds.ModalitiesInStudy = ["CT", "PR", "SR"]
    ds.StudyDescription = "CT Thorax mit KM"
    ds.ReferringPhysicianName = "Doe^John"
    ds.NumberOfStudyRelatedSeries = 3
    ds.NumberOfStudyRelatedInstances = 245
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.12345678901234567890"
    ds.StudyID = "1234"
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def series() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.RetrieveAETitle = "PACS"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.Modality = "MR"
    ds.SeriesNumber = "7"
    ds.SeriesDescription = "t2_tse_tra"
    ds.BodyPartExamined = "HEAD"
    ds.NumberOfSeriesRelatedInstances = "28"
    ds.SeriesDate = "20200101"
    ds.SeriesTime = "1010"
    return ds


def image() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.InstanceNumber = "12"
    ds.Rows = 512
    ds.Columns = 512
    ds.PixelSpacing = ["0.4882812", "0.4882812"]
    ds.SliceThickness = "5.0"
    return ds


def worklist(undefined_length: bool = False) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Ærø^Åse"
    ds.PatientID = "WL1"
    ds.AccessionNumber = "A1"
    ds.RequestedProcedureID = "RP1"
    ds.RequestedProcedureDescription = "Röntgen Thorax"
    ds.StudyInstanceUID = "1.2.3"
    ds.ReferringPhysicianName = ""
    step = Dataset()
    step.Modality = "CR"
    step.ScheduledStationAETitle = "CR1"
    step.ScheduledProcedureStepStartDate = "20240101"
    step.ScheduledProcedureStepStartTime = "0800"
    step.ScheduledPerformingPhysicianName = "Grün^Eva"
    step.ScheduledProcedureStepDescription = "Thorax p.a."
    step.ScheduledProcedureStepID = "S1"
    ds.ScheduledProcedureStepSequence = DicomSequence([step])
    if undefined_length:
        ds["ScheduledProcedureStepSequence"].is_undefined_length = True
        step.is_undefined_length_sequence_item = True
    return ds


def with_private(implicit: bool) -> bytes:
    ds = study()
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "Ünïcödé private")
    block.add_new(0x02, "US", 7)
    ds.add_new(0x00110010, "LO", "no creator")  # a private creator
    ds.add_new(0x00131001, "SH", "orphan")  # a private element without its creator
    return encode(ds, implicit)


def default_key_identifier(level: Level | None, implicit: bool) -> bytes:
    """The request's return keys as a PACS echoing them empty would send them back."""
    model = InformationModel.WORKLIST if level is None else InformationModel.STUDY_ROOT
    if level is Level.PATIENT:
        model = InformationModel.PATIENT_ROOT
    return encode(default_keys(model, level), implicit)


# -- the tests ------------------------------------------------------------------------------------


@BOTH
def test_typical_study_identifier(implicit: bool) -> None:
    raw = check(encode(study(), implicit), implicit)
    assert raw.text("PatientName") == "Müller^Jürgen^^Dr.^"
    assert raw.text("ModalitiesInStudy") == "CT\\PR\\SR"
    assert raw.json_dict()["00201208"] == {"vr": "IS", "Value": [245]}
    assert raw.keywords()[:3] == ["SpecificCharacterSet", "StudyDate", "StudyTime"]


@BOTH
@pytest.mark.parametrize("level", [Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE, None])
def test_empty_return_keys(implicit: bool, level: Level | None) -> None:
    raw = check(default_key_identifier(level, implicit), implicit)
    assert all(set(v) <= {"vr", "Value"} for v in raw.json_dict().values())


@BOTH
@pytest.mark.parametrize("make", [series, image, worklist, lambda: worklist(True)])
def test_other_levels_and_the_worklist(implicit: bool, make: Callable[[], Dataset]) -> None:
    check(encode(make(), implicit), implicit)


@BOTH
def test_private_tags(implicit: bool) -> None:
    check(with_private(implicit), implicit)


@BOTH
@pytest.mark.parametrize(
    "charset, names",
    [
        ("ISO_IR 100", ["Müller^Jürgen", "Çelik^Zoë"]),
        ("ISO_IR 192", ["Müller^Jürgen", "山田^太郎=やまだ^たろう", "Ωμέγα^Αλφα"]),
        (["", "ISO 2022 IR 87"], ["Yamada^Tarou=山田^太郎=やまだ^たろう"]),
        (["ISO 2022 IR 6", "ISO 2022 IR 100"], ["Müller^Jürgen", "Dupont^Hélène"]),
        (["ISO 2022 IR 6", "ISO 2022 IR 149"], ["Hong^Gildong=洪^吉洞=홍^길동"]),
        ("GB18030", ["Wang^XiaoDong=王^小东=", "张^三"]),
        ("ISO_IR 144", ["Иванов^Иван"]),
    ],
)
def test_declared_character_sets(implicit: bool, charset: Any, names: list[str]) -> None:
    for name in names:
        ds = study(SpecificCharacterSet=charset, PatientName=name)
        ds.StudyDescription = name.split("^")[0]  # LO in the same character set
        ds.InstitutionAddress = f"{name}\\ street"  # ST: a backslash is a character
        raw = check(encode(ds, implicit), implicit)
        assert raw.text("PatientName") == name.rstrip("=")


@BOTH
@pytest.mark.parametrize(
    "codec, expected", [("utf-8", "ISO_IR 192"), ("latin-1", "ISO_IR 100"), ("ascii", None)]
)
@pytest.mark.parametrize("declared", [None, b"", b"  "])
def test_undeclared_character_set_is_guessed(
    implicit: bool, codec: str, expected: str | None, declared: bytes | None
) -> None:
    name = "Muller^Jurgen" if codec == "ascii" else "Müller^Jürgen"
    elements = [
        (0x00080020, "DA", b"20200101"),
        (0x00081030, "LO", "Schädel".encode(codec, "replace") + b" "),
        (0x00100010, "PN", name.encode(codec)),
        (0x00100020, "LO", b"ID1 "),
    ]
    if declared is not None:
        elements.insert(0, (0x00080005, "CS", declared))
    raw = check(pack(elements, implicit), implicit)
    charset = raw.json_dict().get("00080005")
    if expected:
        assert charset == {"vr": "CS", "Value": [expected]}
        assert raw.text("PatientName") == name
        assert raw.text("SpecificCharacterSet") == expected
        assert list(raw.json_dict())[0 if declared is not None else -1] == "00080005"
    else:
        assert charset == (None if declared is None else {"vr": "CS"})


@BOTH
def test_undeclared_mixed_text_is_latin1(implicit: bool) -> None:
    elements = [
        (0x00081030, "LO", "Schädel".encode()),  # UTF-8
        (0x00100010, "PN", "Müller".encode("latin-1")),  # not UTF-8: everything is Latin-1
    ]
    check(pack(elements, implicit), implicit)


@BOTH
def test_undeclared_private_text_counts_only_with_its_vr(implicit: bool) -> None:
    """ensure_character_set reads private text only where the VR is explicit."""
    elements = [
        (0x00091001, "LO", "Grüße".encode("latin-1")),  # not UTF-8
        (0x00100010, "PN", "Müller".encode()),
    ]
    raw = check(pack(elements, implicit), implicit)
    assert raw.text("SpecificCharacterSet") == ("ISO_IR 192" if implicit else "ISO_IR 100")


@BOTH
@pytest.mark.parametrize(
    "charset",
    [b"ISO_IR 192", b"ISO_IR 999", b"\\ISO 2022 IR 87", b"ISO 2022 IR 100 ", b"\\", b"ISO_IR 6"],
)
def test_odd_declarations_and_undecodable_bytes(implicit: bool, charset: bytes) -> None:
    elements = [
        (0x00080005, "CS", charset),
        (0x00081030, "LO", b"Sch\xe4del\xff"),  # not UTF-8
        (0x00100010, "PN", b"M\xc3\xbcller^J\x1b$B;3ED\x1b(B"),
    ]
    check(pack(elements, implicit), implicit)


IS_VALUES = [
    b"  12 ", b"+12", b"-7", b"012", b"1.0", b"1.5", b"abc", b"", b" ", b"\t", b"1\\",
    b"1\\ 2", b"1\\\\2", b"99999999999999", b"2147483648", b"1_000", b"\xb2", b"12\x00",
    b"12 \x00", b" \\ ",
]  # fmt: skip
DS_VALUES = [
    b"1.50", b" 1e3 \\ 2", b"abc", b"nan", b"inf", b"1_0", b".5", b"5.", b"-0.0", b"", b"  ",
    b"1\\", b"1.5\x00", b"+1.5E-3", b"1234567890123456789", b"1e400", b"0x10", b"1 2",
]  # fmt: skip


@BOTH
@pytest.mark.parametrize("value", IS_VALUES)
def test_integer_strings(implicit: bool, value: bytes) -> None:
    elements = [(0x00200011, "IS", value), (0x00201208, "IS", value)]
    check(pack(elements, implicit), implicit)


@BOTH
@pytest.mark.parametrize("value", DS_VALUES)
def test_decimal_strings(implicit: bool, value: bytes) -> None:
    elements = [(0x00101020, "DS", value), (0x00280030, "DS", value)]
    check(pack(elements, implicit), implicit)


NAMES = [
    b"Doe^John", b"Doe^John^Q^Dr.^Jr.", b"A^B=C^D=E^F", b"=X", b"A==P", b"A=B=C=D", b"^", b"=",
    b"==", b"  ", b"", b"A\\B", b"A\\", b"\\", b"A=\\=B", b"Doe^John \x00", b"A==",
]  # fmt: skip


@BOTH
@pytest.mark.parametrize("value", NAMES)
def test_person_names(implicit: bool, value: bytes) -> None:
    elements = [(0x00080090, "PN", value), (0x00100010, "PN", value)]
    check(pack(elements, implicit), implicit)


STRINGS = [b"", b" ", b"A", b"A ", b" A", b"A\\B", b"A\\", b"\\", b"A\x00", b"A \x00", b"\xe9t\xe9"]


@BOTH
@pytest.mark.parametrize("value", STRINGS)
@pytest.mark.parametrize(
    "tag, vr",
    [
        (0x00080054, "AE"), (0x00101010, "AS"), (0x00080061, "CS"), (0x00080020, "DA"),
        (0x0008002A, "DT"), (0x00081030, "LO"), (0x00180015, "CS"), (0x00080108, "LT"),
        (0x00080050, "SH"), (0x00080081, "ST"), (0x00080030, "TM"), (0x00080119, "UC"),
        (0x00080018, "UI"), (0x0008010E, "UR"), (0x0008030E, "UT"),
    ],
)  # fmt: skip
def test_string_values(implicit: bool, value: bytes, tag: int, vr: str) -> None:
    check(pack([(tag, vr, value)], implicit), implicit)


@BOTH
@pytest.mark.parametrize(
    "tag, vr, code",
    [
        (0x00280010, "US", "H"), (0x0040A132, "UL", "I"), (0x00189219, "SS", "h"),
        (0x00186020, "SL", "i"), (0x00089459, "FL", "f"), (0x00081163, "FD", "d"),
    ],
)  # fmt: skip
def test_binary_numbers(implicit: bool, tag: int, vr: str, code: str) -> None:
    for values in [(), (1,), (0,), (3, 4), (-5, 6, 7)]:
        if code in "HI" and any(v < 0 for v in values):
            continue
        data = struct.pack(f"<{len(values)}{code}", *values)
        check(pack([(tag, vr, data)], implicit), implicit)
    check(pack([(tag, vr, b"\x01\x02\x03")], implicit), implicit)  # a wrong length


@BOTH
def test_unusual_elements_fall_back_per_element(implicit: bool) -> None:
    elements = [
        (0x00080005, "CS", b"ISO_IR 100"),
        (0x00080018, "UI", b"1.2.3\x00"),
        (0x00080054, "AE", b"AE1 "),
        (0x00081160, "IS", b"1\\2"),
        (0x00200013, "IS", b"1.5"),  # a float IS: pydicom's rules
        (0x00281101, "US", struct.pack("<3H", 0, 0, 16)),  # LUT descriptor ('US or SS')
        (0x00280106, "US", struct.pack("<H", 5)),  # 'US or SS'
        (0x00000901, "AT", struct.pack("<HH", 0x10, 0x10)),  # AT
        (0x0008041B, "OB", b"\x01\x02"),
        (0x00091001, "LO", b"private"),
        (0x00080000, "UL", struct.pack("<I", 12)),  # a group length
        (0x00089999, "LO", b"unknown"),  # not in the dictionary
        (0x60000010, "US", struct.pack("<H", 512)),  # a repeating group
        (0x7FE00010, "OB", b"\x00\x01"),
    ]
    check(pack(elements, implicit), implicit)


def test_explicit_vr_other_than_the_dictionary() -> None:
    elements = [
        (0x00080020, "UN", b"20200101"),  # UN for a known tag: pydicom uses the dictionary VR
        (0x00080050, "LO", b"ACC "),  # LO where the dictionary says SH
        (0x00100010, "LO", "Müller^Jürgen".encode("latin-1")),  # LO where it says PN
        (0x00100020, "OB", b"ID\x00\x01"),
        (0x00201208, "US", struct.pack("<H", 9)),  # US where it says IS
    ]
    check(pack(elements, False), False)


@BOTH
def test_bytes_that_need_pydicoms_reader(implicit: bool) -> None:
    good = pack([(0x00080020, "DA", b"20200101"), (0x00100010, "PN", b"Doe^John")], implicit)
    delimiter = b"\xfe\xff\xdd\xe0\0\0\0\0"
    undefined_vr = "LO" if implicit else "OB"  # explicit LO has a 2-byte length
    undefined = element(0x00081030, undefined_vr, b"Desc" + delimiter, implicit, 2**32 - 1)
    cases = [
        b"",
        good,
        good[:-3],  # truncated value
        good + b"\x08\x00",  # a partial header
        good + good,  # the same tags twice
        good[:16] + b"\xfe\xff\x0d\xe0\0\0\0\0" + good[16:],  # an item delimiter
        pack([(0x00080020, "DA", b"20200101")], not implicit),  # the other VR encoding
    ]
    if not implicit:
        cases.append(good.replace(b"PN", b"XY"))  # a VR pydicom does not know
        cases.append(good + b"\x08\x00\x30\x10UT\0\0")  # no room for the 4-byte length
        charset_lo = [(0x00080005, "LO", b"ISO_IR 192"), (0x00100010, "PN", "Grün".encode())]
        cases.append(pack(charset_lo, implicit))  # (0008,0005) with a VR other than CS
    for data in cases:
        check(data, implicit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(undefined, implicit)


@pytest.mark.parametrize(
    "setting", ["datetime_conversion", "DS_decimal", "use_none_as_empty", "RAISE", "hook"]
)
def test_other_pydicom_settings_take_pydicoms_path(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    def shout(raw: Any, data: dict[str, Any], **kwargs: Any) -> None:
        pydicom_hooks.raw_element_value(raw, data, **kwargs)
        if isinstance(data["value"], str):
            data["value"] = data["value"].upper()

    if setting == "datetime_conversion":
        monkeypatch.setattr(config, "datetime_conversion", True)
    elif setting == "DS_decimal":
        config.DS_decimal(True)
    elif setting == "use_none_as_empty":
        monkeypatch.setattr(config, "use_none_as_empty_text_VR_value", True)
    elif setting == "RAISE":
        monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    else:
        monkeypatch.setattr(pydicom_hooks.hooks, "raw_element_value", shout)
    try:
        for implicit in (True, False):
            check(encode(study(PatientSize="1.75"), implicit), implicit)
            check(
                pack([(0x00200013, "IS", b"1.5"), (0x00100010, "PN", b"A\\")], implicit), implicit
            )
            check(encode(Dataset(), implicit), implicit)
    finally:
        if setting == "DS_decimal":
            config.DS_decimal(False)


# -- the printers ---------------------------------------------------------------------------------


def identifiers(implicit: bool) -> list[bytes]:
    undeclared = pack(
        [(0x00100010, "PN", "Grün^Eva".encode()), (0x00100020, "LO", b"U1")], implicit
    )
    return [
        encode(study(), implicit),
        encode(
            study(PatientName="山田^太郎=やまだ^たろう", SpecificCharacterSet="ISO_IR 192"),
            implicit,
        ),
        encode(study(ModalitiesInStudy="MR", NumberOfStudyRelatedSeries=None), implicit),
        encode(study(StudyDescription="", ReferringPhysicianName=""), implicit),
        undeclared,
        with_private(implicit),
        encode(worklist(), implicit),
        encode(series(), implicit),
    ]


@BOTH
def test_printers_give_the_same_bytes(implicit: bool) -> None:
    blobs = identifiers(implicit)
    datasets = [reference(b, implicit) for b in blobs]

    def raws() -> list[RawIdentifier]:
        return [RawIdentifier(b, implicit_vr=implicit) for b in blobs]

    def table(rows: Sequence[Any]) -> str:
        out = io.StringIO()
        output.write_table(rows, out)
        return out.getvalue()

    def json_lines(rows: Sequence[Any]) -> str:
        out = io.StringIO()
        for ds in rows:
            output.write_json_line(ds, out)
        return out.getvalue()

    def batched(rows: Sequence[Any]) -> str:
        out = io.StringIO()
        with output.JsonLinesWriter(out, interval=3600, max_chars=2000) as writer:
            for ds in rows:
                writer.write(ds)
        return out.getvalue()

    def csv_text(rows: Sequence[Any]) -> str:
        out = io.StringIO()
        writer = output.CsvWriter(out)
        for ds in rows:
            writer.write(ds)
        return out.getvalue()

    assert table(raws()) == table(datasets) == today_table(datasets)
    assert json_lines(raws()) == json_lines(datasets) == today_json_lines(datasets)
    assert batched(raws()) == today_json_lines(datasets)
    assert csv_text(raws()) == csv_text(datasets) == today_csv(datasets)
    for start in range(len(blobs)):  # CSV columns come from the first row
        assert csv_text(raws()[start:]) == today_csv(datasets[start:])
    assert output.columns_for(raws()) == today_columns_for(datasets)
    mixed = [*raws()[:3], *datasets[3:]]
    assert table(mixed) == today_table(datasets)


def test_printers_default_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    raw = RawIdentifier(encode(series(), True))
    output.write_json_line(raw)
    output.write_table([raw])
    output.CsvWriter().write(raw)
    printed = capsys.readouterr().out
    ds = reference(raw.data, True)
    assert printed == today_json_lines([ds]) + today_table([ds]) + today_csv([ds])


# -- random identifiers ---------------------------------------------------------------------------

FAST_VRS = [
    "AE", "AS", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL", "SS", "ST",
    "TM", "UC", "UI", "UL", "UR", "US", "UT",
]  # fmt: skip
TAGS: dict[str, list[int]] = {vr: [] for vr in FAST_VRS}
for _tag, (_vr, _vm, _name, _retired, _keyword) in sorted(DicomDictionary.items()):
    if _vr in TAGS and not _retired and _keyword and 0x0008 <= _tag >> 16 < 0x7FE0:
        TAGS[_vr].append(_tag)
CHARSETS: list[tuple[bytes | None, str]] = [
    (None, "ascii"),
    (None, "utf-8"),
    (None, "latin-1"),
    (b"", "utf-8"),
    (b"ISO_IR 100", "latin-1"),
    (b"ISO_IR 192", "utf-8"),
    (b"GB18030", "gb18030"),
    (b"ISO_IR 144", "iso8859_5"),
]
ALPHABET = "abcXYZ 0129^=\\.-_'éüßÆ山田ДЖ€\x00"


def random_text(rng: random.Random, codec: str, alphabet: str = ALPHABET) -> bytes:
    n = rng.choice([0, 0, 1, 3, 8, 20])
    text = "".join(rng.choice(alphabet) for _ in range(n))
    encoded = text.encode(codec, "replace")
    return encoded + rng.choice([b"", b"", b" ", b"\x00", b"  "])


def random_value(rng: random.Random, vr: str, codec: str) -> bytes:
    count = rng.choice([0, 1, 1, 1, 2, 3])
    if vr in ("US", "UL", "SS", "SL", "FL", "FD"):
        code = {"US": "H", "UL": "I", "SS": "h", "SL": "i", "FL": "f", "FD": "d"}[vr]
        if code in "fd":
            values: list[Any] = [rng.choice([0.0, -1.5, 1e-3, 123456.789]) for _ in range(count)]
        else:
            low = 0 if code in "HI" else -100
            values = [rng.randint(low, 70000 if code in "Ii" else 300) for _ in range(count)]
        data = struct.pack(f"<{count}{code}", *values)
        return data + (b"\x01" if rng.random() < 0.03 else b"")
    if vr == "IS":
        items = [
            rng.choice(["12", " 7", "+3", "-0", "0042", "1.0", "x", "", " 5 "])
            for _ in range(count)
        ]
        return "\\".join(items).encode() + rng.choice([b"", b" ", b"\x00"])
    if vr == "DS":
        items = [
            rng.choice(["1.5", " 2", "-3e2", ".5", "7.", "x", "", "1e-10 "]) for _ in range(count)
        ]
        return "\\".join(items).encode() + rng.choice([b"", b" "])
    if vr in ("PN", "LO", "SH", "UC", "LT", "ST", "UT"):
        return b"\\".join(random_text(rng, codec) for _ in range(max(count, 1)))
    if vr == "UI":
        return b"\\".join(b"1.2.%d" % rng.randint(0, 999) for _ in range(count)) + b"\x00" * (
            count % 2
        )
    return b"\\".join(random_text(rng, "latin-1", "ABC 019:.-/\\é") for _ in range(max(count, 1)))


def random_identifier(rng: random.Random, implicit: bool) -> bytes:
    charset, codec = rng.choice(CHARSETS)
    chosen: dict[int, tuple[int, str, bytes]] = {}
    for _ in range(rng.randint(0, 14)):
        vr = rng.choice(FAST_VRS)
        tag = rng.choice(TAGS[vr])
        value = random_value(rng, vr, codec)
        if not implicit and vr not in LONG_VRS and len(value) > 0xFFFF:
            continue
        chosen[tag] = (tag, vr, value)
    elements = [chosen[t] for t in sorted(chosen)]
    if charset is not None:
        elements.insert(0, (0x00080005, "CS", charset))
    if rng.random() < 0.1:
        rng.shuffle(elements)  # out of order: pydicom keeps the order of the bytes
    return pack(elements, implicit)


def random_cases(count: int) -> Iterator[tuple[bytes, bool]]:
    rng = random.Random(20240607)
    for _ in range(count):
        implicit = rng.random() < 0.5
        yield random_identifier(rng, implicit), implicit


def test_random_flat_identifiers() -> None:
    fast = 0
    for data, implicit in random_cases(400):
        raw = check(data, implicit, absent=["PatientName", "StudyDate"])
        if raw._walked() is not None:
            fast += 1
    assert fast == 400  # all of them walk: no whole-identifier fallback


# -- the dataset, built from the walk -------------------------------------------------------------


def nested_sequences(implicit: bool, charset: str | None = "ISO_IR 100") -> bytes:
    """Defined-length sequences with text, numbers, private tags, an empty sequence, an item of
    undefined length inside a sequence of defined length, and a sequence inside an item."""
    ds = study(SpecificCharacterSet=charset)
    inner = Dataset()
    inner.CodeValue = "T-04000"
    inner.CodeMeaning = "Brüst"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"
    item.PatientWeight = "72.5"
    item.ConceptNameCodeSequence = DicomSequence([inner])
    block = item.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "Prïvate")
    odd = Dataset()
    odd.StudyComments = "Größe"
    odd.is_undefined_length_sequence_item = True
    ds.ReferencedStudySequence = DicomSequence([item, odd])
    ds.ProcedureCodeSequence = DicomSequence([])  # empty, length 0
    return encode(ds, implicit)


def dataset_cases(implicit: bool) -> Iterator[bytes]:
    """Identifiers whose dataset is built from the walk."""
    yield from identifiers(implicit)
    yield encode(study(), implicit)
    yield default_key_identifier(Level.STUDY, implicit)
    yield default_key_identifier(None, implicit)
    yield nested_sequences(implicit)
    yield nested_sequences(implicit, charset=None)
    yield encode(image(), implicit)
    yield encode(Dataset(), implicit)
    for charset in [b"", b"  ", b"ISO_IR 100", b"iso_ir 100", b"ISO_IR 100\\ISO_IR 192", b"\\"]:
        for name in [b"Doe^John", "Grün".encode(), "Grün".encode("latin-1"), b""]:
            elements = [
                (0x00080005, "CS", charset),
                (0x00080020, "DA", b""),
                (0x00091001, "LO", b""),  # private, empty: None in implicit VR
                (0x00100010, "PN", name),
                (0x00201208, "IS", b""),
            ]
            yield pack(elements, implicit)
            yield pack(elements[1:], implicit)  # undeclared
    private = [(0x00090010, "LO", b"ACME 1.0"), (0x00091001, "LO", b""), (0x00091002, "US", b"")]
    yield pack(private, implicit)  # an empty private element after its creator, undeclared
    for creator in [b"ACME 1.0", "Ünï".encode(), "Ünï".encode("latin-1")]:
        for name in [b"Doe", "Grün".encode(), "Grün".encode("latin-1")]:
            elements = [
                (0x00090010, "LO", creator),
                (0x00091002, "US", b""),
                (0x00100010, "PN", name),
                (0x00100020, "LO", b""),
            ]
            yield pack(elements, implicit)
    group_zero = [(0x00000000, "UL", b"\x04\0\0\0"), (0x00000902, "LO", b"x ")]
    yield pack(group_zero, implicit)  # tag 0, falsy


@BOTH
def test_empty_values_of_every_vr(implicit: bool) -> None:
    """read_dataset keeps empty_value_for_VR(VR, raw=True): b"", or None (numbers, bytes,
    implicit VR)."""
    by_vr: dict[str, int] = {}
    for tag, (vr, _vm, _name, retired, keyword) in sorted(DicomDictionary.items()):
        if keyword and not retired and vr in identifiers_module._KNOWN_VRS:
            by_vr.setdefault(vr, tag)
    assert len(by_vr) == len(identifiers_module._KNOWN_VRS)
    elements = [(tag, vr, b"") for vr, tag in sorted(by_vr.items(), key=lambda item: item[1])]
    for data in [
        pack(elements, implicit),
        pack([(0x00080005, "CS", b"ISO_IR 100"), *elements], implicit),
    ]:
        check(data, implicit)
        assert not uses_read_dataset(data, implicit)


@BOTH
def test_the_dataset_is_built_from_the_walk(implicit: bool) -> None:
    for data in dataset_cases(implicit):
        check(data, implicit)
        assert not uses_read_dataset(data, implicit), data


@BOTH
def test_undeclared_out_of_order(implicit: bool) -> None:
    """An empty private element before its creator: pydicom converts the creator (reading the
    element's VR, or setting its private_creator) before guess_character_set reads its text."""
    for creator in ["Ünï".encode(), "Ünï".encode("latin-1"), b"ACME"]:
        for name in ["Grün".encode(), "Grün".encode("latin-1"), b"Doe"]:
            elements = [
                (0x00100010, "PN", name),
                (0x00091002, "US", b""),
                (0x00090010, "LO", creator),
                (0x00100020, "LO", b""),
            ]
            check(pack(elements, implicit), implicit)


def test_random_identifiers_build_their_dataset_from_the_walk() -> None:
    for data, implicit in random_cases(150):
        assert not uses_read_dataset(data, implicit), data


@BOTH
def test_datasets_that_need_pydicoms_reader(implicit: bool) -> None:
    cases = [
        encode(worklist(True), implicit),  # undefined-length sequence and item
        pack([(0x00080020, "DA", b"20200101")], not implicit),  # the other VR encoding
        pack([(0x00100010, "PN", b"Doe^John")], implicit)[:-2],  # truncated
    ]
    if not implicit:
        cases.append(pack([(0x00080005, "UN", b"ISO_IR 192"), (0x00100010, "PN", b"X")], False))
        cases.append(pack([(0x00080005, "LO", b"ISO_IR 192"), (0x00100010, "PN", b"X")], False))
    for data in cases:
        check(data, implicit)
        assert uses_read_dataset(data, implicit), data


@pytest.mark.parametrize(
    "setting",
    ["datetime_conversion", "DS_decimal", "use_none_as_empty", "RAISE", "hook", "debugging"],
)
def test_other_pydicom_settings_read_the_dataset_with_pydicom(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    if setting == "datetime_conversion":
        monkeypatch.setattr(config, "datetime_conversion", True)
    elif setting == "DS_decimal":
        monkeypatch.setattr(config, "use_DS_decimal", True)
    elif setting == "use_none_as_empty":
        monkeypatch.setattr(config, "use_none_as_empty_text_VR_value", True)
    elif setting == "RAISE":
        monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    elif setting == "hook":
        monkeypatch.setattr(pydicom_hooks.hooks, "raw_element_kwargs", {"unused": True})
    else:
        monkeypatch.setattr(config, "debugging", True)
    for implicit in (True, False):
        for data in [encode(study(), implicit), nested_sequences(implicit, charset=None)]:
            check(data, implicit)
            assert uses_read_dataset(data, implicit)


@pytest.mark.parametrize("setting", ["IGNORE", "future", "replace_un", "wrong_length"])
def test_settings_read_at_conversion_keep_the_walk(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """Settings pydicom reads only when converting the elements (the same code for both)."""
    if setting == "IGNORE":
        monkeypatch.setattr(config.settings, "reading_validation_mode", config.IGNORE)
    elif setting == "future":
        monkeypatch.setattr(config, "_use_future", True)
    elif setting == "replace_un":
        monkeypatch.setattr(config, "replace_un_with_known_vr", False)
    else:
        monkeypatch.setattr(config, "convert_wrong_length_to_UN", True)
    for implicit in (True, False):
        for data in [
            encode(study(), implicit),
            nested_sequences(implicit, charset=None),
            pack([(0x00080020, "UN", b"20200101"), (0x00280010, "US", b"\x01")], implicit),
        ]:
            check(data, implicit)
            assert not uses_read_dataset(data, implicit)


@BOTH
def test_the_dataset_is_made_once_and_shares_nothing(implicit: bool) -> None:
    data = encode(study(), implicit)
    raw = RawIdentifier(data, implicit_vr=implicit)
    assert raw.dataset() is raw.dataset()
    assert raw.json_dict() == raw.dataset().to_json_dict()
    first, second = raw.dataset(), RawIdentifier(data, implicit_vr=implicit).dataset()
    for name, value in vars(first).items():
        if isinstance(value, dict | list):
            assert value is not vars(second)[name], name
    first.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", "x")
    first.PatientName = "Changed"
    assert vars(second)["_private_blocks"] == {}
    assert 0x00090010 not in second
    assert second.PatientName == "Müller^Jürgen^^Dr.^"
    assert stored(RawIdentifier(data, implicit_vr=implicit).dataset()) == stored(
        reference(data, implicit)
    )
