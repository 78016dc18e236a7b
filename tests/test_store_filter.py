"""The store browser's one filter, in SQL: folding, paging, change log, counts, migration, pruning.

Every test runs a real :class:`StoreIndex` (SQLite on disk, its writer thread) fed with
:class:`InstanceRecord` values as the store's writer would; the reference for the filter is the
rule the window's Python filter applied before it moved into SQL,
:class:`tests.support.StoreFilter` (fold with :func:`workstation.text.fold`, every word a
substring of the patient's or the study's text).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage

from tests.support import StoreFilter
from workstation.store import batch
from workstation.store.index import StoreIndex
from workstation.store.records import InstanceRecord, PatientEntry
from workstation.store.schema import SCHEMA_V1, SCHEMA_VERSION, patient_search, study_search
from workstation.text import fold, format_date

ROOT = "1.2.826.0.1.3680043.10.99.7"

#: (patient name, patient ID, birth date, study description, accession, modality)
PEOPLE = [
    ("Müller^Jürgen", "PID-1", "19650412", "IRM cérébrale", "ACC1", "MR"),
    ("MULLER^Hans", "PID-2", "19700101", "CT Thorax", "ACC2", "CT"),
    ("Ζωή^Παπαδοπούλου", "GR-1", "19801231", "Αξονική θώρακος", "ΑΡ9", "CT"),
    ("Иванов^Пётр", "RU-1", "19591105", "МРТ головы", "АКК-7", "MR"),
    ("山田^太郎=ヤマダ^タロウ", "JP-1", "19900202", "頭部 CT", "JP100", "CT"),
    ("Lefèvre^Zoë", "FR-1", "19451111", "Genou 100% gauche", "A_B", "US"),
    ("O'Brien^Seán", "IE-1", "", r"Back\slash study", "X\\1", "DX"),
    ("Åström^Björn", "SE-1", "19770707", "Knee_left", "ACC%5", "CR"),
    ("Doe^John", "PID-3", "19650412", "Abdomen", "ACC3", "CT"),
]


def record(
    i: int,
    person: tuple[str, str, str, str, str, str],
    *,
    study: int | None = None,
    series: int = 1,
    study_date: str = "20240315",
) -> InstanceRecord:
    name, pid, birth, description, accession, modality = person
    study_uid = f"{ROOT}.{i if study is None else study}"
    series_uid = f"{study_uid}.{series}"
    sop = f"{series_uid}.{i}"
    return InstanceRecord(
        sop,
        CTImageStorage,
        study_uid,
        series_uid,
        patient_id=pid,
        patient_name=name,
        patient_birth_date=birth,
        patient_sex="O",
        study_date=study_date,
        study_time="101500",
        accession_number=accession,
        study_description=description,
        referring_physician_name="Who^Doctor",
        modality=modality,
        series_number=series,
        path=f"{study_uid}/{series_uid}/{sop}.dcm",
        size=1,
    )


@pytest.fixture
def index(tmp_path: Path) -> Iterator[StoreIndex]:
    with StoreIndex(tmp_path / "index.sqlite", linger=0) as opened:
        yield opened


@pytest.fixture
def people(index: StoreIndex) -> StoreIndex:
    """One study per person, two series of two instances each."""
    n = 0
    for number, person in enumerate(PEOPLE):
        for series in (1, 2):
            for _ in range(2):
                n += 1
                index.submit(record(n, person, study=number, series=series))
    assert index.flush(10)
    return index


# -- the reference: the window's filter before it moved into SQL ----------------------------


def old_python_filter(
    index: StoreIndex, text: str
) -> tuple[list[int], dict[int, list[str]], dict[int, int]]:
    """Patients, their studies and study counts as :class:`StoreFilter` chooses them."""
    store_filter = StoreFilter(text)
    patients, studies, counts = [], {}, {}
    for patient in index.patients():
        own = store_filter.matches_patient(patient)
        theirs = [s for s in index.studies(patient.key) if own or store_filter.matches_study(s)]
        if theirs:
            patients.append(patient.key)
            studies[patient.key] = sorted(s.study_uid for s in theirs)
            counts[patient.key] = len(theirs)
    return sorted(patients), studies, counts


FILTERS = [
    "",
    "muller",
    "MÜLLER",
    "müller jürgen",
    "jurgen",
    "ζωη",
    "ΖΩΉ",
    "παπαδοπουλου",
    "θωρακος",
    "иванов",
    "ПЁТР",
    "петр",
    "мрт",
    "山田",
    "ヤマダ",
    "タロウ 頭部",
    "頭部 ct",
    "zoe",
    "lefevre genou",
    "100%",
    "%",
    "_",
    "a_b",
    "acc%5",
    "\\",
    "back\\slash",
    "x\\1",
    "knee_left",
    "kneeXleft",
    "o'brien",
    "sean",
    "astrom",
    "björn",
    "ct 2024",
    "2024-03-15",
    "2024-03",
    "who doctor",
    "mr",
    "pid",
    "zzzz",
    "  muller   hans  ",
]


@pytest.mark.parametrize("text", FILTERS)
def test_the_sql_filter_gives_what_the_python_filter_gave(people: StoreIndex, text: str) -> None:
    patients, studies, counts = old_python_filter(people, text)
    shown = people.patients(text)
    assert sorted(p.key for p in shown) == patients
    assert {p.key: p.study_count for p in shown} == counts
    for key in patients:
        assert sorted(s.study_uid for s in people.studies(key, text)) == studies[key]
    assert people.count(text).patients == len(patients)
    assert people.count(text).studies == sum(counts.values())


def test_what_a_user_types_finds_whom_they_expect(people: StoreIndex) -> None:
    def names(text: str) -> set[str]:
        return {p.patient_name for p in people.patients(text)}

    assert names("muller") == {"Müller^Jürgen", "MULLER^Hans"}
    assert names("ζωή") == names("ΖΩΗ") == {"Ζωή^Παπαδοπούλου"}
    assert names("иванов пётр") == {"Иванов^Пётр"}
    assert names("山田") == names("ﾀﾛｳ") == {"山田^太郎=ヤマダ^タロウ"}  # half-width kana fold too
    assert names("100%") == {"Lefèvre^Zoë"}  # % typed literally, not "anything"
    assert names("acc%5") == {"Åström^Björn"}
    assert names("a_b") == {"Lefèvre^Zoë"}  # _ typed literally, not "any one character"
    assert names("axb") == set()
    assert names("back\\slash") == {"O'Brien^Seán"}
    assert names("1965-04-12") == {"Müller^Jürgen", "Doe^John"}  # the birth date as shown


def test_a_word_may_be_in_the_patient_or_in_the_study(people: StoreIndex) -> None:
    """The one difference from the old filter: the birth date counts with the study's words."""
    (doe,) = people.patients("19650412 abdomen")
    assert doe.patient_name == "Doe^John" and doe.study_count == 1


# -- paging and order ------------------------------------------------------------------------


@pytest.fixture
def crowd(index: StoreIndex) -> StoreIndex:
    """250 patients, names in many scripts and cases; the first 50 have two studies."""
    families = ["Åström", "anderson", "Baker", "Ölund", "Zoë", "ζωή", "Иванов", "山田", "muller"]
    n = 0
    for i in range(250):
        person = (f"{families[i % len(families)]}^P{i:03d}", f"ID{i}", "19700101", "", "", "CT")
        for study in range(2 if i < 50 else 1):
            n += 1
            index.submit(record(n, person, study=i * 10 + study))
    assert index.flush(10)
    return index


def test_the_patient_list_is_ordered_by_folded_name(crowd: StoreIndex) -> None:
    everyone = crowd.patients()
    assert len(everyone) == 250
    shown = [fold(p.patient_name) for p in everyone]
    assert shown == sorted(shown)  # Åström sorts as astrom, before Baker; Ölund as olund
    assert everyone[0].patient_name.startswith("anderson")


@pytest.mark.parametrize("text", ["", "ivanov", "p0", "ζωη p1"])
def test_pages_by_offset_and_by_last_row_add_up_to_the_whole_list(
    crowd: StoreIndex, text: str
) -> None:
    whole = crowd.patients(text)
    by_offset: list[PatientEntry] = []
    while page := crowd.patients(text, limit=30, offset=len(by_offset)):
        by_offset += page
    by_key: list[PatientEntry] = []
    while page := crowd.patients(text, limit=30, after=by_key[-1] if by_key else None):
        by_key += page
    assert by_offset == by_key == whole
    assert crowd.count(text).patients == len(whole)
    for position, patient in enumerate(whole):
        assert crowd.patient_position(patient.key, text) == position


def test_a_patient_the_filter_hides_has_no_position(crowd: StoreIndex) -> None:
    (baker,) = crowd.patients("baker p002")
    assert crowd.patient_position(baker.key, "zoe") is None
    assert crowd.patient_position(10_000) is None


def test_patients_by_key_gives_the_current_rows(crowd: StoreIndex) -> None:
    some = crowd.patients(limit=5)
    found = crowd.patients_by_key([p.key for p in some] + [10_000])
    assert found == {p.key: p for p in some}
    assert crowd.patients_by_key([p.key for p in some], "zzz") == {}


# -- the change log --------------------------------------------------------------------------


def test_changes_since_names_what_commits_touched(people: StoreIndex) -> None:
    token = people.change_token()
    assert people.changes_since(token).patient_keys == frozenset()
    (doe,) = people.patients("doe")
    people.submit(record(1000, PEOPLE[-1], study=500))  # a new study for Doe
    assert people.flush(10)
    changes = people.changes_since(token)
    assert changes.complete and changes.patient_keys == {doe.key}
    assert changes.study_uids == {f"{ROOT}.500"}
    assert people.patients_by_key(changes.patient_keys)[doe.key].study_count == 2
    token = changes.token
    (study,) = [s for s in people.studies(doe.key) if s.study_uid != f"{ROOT}.500"]
    people.delete_study(f"{ROOT}.500")
    people.delete_study(study.study_uid)
    changes = people.changes_since(token)
    assert changes.patient_keys == {doe.key}
    assert changes.study_uids == {f"{ROOT}.500", study.study_uid}
    assert people.patients_by_key(changes.patient_keys) == {}  # Doe is gone
    assert people.changes_since(changes.token).study_uids == frozenset()


def test_a_browser_too_far_behind_is_told_to_reload(
    people: StoreIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "CHANGES_KEPT", 3)
    token = people.change_token()
    for i in range(6):
        people.submit(record(2000 + i, PEOPLE[0], study=600 + i))
        assert people.flush(10)
    assert not people.changes_since(token).complete
    recent = people.change_token() - 2
    assert people.changes_since(recent).complete


# -- counts ----------------------------------------------------------------------------------


def test_instance_counts_of_many_studies_at_once(people: StoreIndex) -> None:
    uids = [s.study_uid for s in people.studies()]
    counts = people.study_instance_counts([*uids, "1.2.3.4"])
    assert counts == {**{uid: people.study_completeness(uid) for uid in uids}, "1.2.3.4": 0}
    assert set(counts.values()) == {4, 0}
    first = uids[0]
    doomed = sorted(people.instance_uids(study_uid=first))[:3]
    people.delete_instances(doomed)
    assert people.study_instance_counts([first]) == {first: 1}
    (study,) = [s for s in people.studies() if s.study_uid == first]
    assert (study.series_count, study.instance_count) == (1, 1)


def test_series_locations_lists_every_series_with_instances(people: StoreIndex) -> None:
    expected = {
        (s.study_uid, se.series_uid) for s in people.studies() for se in people.series(s.study_uid)
    }
    assert set(people.series_locations()) == expected and len(expected) == 2 * len(PEOPLE)


# -- deletion and moves leave no orphans ----------------------------------------------------


def assert_consistent(db: Path) -> None:
    """No series without instances, study without series, patient without studies; every
    study's stored counts, modalities and search text are what its rows say."""
    with sqlite3.connect(db) as conn:
        orphans = conn.execute(
            "SELECT (SELECT COUNT(*) FROM series se WHERE NOT EXISTS"
            " (SELECT 1 FROM instances i WHERE i.series_uid = se.series_uid)),"
            " (SELECT COUNT(*) FROM studies s WHERE NOT EXISTS"
            " (SELECT 1 FROM series se WHERE se.study_uid = s.study_uid)),"
            " (SELECT COUNT(*) FROM patients p WHERE NOT EXISTS"
            " (SELECT 1 FROM studies s WHERE s.patient_key = p.patient_key)),"
            " (SELECT COUNT(*) FROM instances i WHERE NOT EXISTS"
            " (SELECT 1 FROM studies s WHERE s.study_uid = i.study_uid))"
        ).fetchone()
        assert orphans == (0, 0, 0, 0)
        wrong = conn.execute(
            "SELECT s.study_uid FROM studies s"
            " WHERE s.instance_count <> (SELECT COUNT(*) FROM instances i"
            " WHERE i.study_uid = s.study_uid) OR s.series_count <> (SELECT COUNT(*)"
            " FROM series se WHERE se.study_uid = s.study_uid)"
        ).fetchall()
        assert wrong == []
        for row in conn.execute(
            "SELECT p.patient_name, p.patient_id, p.birth_date, s.accession_number,"
            " s.study_description, s.referring_physician_name, s.study_date, s.modalities,"
            " s.search, s.patient_sort, p.search, (SELECT group_concat(m, '\\') FROM (SELECT"
            " DISTINCT se.modality AS m FROM series se WHERE se.study_uid = s.study_uid"
            " ORDER BY m)) FROM studies s JOIN patients p USING (patient_key)"
        ):
            name, pid, birth, accession, description, referring, date = row[:7]
            modalities, search, sort_name, patient, joined = row[7:]
            assert modalities == (joined or "") and sort_name == fold(name)
            assert patient == patient_search(name, pid, birth)
            assert search == study_search(
                patient, accession, description, referring, date, modalities
            )
            own = (accession, description, referring, date, format_date(date))
            everything = (name, pid, birth, format_date(birth), *own)
            assert search == fold(" ".join([*everything, modalities.replace("\\", " ")]))


def test_deleting_a_study_series_or_instances_leaves_no_orphans(
    people: StoreIndex, tmp_path: Path
) -> None:
    studies = {s.study_uid: s for s in people.studies()}
    first, second, third = sorted(studies)[:3]
    assert people.delete_study(first) == 4
    (series, _) = people.series(second)
    assert people.delete_series(series.series_uid) == 2
    assert people.delete_instances(people.instance_uids(study_uid=third)) == 4
    assert_consistent(tmp_path / "index.sqlite")
    left = {s.study_uid for s in people.studies()}
    assert left == set(studies) - {first, third}
    assert people.count().patients == len(PEOPLE) - 2
    assert people.study_instance_counts([first, second, third]) == {first: 0, second: 2, third: 0}


def test_an_instance_or_study_that_moves_leaves_no_orphans(
    people: StoreIndex, tmp_path: Path
) -> None:
    (doe,) = people.patients("doe")
    (study,) = people.studies(doe.key)
    moved = sorted(people.instance_uids(study_uid=study.study_uid))
    for n, sop in enumerate(moved):  # every instance re-sent under another study and series
        moved_record = record(n, PEOPLE[0], study=700)
        people.submit(
            InstanceRecord(
                sop,
                CTImageStorage,
                moved_record.study_uid,
                moved_record.series_uid,
                patient_id="PID-1",
                patient_name="Müller^Jürgen",
                path=f"m/{sop}",
                size=1,
            )
        )
    assert people.flush(10)
    assert_consistent(tmp_path / "index.sqlite")
    assert people.study(study.study_uid) is None and people.patients("doe") == []
    assert people.study_instance_counts([f"{ROOT}.700"]) == {f"{ROOT}.700": 4}
    # the study moves to another patient (its patient's name corrected and re-sent)
    (muller_study,) = people.studies(filter_text="irm cerebrale")
    for sop in people.instance_uids(study_uid=muller_study.study_uid):
        old = record(0, PEOPLE[0], study=0)
        people.submit(
            InstanceRecord(
                sop,
                CTImageStorage,
                old.study_uid,
                old.series_uid,
                patient_id="PID-1",
                patient_name="Mueller^Juergen",
                path=f"r/{sop}",
                size=1,
                study_description="IRM cérébrale",
            )
        )
    assert people.flush(10)
    assert_consistent(tmp_path / "index.sqlite")
    assert [p.patient_name for p in people.patients("irm cerebrale")] == ["Mueller^Juergen"]


# -- the migration from version 1 ------------------------------------------------------------


def old_fold(text: str) -> str:
    """Version 1's folding: case only, accents kept."""
    return " ".join(text.replace("^", " ").replace("=", " ").casefold().split())


def write_v1(db: Path) -> None:
    """A version-1 index as the first release wrote it, plus a table of another module."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(SCHEMA_V1)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("CREATE TABLE in_flight (path TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO in_flight VALUES ('a/b.dcm')")
    for key, (name, pid, birth, description, accession, modality) in enumerate(PEOPLE, 1):
        study = f"{ROOT}.{key}"
        conn.execute(
            "INSERT INTO patients VALUES (?, ?, ?, ?, 'O', ?)",
            (key, pid, name, birth, old_fold(f"{name} {pid} {birth}")),
        )
        conn.execute(
            "INSERT INTO studies VALUES (?, ?, '20240315', '', ?, ?, '', ?, ?)",
            (
                study,
                key,
                accession,
                description,
                modality,
                old_fold(f"{name} {pid} {accession} {description} 20240315 {modality}"),
            ),
        )
        conn.execute(
            "INSERT INTO series VALUES (?, ?, ?, 1, '', '')", (f"{study}.1", study, modality)
        )
        for i in range(3):
            conn.execute(
                "INSERT INTO instances VALUES (?, ?, ?, ?, ?, '', ?, 1, '', NULL)",
                (f"{study}.1.{i}", CTImageStorage, f"{study}.1", study, i, f"{study}/{i}.dcm"),
            )
    conn.close()


def test_a_version_1_index_is_migrated_at_open(tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite"
    write_v1(db)
    with StoreIndex(db) as index:
        assert not index.created
        assert {p.patient_name for p in index.patients("muller")} == {
            "Müller^Jürgen",
            "MULLER^Hans",
        }
        assert [p.patient_name for p in index.patients("zoe")] == ["Lefèvre^Zoë"]
        assert [p.patient_name for p in index.patients("ζωη")] == ["Ζωή^Παπαδοπούλου"]
        assert index.count() == index.count("") and index.count().studies == len(PEOPLE)
        assert set(index.study_instance_counts(s.study_uid for s in index.studies()).values()) == {
            3
        }
        assert {s.series_count for s in index.studies()} == {1}
        assert index.change_token() == 0
        for text in FILTERS:
            assert sorted(p.key for p in index.patients(text)) == old_python_filter(index, text)[0]
        index.submit(record(99, PEOPLE[0], study=1))  # the writer goes on from there
        assert index.flush(10)
        assert index.changes_since(0).patient_keys == {1}
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT path FROM in_flight").fetchall() == [("a/b.dcm",)]
    assert_consistent(db)
