"""WADO-RS against C-GET: the same study from the same Orthanc, in one run.

    python -m tests.benchmarks.bench_dicomweb [--instances 500] [--rows 256] [--repeat 3]

One Orthanc with its DICOMweb plugin (Debian ``orthanc-dicomweb``) holds one study of
``--instances`` CT-like instances of ``--rows``×``--rows`` 16-bit pixels. Each round retrieves
the study into a fresh local store by C-GET (``ws.get`` on the DIMSE node) and by WADO-RS
(``ws.get`` on the DICOMweb node: QIDO-RS listing, then a streamed multipart/related response
parsed by :mod:`workstation.dicomweb.multipart`), in alternating order. Both must bring every
instance. It also times the multipart parser alone on the response held in memory, to show
what the HTTP stack costs apart from the network and the store. The table gives medians and
min-max, and the WADO-RS/C-GET time ratio (median of the per-round ratios).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

import workstation as ws
from tests.servers import OrthancServer
from workstation.dicomweb.multipart import MultipartReader, content_type_params


def make_study(folder: Path, count: int, rows: int) -> str:
    study, series = generate_uid(), generate_uid()
    pixels = (np.arange(rows * rows, dtype=np.uint16) % 4096).reshape(rows, rows).tobytes()
    for number in range(1, count + 1):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop = generate_uid()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.PatientName, ds.PatientID, ds.Modality = "Bench^Web", "BENCH-WEB", "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyDate, ds.InstanceNumber = "20240101", number
        ds.Rows = ds.Columns = rows
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels
        ds.save_as(folder / f"{number:05d}.dcm", enforce_file_format=True)
    return study


def parse_only(node: ws.RemoteNode, study: str) -> tuple[float, float, int]:
    """Seconds to receive the whole WADO-RS response (read to its end, nothing else done),
    seconds to parse it from memory, and its size."""
    from io import BytesIO

    from workstation.dicomweb.client import DicomWebClient
    from workstation.dicomweb.wado import ACCEPT

    fetch = time.perf_counter()
    with DicomWebClient(node) as client:
        response = client.request("GET", f"studies/{study}", headers={"Accept": ACCEPT})
        _, params = content_type_params(response.getheader("Content-Type", ""))
        body = response.read()
    fetch = time.perf_counter() - fetch
    start = time.perf_counter()
    reader = MultipartReader(BytesIO(body).read, params["boundary"])
    for _, chunks in reader.parts():
        for _ in chunks:
            pass
    return fetch, time.perf_counter() - start, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ws-bench-web-") as tmp:
        root = Path(tmp)
        (root / "files").mkdir()
        study = make_study(root / "files", args.instances, args.rows)
        orthanc = OrthancServer(root / "orthanc", dicomweb=True, tcp_nodelay=True).start()
        try:
            orthanc.upload(sorted((root / "files").glob("*.dcm")))
            dimse = orthanc.node.with_options(retrieve_method="get")
            web = ws.RemoteNode(url=orthanc.dicomweb_url, name="web")
            query = ws.Query.study(StudyInstanceUID=study)
            times: dict[str, list[float]] = {"C-GET": [], "WADO-RS": []}
            size = 0
            for round_ in range(args.repeat):
                order = [("C-GET", dimse), ("WADO-RS", web)]
                for name, node in order if round_ % 2 == 0 else order[::-1]:
                    with ws.LocalStore(root / f"store-{name}-{round_}", fsync=False) as store:
                        start = time.perf_counter()
                        outcome = ws.get(node, query, store)
                        times[name].append(time.perf_counter() - start)
                        if outcome.received != args.instances:
                            raise SystemExit(f"{name} brought {outcome.received}: {outcome}")
                        size = outcome.bytes
            fetch_seconds, parse_seconds, body = parse_only(web, study)
        finally:
            orthanc.kill()
    print(f"one study, {args.instances} instances, {size / 1e6:.1f} MB, {args.repeat} rounds")
    for name, values in times.items():
        middle = statistics.median(values)
        print(
            f"{name:<8} median {middle:6.2f} s  ({min(values):.2f}-{max(values):.2f})  "
            f"{size / 1e6 / middle:6.1f} MB/s"
        )
    ratios = [w / g for w, g in zip(times["WADO-RS"], times["C-GET"], strict=True)]
    print(f"WADO-RS / C-GET: {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    print(
        f"Orthanc's WADO-RS response alone (http.client, read to its end): {fetch_seconds:.2f} s; "
        f"the multipart parser alone: {body / 1e6 / parse_seconds:.0f} MB/s ({body / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
