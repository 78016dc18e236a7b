"""Unit tests of workstation.query: models, levels, selectors, query files, charset, matching."""

from __future__ import annotations

from datetime import date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import sop_class as _sop_class

from workstation.errors import InvalidInput
from workstation.query import (
    InformationModel,
    Level,
    Query,
    date_range,
    default_keys,
    matches_pattern,
    parse_selector,
)

P, S, W = InformationModel.PATIENT_ROOT, InformationModel.STUDY_ROOT, InformationModel.WORKLIST
SPS = "ScheduledProcedureStepSequence"
sop_class: Any = _sop_class  # its UIDs are created at import time, unseen by mypy


def keywords(ds: Dataset) -> set[str]:
    return {elem.keyword for elem in ds}


# -- models and levels ---------------------------------------------------------------------------


def test_model_values_and_find_uids_match_pynetdicom() -> None:
    assert [m.value for m in InformationModel] == ["P", "S", "W"]
    assert P.find_uid == sop_class.PatientRootQueryRetrieveInformationModelFind
    assert S.find_uid == sop_class.StudyRootQueryRetrieveInformationModelFind
    assert W.find_uid == sop_class.ModalityWorklistInformationFind
    assert P.find_uid == "1.2.840.10008.5.1.4.1.2.1.1"
    assert S.find_uid == "1.2.840.10008.5.1.4.1.2.2.1"
    assert W.find_uid == "1.2.840.10008.5.1.4.31"


def test_move_and_get_uids_match_pynetdicom() -> None:
    assert P.move_uid == sop_class.PatientRootQueryRetrieveInformationModelMove
    assert P.get_uid == sop_class.PatientRootQueryRetrieveInformationModelGet
    assert S.move_uid == sop_class.StudyRootQueryRetrieveInformationModelMove
    assert S.get_uid == sop_class.StudyRootQueryRetrieveInformationModelGet


@pytest.mark.parametrize("attribute", ["move_uid", "get_uid"])
def test_worklist_has_no_retrieve_uid(attribute: str) -> None:
    with pytest.raises(InvalidInput, match="worklist"):
        getattr(W, attribute)


def test_levels_and_unique_keys() -> None:
    assert [lv.value for lv in Level] == ["PATIENT", "STUDY", "SERIES", "IMAGE"]
    assert Level.PATIENT.unique_key == "PatientID"
    assert Level.STUDY.unique_key == "StudyInstanceUID"
    assert Level.SERIES.unique_key == "SeriesInstanceUID"
    assert Level.IMAGE.unique_key == "SOPInstanceUID"


@pytest.mark.parametrize(
    ("model", "expected"),
    [("P", P), ("s", S), ("worklist", W), ("PATIENT_ROOT", P), ("study", S), (S, S)],
)
def test_build_accepts_model_spellings(model: str, expected: InformationModel) -> None:
    level = None if expected is W else "series"
    query = Query.build(model, level, defaults=False)
    assert query.model is expected
    assert query.level is (None if expected is W else Level.SERIES)


@pytest.mark.parametrize(
    ("model", "level", "fragment"),
    [
        ("X", "STUDY", "'X'"),
        ("S", "INSTANCE", "'INSTANCE'"),
        ("S", "PATIENT", "PATIENT"),
        ("W", "STUDY", "worklist"),
        ("S", None, "needs a level"),
    ],
)
def test_bad_model_or_level(model: str, level: str | None, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        Query.build(model, level)


# -- default keys ------------------------------------------------------------------------------

STUDY_KEYS = {
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ModalitiesInStudy",
    "StudyDescription",
    "ReferringPhysicianName",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "StudyInstanceUID",
    "StudyID",
}
SERIES_KEYS = {
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "NumberOfSeriesRelatedInstances",
    "SeriesDate",
    "SeriesTime",
}
IMAGE_KEYS = {
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "InstanceNumber",
}
PATIENT_KEYS = {
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "NumberOfPatientRelatedStudies",
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (Query.study(), STUDY_KEYS),
        (Query.series(), SERIES_KEYS),
        (Query.image(), IMAGE_KEYS),
        (Query.patient(), PATIENT_KEYS),
        (Query.study(model="P"), STUDY_KEYS),
        (Query.series(model=P), SERIES_KEYS | {"PatientID"}),
        (Query.image(model=P), IMAGE_KEYS | {"PatientID"}),
    ],
)
def test_default_keys_per_level_and_model(query: Query, expected: set[str]) -> None:
    ds = query.identifier()
    assert keywords(ds) == expected | {"QueryRetrieveLevel"}
    assert ds.QueryRetrieveLevel == query.level
    assert query.matching_keys() == {}
    assert all(ds[k].value in ("", None) for k in expected)


def test_default_keys_for_study_root_series_has_no_patient_id() -> None:
    assert "PatientID" not in keywords(default_keys(S, Level.SERIES))
    assert "PatientID" in keywords(default_keys(P, Level.SERIES))


def test_worklist_default_keys() -> None:
    ds = Query.worklist().identifier()
    assert keywords(ds) == {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
        "StudyInstanceUID",
        "ReferringPhysicianName",
        SPS,
    }
    assert len(ds[SPS].value) == 1
    assert keywords(ds[SPS].value[0]) == {
        "Modality",
        "ScheduledStationAETitle",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "ScheduledPerformingPhysicianName",
        "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepID",
    }
    assert "QueryRetrieveLevel" not in ds
    assert Query.worklist().level is None


def test_patient_level_defaults_to_patient_root_and_refuses_study_root() -> None:
    assert Query.patient().model is P
    with pytest.raises(InvalidInput, match="PATIENT level"):
        Query.patient(model="S")


def test_build_without_defaults_has_only_the_level_and_selectors() -> None:
    query = Query.build("S", "STUDY", ["PatientID=123"], defaults=False)
    assert keywords(query.identifier()) == {"QueryRetrieveLevel", "PatientID"}
    assert keywords(Query.build("W", None, defaults=False).identifier()) == set()


# -- constructors and keys --------------------------------------------------------------------


def test_constructor_keys_set_values_and_return_keys() -> None:
    query = Query.study(PatientName="SMITH*", StudyDate="20240101-", PatientComments=None)
    assert query.get("PatientName") == "SMITH*"
    assert query.get("StudyDate") == "20240101-"
    assert query.get("PatientComments") == ""
    assert query.get("OtherPatientIDs") is None
    assert query.matching_keys() == {"StudyDate": "20240101-", "PatientName": "SMITH*"}
    assert "PatientComments" in query.return_keys()
    assert "PatientName" not in query.return_keys()


def test_series_query_takes_the_upper_unique_key() -> None:
    query = Query.series(StudyInstanceUID="1.2.3", model="P", PatientID="ID7")
    ds = query.identifier()
    assert ds.QueryRetrieveLevel == "SERIES"
    assert ds.StudyInstanceUID == "1.2.3"
    assert ds.PatientID == "ID7"


def test_unknown_constructor_keyword_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"'PatientNme'.*did you mean 'PatientName'"):
        Query.study(PatientNme="x")


def test_constructor_value_must_be_a_string() -> None:
    with pytest.raises(InvalidInput, match="SeriesNumber must be a string"):
        Query.series(SeriesNumber=3)  # type: ignore[arg-type]


def test_with_keys_returns_a_copy() -> None:
    base = Query.study(PatientName="A*")
    more = base.with_keys(PatientName="B*", AccessionNumber="ACC1")
    assert base.get("PatientName") == "A*"
    assert base.get("AccessionNumber") == ""
    assert more.get("PatientName") == "B*"
    assert more.get("AccessionNumber") == "ACC1"
    assert more.model is base.model and more.level is base.level


def test_query_is_immutable_from_outside() -> None:
    query = Query.study(PatientID="1")
    ds = query.identifier()
    ds.PatientID = "2"
    del ds.StudyDate
    assert query.get("PatientID") == "1"
    assert "StudyDate" in query.identifier()
    with pytest.raises(AttributeError):
        query.level = Level.SERIES  # type: ignore[misc]


def test_dataset_given_to_the_constructor_is_copied() -> None:
    ds = Dataset()
    ds.PatientID = "1"
    query = Query(S, Level.STUDY, ds)
    ds.PatientID = "2"
    assert query.get("PatientID") == "1"


def test_equality_and_hash() -> None:
    a = Query.study(PatientID="1")
    assert a == Query.study(PatientID="1")
    assert a != Query.study(PatientID="2")
    assert hash(a) == hash(Query.study(PatientID="1"))


def test_query_retrieve_level_conflict_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="'SERIES' conflicts with level STUDY"):
        Query.build("S", "STUDY", ["QueryRetrieveLevel=SERIES"])
    assert Query.build("S", "STUDY", ["QueryRetrieveLevel=study"]).get("QueryRetrieveLevel") == (
        "STUDY"
    )


def test_str_summarises_model_level_and_matching_keys() -> None:
    text = str(Query.study(PatientName="SMITH*", model="P"))
    assert text == "patient root STUDY query: PatientName=SMITH*"
    assert str(Query.study()) == "study root STUDY query (no matching keys)"
    worklist = Query.worklist().with_selectors(f"{SPS}.Modality=MR")
    assert str(worklist) == f"modality worklist query: {SPS}.Modality=MR"


# -- selectors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["PatientName", "(0010,0010)", "0010,0010", "00100010"])
def test_selector_key_forms(key: str) -> None:
    query = Query.build("S", "STUDY", [f"{key}=DOE^J*"])
    assert query.get("PatientName") == "DOE^J*"


def test_tag_forms_are_case_insensitive_hex() -> None:
    query = Query.build("S", "STUDY", ["(0020,000d)=1.2.3", "0020000E"], defaults=False)
    assert query.get("StudyInstanceUID") == "1.2.3"
    assert query.get("SeriesInstanceUID") == ""


@pytest.mark.parametrize("selector", ["PatientComments", "PatientComments="])
def test_selector_without_value_is_a_return_key(selector: str) -> None:
    query = Query.build("S", "STUDY", [selector], defaults=False)
    assert query.get("PatientComments") == ""
    assert "PatientComments" in query.return_keys()


def test_value_may_contain_equals_and_dots() -> None:
    query = Query.build("S", "STUDY", ["StudyDescription=a=b.c", "StudyInstanceUID=1.2.840.1"])
    assert query.get("StudyDescription") == "a=b.c"
    assert query.get("StudyInstanceUID") == "1.2.840.1"


def test_later_selectors_override_earlier_ones() -> None:
    query = Query.build("S", "STUDY", ["PatientID=1", "PatientID=2", "AccessionNumber=X"])
    assert query.get("PatientID") == "2"
    query = Query.build("S", "STUDY", ["PatientID=1", "PatientID"])
    assert query.get("PatientID") == ""


def test_single_selector_string_is_not_split_into_characters() -> None:
    query = Query.build("S", "STUDY", "PatientID=9")
    assert query.get("PatientID") == "9"
    assert Query.build("S", "STUDY", None) == Query.study()


def test_sequence_path_creates_a_single_item() -> None:
    query = Query.build("W", None, [f"{SPS}.Modality=CT", f"{SPS}.ScheduledStationAETitle=CT1"])
    ds = query.identifier()
    assert len(ds[SPS].value) == 1
    item = ds[SPS].value[0]
    assert item.Modality == "CT"
    assert item.ScheduledStationAETitle == "CT1"
    assert item.ScheduledProcedureStepID == ""  # default keys kept
    assert query.get(f"{SPS}.Modality") == "CT"


def test_sequence_path_without_defaults_creates_the_item() -> None:
    query = Query.build("W", None, [f"{SPS}.Modality=MR"], defaults=False)
    ds = query.identifier()
    assert [keywords(item) for item in ds[SPS].value] == [{"Modality"}]


def test_nested_sequences_and_tags_in_paths() -> None:
    selector = f"{SPS}.(0040,0008).CodeValue=X1"
    query = Query.build("W", None, [selector, "00400100.ScheduledProtocolCodeSequence.CodeMeaning"])
    code = query.identifier()[SPS].value[0].ScheduledProtocolCodeSequence
    assert len(code) == 1
    assert code[0].CodeValue == "X1"
    assert code[0].CodeMeaning == ""
    assert query.get(f"{SPS}.ScheduledProtocolCodeSequence.CodeValue") == "X1"
    assert query.matching_keys() == {f"{SPS}.ScheduledProtocolCodeSequence.CodeValue": "X1"}


def test_bare_sequence_is_an_empty_sequence_return_key() -> None:
    query = Query.build("S", "STUDY", ["ReferencedStudySequence"], defaults=False)
    assert len(query.identifier().ReferencedStudySequence) == 0
    assert "ReferencedStudySequence" in query.return_keys()
    worklist = Query.worklist().with_selectors(SPS)  # keeps the existing item
    assert len(worklist.identifier()[SPS].value) == 1


def test_multi_valued_vr_accepts_backslash_separated_values() -> None:
    query = Query.study(ModalitiesInStudy="CT\\MR", StudyInstanceUID="1.2\\1.3")
    ds = query.identifier()
    assert list(ds.ModalitiesInStudy) == ["CT", "MR"]
    assert list(ds.StudyInstanceUID) == ["1.2", "1.3"]
    assert query.get("ModalitiesInStudy") == "CT\\MR"
    query = Query.build("S", "IMAGE", ["ImageType=ORIGINAL\\PRIMARY"])
    assert list(query.identifier().ImageType) == ["ORIGINAL", "PRIMARY"]


def test_single_valued_text_keeps_backslash() -> None:
    query = Query.build("S", "STUDY", ["PatientComments=a\\b"], defaults=False)
    assert query.identifier().PatientComments == "a\\b"


def test_numeric_binary_vrs_are_converted() -> None:
    query = Query.build("S", "IMAGE", ["Rows=512", "Columns", "(0018,0088)=2.5"])
    ds = query.identifier()
    assert ds.Rows == 512
    assert ds.Columns is None
    assert ds.SpacingBetweenSlices == pytest.approx(2.5)


def test_multi_valued_binary_numbers() -> None:
    query = Query.build("S", "IMAGE", ["AcquisitionMatrix=0\\256\\256\\0"], defaults=False)
    assert list(query.identifier().AcquisitionMatrix) == [0, 256, 256, 0]
    assert query.get("AcquisitionMatrix") == "0\\256\\256\\0"
    assert list(round_trip(query.identifier()).AcquisitionMatrix) == [0, 256, 256, 0]


def round_trip(ds: Dataset) -> Dataset:
    """Encode ``ds`` as a C-FIND identifier would be (implicit VR LE) and read it back."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    return read_dataset(BytesIO(fp.getvalue()), is_implicit_VR=True, is_little_endian=True)


def test_numeric_values_encode() -> None:
    back = round_trip(Query.build("S", "IMAGE", ["Rows=512", "Columns"]).identifier())
    assert back.Rows == 512
    assert back.Columns is None


@pytest.mark.parametrize(
    ("selector", "fragments"),
    [
        ("=x", ["empty key", "'=x'"]),
        ("", ["empty key"]),
        (f"{SPS}..Modality=CT", ["empty key", f"'{SPS}..Modality=CT'"]),
        (
            "PatientNme=x",
            ["unknown DICOM keyword 'PatientNme' in selector 'PatientNme=x'", "'PatientName'"],
        ),
        ("patientid=1", ["unknown DICOM keyword 'patientid'", "did you mean 'PatientID'"]),
        ("Xyzzyplugh=1", ["unknown DICOM keyword 'Xyzzyplugh'"]),
        ("(0010,001G)=x", ["bad tag '(0010,001G)'", "'(0010,001G)=x'"]),
        ("(0010,0010=x", ["bad tag '(0010,0010'"]),
        ("0010,10=x", ["bad tag '0010,10'"]),
        ("001000100=x", ["bad tag '001000100'"]),
        (f"{SPS}.(00080060=CT", ["bad tag '(00080060'"]),
        ("(0009,1001)=x", ["(0009,1001)", "not in the DICOM dictionary"]),
        ("PatientName.Modality=x", ["'PatientName'", "not a sequence"]),
        (f"{SPS}.Modality.CodeValue=x", ["'Modality'", "not a sequence"]),
        (f"{SPS}=CT", [f"'{SPS}'", "is a sequence and takes no value"]),
        (f"{SPS}.ScheduledProtocolCodeSequence=x", ["'ScheduledProtocolCodeSequence'"]),
        ("Rows=abc", ["'abc'", "'Rows'", "not a number"]),
        ("PixelData=1", ["'PixelData'", "cannot match"]),
        ("Modality=ÇT", ["'Modality'", "ASCII"]),
    ],
)
def test_selector_errors_name_the_bad_part(selector: str, fragments: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        Query.build("W", None, [selector])
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_unknown_keyword_without_close_match_has_no_hint() -> None:
    with pytest.raises(InvalidInput) as info:
        Query.build("S", "STUDY", ["Xyzzyplugh=1"])
    assert "did you mean" not in str(info.value)


def test_parse_selector() -> None:
    path, value = parse_selector("ScheduledProcedureStepSequence.(0008,0060)=CT")
    assert [(tag, vr) for tag, vr, _ in path] == [(0x00400100, "SQ"), (0x00080060, "CS")]
    assert value == "CT"
    assert parse_selector("PatientID")[1] is None
    assert parse_selector("PatientID=")[1] == ""


def test_get_rejects_a_sequence_and_non_sequence_paths() -> None:
    query = Query.worklist()
    with pytest.raises(InvalidInput, match="is a sequence"):
        query.get(SPS)
    with pytest.raises(InvalidInput, match="not a sequence"):
        query.get("PatientName.Modality")
    assert Query.study().get("ReferencedStudySequence.ReferencedSOPInstanceUID") is None


# -- query files -------------------------------------------------------------------------------


def write_part10(path: Path, ds: Dataset) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = S.find_uid
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_raw(path: Path, ds: Dataset) -> Path:
    dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    return path


def file_dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName = "FILE^NAME"
    ds.PatientID = "FILEID"
    ds.StudyDescription = "from file"
    ds.PatientComments = ""
    return ds


@pytest.mark.parametrize("writer", [write_part10, write_raw])
def test_query_file_merges_and_selectors_override(tmp_path: Path, writer: object) -> None:
    path = writer(tmp_path / "q.dcm", file_dataset())  # type: ignore[operator]
    query = Query.build("S", "STUDY", ["PatientID=CLI"], query_file=path)
    ds = query.identifier()
    assert ds.PatientName == "FILE^NAME"
    assert ds.PatientID == "CLI"
    assert ds.StudyDescription == "from file"
    assert ds.PatientComments == ""
    assert ds.StudyDate == ""  # defaults kept
    assert ds.QueryRetrieveLevel == "STUDY"
    assert not any(elem.tag.group == 2 for elem in ds)
    assert "TransferSyntaxUID" not in ds


def test_query_file_without_defaults(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "q.dcm", file_dataset())
    query = Query.build("S", "STUDY", query_file=str(path), defaults=False)
    assert keywords(query.identifier()) == {
        "PatientName",
        "PatientID",
        "StudyDescription",
        "PatientComments",
        "QueryRetrieveLevel",
    }


def test_query_file_sequences_and_selectors_inside_them(tmp_path: Path) -> None:
    item = Dataset()
    item.Modality = "MR"
    item.ScheduledStationAETitle = "MR1"
    ds = Dataset()
    ds.ScheduledProcedureStepSequence = [item]
    path = write_raw(tmp_path / "wl.dcm", ds)
    query = Query.build("W", None, [f"{SPS}.Modality=CT"], query_file=path)
    sps = query.identifier()[SPS].value
    assert len(sps) == 1
    assert sps[0].Modality == "CT"
    assert sps[0].ScheduledStationAETitle == "MR1"
    assert "ScheduledProcedureStepID" not in sps[0]  # the file's sequence replaced the default


def test_query_file_group_lengths_and_command_elements_are_dropped(tmp_path: Path) -> None:
    ds = file_dataset()
    ds.add_new(0x00100000, "UL", 40)  # retired group length
    ds.add_new(0x00000900, "US", 0)  # a command element (Status)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)  # dcmwrite refuses command elements
    path = tmp_path / "q.dcm"
    path.write_bytes(fp.getvalue())
    identifier = Query.build("S", "STUDY", query_file=path).identifier()
    assert 0x00100000 not in identifier
    assert 0x00000900 not in identifier
    assert identifier.PatientID == "FILEID"


def test_query_file_level_conflict(tmp_path: Path) -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    path = write_raw(tmp_path / "q.dcm", ds)
    with pytest.raises(InvalidInput, match="'IMAGE' conflicts"):
        Query.build("S", "STUDY", query_file=path)


def test_missing_query_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.dcm"
    with pytest.raises(InvalidInput, match=r"nope\.dcm"):
        Query.build("S", "STUDY", query_file=path)
    with pytest.raises(InvalidInput, match="not a file"):
        Query.build("S", "STUDY", query_file=tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, this is not DICOM at all\n", b"\x08\x00"])
def test_unreadable_query_file_names_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.dcm"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as info:
        Query.build("S", "STUDY", query_file=path)
    assert "junk.dcm" in str(info.value)
    assert "\n" not in str(info.value)


def test_query_file_read_error_is_one_line_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> Dataset:
        raise OSError("disk on fire\nsecond line")

    monkeypatch.setattr("workstation.query.dcmread", broken)
    path = write_raw(tmp_path / "q.dcm", file_dataset())
    with pytest.raises(InvalidInput) as info:
        Query.build("S", "STUDY", query_file=path)
    assert str(info.value) == f"cannot read query file {str(path)!r}: disk on fire"


def test_query_file_charset_is_kept_and_decoded(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    path = write_raw(tmp_path / "latin1.dcm", ds)
    raw = path.read_bytes()
    assert "Müller".encode("latin-1") in raw
    identifier = Query.build("S", "STUDY", query_file=path).identifier()
    assert identifier.SpecificCharacterSet == "ISO_IR 100"
    assert round_trip(identifier).PatientName == "Müller^Jürgen"


def test_query_file_text_in_sequences_is_re_encoded_in_utf8(tmp_path: Path) -> None:
    item = Dataset()
    item.ScheduledPerformingPhysicianName = "Gößmann^Jörg"
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller"
    ds.ScheduledProcedureStepSequence = [item]
    path = write_raw(tmp_path / "wl.dcm", ds)
    query = Query.build("W", None, ["SpecificCharacterSet=ISO_IR 192"], query_file=path)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, query.identifier())
    assert "Gößmann^Jörg".encode() in fp.getvalue()
    assert "Müller".encode() in fp.getvalue()
    assert query.get(f"{SPS}.ScheduledPerformingPhysicianName") == "Gößmann^Jörg"


# -- character set -----------------------------------------------------------------------------


def test_ascii_query_has_no_specific_character_set() -> None:
    assert "SpecificCharacterSet" not in Query.study(PatientName="SMITH*").identifier()


def test_non_ascii_value_sets_utf8_and_round_trips_through_write_dataset() -> None:
    identifier = Query.study(PatientName="Müller*").identifier()
    assert identifier.SpecificCharacterSet == "ISO_IR 192"
    back = round_trip(identifier)
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.PatientName == "Müller*"


def test_non_ascii_round_trips_through_dcmwrite() -> None:
    identifier = Query.study(PatientName="Müller*", StudyDescription="Thorax ü").identifier()
    buffer = BytesIO()
    dcmwrite(buffer, identifier, implicit_vr=True, little_endian=True)
    assert "Müller*".encode() in buffer.getvalue()
    back = dcmread(BytesIO(buffer.getvalue()), force=True)
    assert back.PatientName == "Müller*"
    assert back.StudyDescription == "Thorax ü"


def test_non_ascii_in_a_sequence_item_sets_utf8() -> None:
    query = Query.worklist().with_selectors(f"{SPS}.ScheduledPerformingPhysicianName=Gößmann*")
    identifier = query.identifier()
    assert identifier.SpecificCharacterSet == "ISO_IR 192"
    back = round_trip(identifier)
    assert back[SPS].value[0].ScheduledPerformingPhysicianName == "Gößmann*"


def test_charset_is_not_kept_once_values_are_ascii_again() -> None:
    query = Query.study(PatientName="Müller*").with_keys(PatientName="MULLER*")
    assert "SpecificCharacterSet" not in query.identifier()


def test_explicit_charset_is_kept() -> None:
    query = Query.build("S", "STUDY", ["SpecificCharacterSet=ISO_IR 100", "PatientName=Müller*"])
    identifier = query.identifier()
    assert identifier.SpecificCharacterSet == "ISO_IR 100"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, identifier)
    assert b"M\xfcller*" in fp.getvalue()  # Latin-1, not UTF-8
    assert round_trip(identifier).PatientName == "Müller*"
    assert "SpecificCharacterSet" not in query.matching_keys()


def test_explicit_charset_that_cannot_encode_a_value_is_rejected() -> None:
    with pytest.raises(InvalidInput, match=r"PatientName.*ISO_IR 100.*ISO_IR 192"):
        Query.build("S", "STUDY", ["SpecificCharacterSet=ISO_IR 100", "PatientName=Петров*"])


def test_unknown_charset_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="'ISO_IR 999'"):
        Query.build("S", "STUDY", ["SpecificCharacterSet=ISO_IR 999"])


# -- date ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2024, 1, 1), None, "20240101-"),
        (None, date(2024, 12, 31), "-20241231"),
        (date(2024, 1, 1), date(2024, 12, 31), "20240101-20241231"),
        (date(2024, 3, 5), date(2024, 3, 5), "20240305"),
        (None, None, ""),
        (datetime(2024, 1, 1, 10, 30), date(2024, 1, 2), "20240101-20240102"),
    ],
)
def test_date_range(start: date | None, end: date | None, expected: str) -> None:
    assert date_range(start, end) == expected


def test_date_range_rejects_reversed_bounds() -> None:
    with pytest.raises(InvalidInput, match="2024-12-31 > 2024-01-01"):
        date_range(date(2024, 12, 31), date(2024, 1, 1))


def test_date_range_is_a_valid_study_date_key() -> None:
    query = Query.study(StudyDate=date_range(date(2024, 1, 1), None))
    assert round_trip(query.identifier()).StudyDate == "20240101-"


# -- wildcard matching -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("SMITH^JOHN", "smith*"),
        ("Müller^Jürgen", "muller*"),
        ("MULLER^JURGEN", "Müller*"),
        ("Müller^Jürgen", "müller^jürgen"),
        ("SMITH^JOHN", "smith john"),
        ("SMITH^JOHN^^^", "smith^john"),
        ("SMITH^JOHN", "*JOHN"),
        ("SMITH^JOHN", "SM?TH*"),
        ("Jürgen", "j?rgen"),
        ("SMITH", "*"),
        ("", "*"),
        ("anything", ""),
        ("CT\\MR", "MR"),
        ("CT", "MR\\CT"),
        ("a.b(c)", "A.B(C)"),
        ("x+y", "x+y"),
    ],
)
def test_matches_pattern(value: str, pattern: str) -> None:
    assert matches_pattern(value, pattern)


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("JONES^JOHN", "smith*"),
        ("SMITH^JOHN", "smith"),
        ("SMIT", "smit?"),
        ("SMITHS", "smit?"),
        ("SMITH", "smi?h?"),
        ("", "smith"),
        ("CT\\MR", "US"),
        ("abc", "a.c"),
        ("aXc", "a.c"),
        ("JOHN^SMITH", "smith*"),
    ],
)
def test_does_not_match_pattern(value: str, pattern: str) -> None:
    assert not matches_pattern(value, pattern)
