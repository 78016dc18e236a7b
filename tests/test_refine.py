"""The refine of C-FIND matches (workstation.refine): one policy for the API, the CLI and the
window, against a PACS that ignores keys (DCMTK dcmqrscp) and one that repeats its matches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import evt
from test_cli import run

import workstation as ws
from tests.quirky import QuirkySCP, repeated_find
from workstation.demo import Archive
from workstation.query import matches_value
from workstation.refine import Refiner, Verdict

# -- the rules, without a PACS ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vr", "pattern", "value", "expected"),
    [
        ("PN", "muller*", "Müller^Jürgen", True),  # the refine folds case and accents
        ("PN", "M*LL*", "Miller^Anna", True),
        ("PN", "muller*", "Miller^Anna", False),
        ("PN", "山田*", "Yamada^Tarou=山田^太郎", True),  # any component group
        ("PN", "Παπα*", "Smith^John", False),
        ("CS", "CT", "CT\\PT", True),  # ModalitiesInStudy: any of the returned values
        ("CS", "CT\\MR", "US", False),
        ("CS", "CT\\MR", "MR", True),
        ("UI", "1.2.3\\1.2.4", "1.2.4", True),  # UID list matching: exact
        ("UI", "1.2.3", "1.2.34", False),
        ("DA", "20240101-20241231", "20240615", True),
        ("DA", "20240101-", "20231231", False),
        ("DA", "-20240101", "20240101", True),
        ("TM", "0800-1200", "115959.123", True),
        ("LO", "", "anything", True),  # universal
        ("LO", "*", "", True),
        ("IS", "3", "03", True),
    ],
)
def test_matches_value(vr: str, pattern: str, value: str, expected: bool) -> None:
    assert matches_value(vr, pattern, value) is expected


def test_demo_matching_does_not_fold_accents() -> None:
    assert not matches_value("PN", "muller*", "Müller^Jürgen", accents=False)
    assert matches_value("PN", "MÜLLER*", "Müller^Jürgen", accents=False)
    assert matches_value("PN", "M*LL*", "Müller^Jürgen", accents=False)


def _reader(**values: str):  # type: ignore[no-untyped-def]
    return lambda keyword: values.get(keyword, "")


def test_refiner_verdicts() -> None:
    query = ws.Query.study(PatientName="Müller*", StudyDate="20200101-", ModalitiesInStudy="CT")
    refiner = Refiner(query)
    keep = _reader(StudyInstanceUID="1", PatientName="MULLER^A", StudyDate="20210101")
    assert refiner.verdict(keep) is Verdict.ASK_SERIES  # no ModalitiesInStudy returned
    assert refiner.verdict(keep) is Verdict.DUPLICATE
    both = _reader(StudyInstanceUID="2", PatientName="Müller", ModalitiesInStudy="MR\\CT")
    assert refiner.verdict(both) is Verdict.KEEP  # StudyDate not returned: not held against
    early = _reader(StudyInstanceUID="3", PatientName="Müller", StudyDate="20191231")
    assert refiner.verdict(early) is Verdict.CONTRADICTS
    other = _reader(StudyInstanceUID="4", PatientName="Meier", ModalitiesInStudy="CT")
    assert refiner.verdict(other) is Verdict.CONTRADICTS
    us = _reader(StudyInstanceUID="5", PatientName="Müller", ModalitiesInStudy="US")
    assert refiner.verdict(us) is Verdict.CONTRADICTS
    assert refiner.modalities_match(["US", "CT"]) and not refiner.modalities_match(["US"])
    assert refiner.modalities_match([""])  # the series say nothing: kept


def test_refiner_of_a_query_without_matching_keys_keeps_all_but_repeats() -> None:
    refiner = Refiner(ws.Query.series(StudyInstanceUID="1.2"))
    first = _reader(StudyInstanceUID="1.2", SeriesInstanceUID="1.2.1")
    assert refiner.verdict(first) is Verdict.KEEP
    assert refiner.verdict(first) is Verdict.DUPLICATE
    assert refiner.verdict(_reader(StudyInstanceUID="1.3", SeriesInstanceUID="1.3.1")) is (
        Verdict.CONTRADICTS
    )
    assert refiner.verdict(_reader(SeriesInstanceUID="")) is Verdict.KEEP  # no key, no repeat
    assert Refiner(ws.Query.worklist()).verdict(_reader(PatientID="x")) is Verdict.KEEP


# -- repeated matches: a SCP answering once per instance at every level -----------------------

STUDIES = 40
COPIES = 6


@pytest.fixture
def repeating_scp() -> Iterator[QuirkySCP]:
    matches = []
    for index in range(STUDIES):
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientName = f"PATIENT^{index:02d}"
        ds.PatientID = f"P{index:02d}"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.9.7.{index + 1}"
        matches.append(ds)
    with QuirkySCP([(evt.EVT_C_FIND, repeated_find(matches, COPIES))]) as scp:
        yield scp


def test_find_keeps_one_match_per_study(repeating_scp: QuirkySCP) -> None:
    results = ws.find(repeating_scp.node, ws.Query.study())
    uids = [str(ds.StudyInstanceUID) for ds in results]
    assert len(uids) == len(set(uids)) == STUDIES
    assert results.count == STUDIES and results.duplicates == STUDIES * (COPIES - 1)
    raw = ws.find(repeating_scp.node, ws.Query.study(), refine=False)
    assert len(list(raw)) == STUDIES * COPIES and raw.duplicates == 0


def test_find_limit_counts_distinct_matches(repeating_scp: QuirkySCP) -> None:
    results = ws.find(repeating_scp.node, ws.Query.study(), limit=5)
    assert len({str(ds.StudyInstanceUID) for ds in results}) == results.count == 5


def test_cli_find_prints_each_study_once(repeating_scp: QuirkySCP, tmp_path: Path) -> None:
    config = tmp_path / "config"
    result = run("find", str(repeating_scp.node), "-S", config=config)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 + STUDIES  # header + one row per study
    assert f"{STUDIES} matches" in result.stderr
    assert f"{STUDIES * (COPIES - 1)} repeated matches left out" in result.stderr
    raw = run("find", str(repeating_scp.node), "-S", "--no-refine", "--csv", config=config)
    assert len(raw.stdout.splitlines()) == 1 + STUDIES * COPIES


# -- keys a real PACS ignores: DCMTK dcmqrscp ----------------------------------------------


def test_modalities_in_study_on_dcmqrscp(dcmqrscp, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    """dcmqrscp neither matches nor returns ModalitiesInStudy: the series are asked."""
    want = {s.StudyInstanceUID for s in archive.studies if "CT" in s.modalities}
    assert 0 < len(want) < len(archive.studies)
    results = ws.find(dcmqrscp.node, ws.Query.study(ModalitiesInStudy="CT"))
    assert {str(ds.StudyInstanceUID) for ds in results} == want
    assert results.dropped == len(archive.studies) - len(want)
    everything = ws.find(dcmqrscp.node, ws.Query.study(ModalitiesInStudy="CT"), refine=False)
    assert len(list(everything)) == len(archive.studies)
    several = ws.find(dcmqrscp.node, ws.Query.study(ModalitiesInStudy="CT\\MR"))
    assert {str(ds.StudyInstanceUID) for ds in several} == {
        s.StudyInstanceUID for s in archive.studies if {"CT", "MR"} & set(s.modalities)
    }


def test_cli_modalities_in_study_on_dcmqrscp(dcmqrscp, archive: Archive, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    want = [s for s in archive.studies if "MR" in s.modalities]
    args = ("find", str(dcmqrscp.node), "-S", "-q", "ModalitiesInStudy=MR", "--csv")
    result = run(*args, config=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[1:]
    assert len(rows) == len(want)
    assert all(any(s.StudyInstanceUID in row for row in rows) for s in want)
    table = run(*args[:-1], config=tmp_path)
    dropped = len(archive.studies) - len(want)
    assert f"{dropped} matches that contradict the query left out" in table.stderr
    raw = run(*args, "--no-refine", config=tmp_path)
    assert len(raw.stdout.splitlines()) == 1 + len(archive.studies)


def test_patient_id_at_image_level_on_dcmqrscp(dcmqrscp, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    """Study Root IMAGE level: dcmqrscp answers every instance whatever the PatientID."""
    patient = archive.studies[0].PatientID
    want = {
        i.SOPInstanceUID
        for s in archive.studies
        if s.PatientID == patient
        for series in s.series
        for i in series.instances
    }
    query = ws.Query.image(PatientID=patient)
    assert {str(ds.SOPInstanceUID) for ds in ws.find(dcmqrscp.node, query)} == want
    assert len(list(ws.find(dcmqrscp.node, query, refine=False))) > len(want)


def test_a_name_pattern_the_pacs_does_not_filter(dcmqrscp, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    """Whatever the PACS makes of a pattern, what contradicts it is not yielded."""
    for pattern in ("Παπα*", "*"):
        found = {
            str(ds.PatientName)
            for ds in ws.find(dcmqrscp.node, ws.Query.study(PatientName=pattern))
        }
        assert all(matches_value("PN", pattern, name) for name in found)
        assert found
