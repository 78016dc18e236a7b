"""``workstation serve`` on a large store: STUDY-level C-FINDs answered from the SQLite index.

    python -m tests.benchmarks.bench_serve [--instances 100000] [--repeat 5]

The store's index is filled with ``--instances`` rows inserted directly (no files: a C-FIND
reads only the index): patients of 2.5 studies, studies of 4 series, series of 5 instances,
study dates spread over 25 years. Two Study Root STUDY-level queries, with the workstation's
default study return keys, are timed ``--repeat`` times each:

- ``name``: PatientName wildcard (``SMITH*``, about 1/16 of the patients);
- ``dates``: StudyDate range of one year (about 1/25 of the studies);

each both in-process (``IndexCatalogue.find``, every response built as a Dataset) and as DCMTK
``findscu`` against a running :class:`~workstation.serve.QRServer` (the whole process). Each
result is checked against the count the generator knows.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pydicom.dataset import Dataset

from tests.servers import dcmtk, free_port
from workstation.serve import QRServer
from workstation.store import LocalStore
from workstation.store.records import InstanceRecord

SURNAMES = [
    "SMITH",
    "JONES",
    "TAYLOR",
    "BROWN",
    "WILLIAMS",
    "WILSON",
    "JOHNSON",
    "DAVIES",
    "ROBINSON",
    "WRIGHT",
    "THOMPSON",
    "EVANS",
    "WALKER",
    "WHITE",
    "ROBERTS",
    "GREEN",
]
CT = "1.2.840.10008.5.1.4.1.1.2"
RETURN_KEYS = [
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
]


def fill(store: LocalStore, instances: int) -> tuple[int, int]:
    """Index ``instances`` rows; return (SMITH studies, studies of 2010)."""
    smith = year_2010 = 0
    now = datetime.now(UTC)
    study = 0
    made = 0
    while made < instances:
        patient = study * 2 // 5
        surname = SURNAMES[patient % len(SURNAMES)]
        year = 2000 + study % 25
        date = f"{year}{study % 12 + 1:02d}{study % 28 + 1:02d}"
        smith += surname == "SMITH"
        year_2010 += year == 2010
        study_uid = f"1.2.826.0.1.3680043.10.9.{study}"
        for series in range(4):
            series_uid = f"{study_uid}.{series}"
            for number in range(5):
                sop = f"{series_uid}.{number}"
                store.index.submit(
                    InstanceRecord(
                        sop_instance_uid=sop,
                        sop_class_uid=CT,
                        study_uid=study_uid,
                        series_uid=series_uid,
                        transfer_syntax_uid="1.2.840.10008.1.2.1",
                        patient_id=f"P{patient:06d}",
                        patient_name=f"{surname}^PATIENT{patient}",
                        patient_birth_date="19600101",
                        patient_sex="MF"[patient % 2],
                        study_date=date,
                        study_time="101500",
                        accession_number=f"A{study}",
                        study_description="CT CHEST",
                        modality="CT",
                        series_number=series + 1,
                        instance_number=number + 1,
                        path=f"{study_uid}/{series_uid}/{sop}.dcm",
                        size=1000,
                        received_at=now,
                    )
                )
                made += 1
        study += 1
    store.index.flush()
    return smith, year_2010


def identifier(**keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in RETURN_KEYS:
        setattr(ds, keyword, "")
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        store = LocalStore(Path(folder) / "store", fsync=False)
        started = time.perf_counter()
        smith, year_2010 = fill(store, args.instances)
        print(f"indexed {args.instances} instances in {time.perf_counter() - started:.1f} s")
        queries = {
            "name": ({"PatientName": "SMITH*"}, smith),
            "dates": ({"StudyDate": "20100101-20101231"}, year_2010),
        }
        port = free_port()
        with QRServer(store, ae_title="WS", port=port, bind="127.0.0.1") as server:
            for label, (keys, expected) in queries.items():
                api: list[float] = []
                process: list[float] = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    found = sum(1 for _ in server.catalogue.find(identifier(**keys), False))
                    api.append(time.perf_counter() - started)
                    if found != expected:
                        sys.exit(f"{label}: {found} matches, expected {expected}")
                    argv = [dcmtk("findscu"), "-v", "-S", "-aec", "WS"]
                    for keyword in RETURN_KEYS:
                        value = keys.get(keyword, "")
                        argv += ["-k", f"{keyword}={value}" if value else keyword]
                    argv += ["-k", "QueryRetrieveLevel=STUDY", "127.0.0.1", str(port)]
                    started = time.perf_counter()
                    result = subprocess.run(argv, capture_output=True, text=True, check=False)
                    process.append(time.perf_counter() - started)
                    answered = (result.stdout + result.stderr).count("(Pending)")
                    if result.returncode != 0 or answered != expected:
                        sys.exit(f"findscu: {answered} matches: {result.stderr[-500:]}")
                print(
                    f"{label:6} {expected:6} studies: in-process median "
                    f"{statistics.median(api) * 1000:7.1f} ms (min {min(api) * 1000:.1f}), "
                    f"findscu median {statistics.median(process) * 1000:7.1f} ms "
                    f"(min {min(process) * 1000:.1f})"
                )
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
