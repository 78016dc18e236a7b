"""Real DICOM peers for the tests: Orthanc, DCMTK's dcmqrscp and wlmscpfs, on loopback ports.

Plain classes (no pytest): ``start()`` launches the binary with a configuration written into
``workdir`` and returns once the server answers, ``stop()`` ends it (and, for the forking DCMTK
servers, its association children). Every process runs in its own process group under
``setpriv --pdeathsig`` so that even a killed test run leaves nothing behind.

DCMTK's command-line tools are called by absolute path (:func:`dcmtk`): pynetdicom installs
Python look-alikes named ``findscu``, ``storescu``... that come first on ``PATH``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from tests.support import LOOPBACK, free_port, port_open
from workstation.demo import UID_PREFIX, generate_archive
from workstation.nodes import RemoteNode

log = logging.getLogger(__name__)

ORTHANC_BINARY = "/usr/sbin/Orthanc"
#: Debian's orthanc-dicomweb installs the plugin here.
ORTHANC_DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
DCMTK_DIR = Path("/usr/bin")
#: dcmqrscp's compiled-in ceiling for studies per storage area.
MAX_DCMQRSCP_STUDIES = 500
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"


class ServerError(RuntimeError):
    """A test server is missing, did not start, or refused a request."""


def require_binary(path: str | Path, package: str) -> str:
    """``path`` if it is an executable, else a ServerError that says what to install."""
    if not os.access(path, os.X_OK):
        raise ServerError(f"{path} not found: install it with `apt-get install {package}`")
    return str(path)


def require_file(path: str | Path, package: str) -> str:
    """``path`` if it exists, else a ServerError that says what to install."""
    if not Path(path).exists():
        raise ServerError(f"{path} not found: install it with `apt-get install {package}`")
    return str(path)


def dcmtk(tool: str) -> str:
    """Absolute path of a DCMTK tool (``findscu``, ``storescp``...), checked to exist."""
    return require_binary(DCMTK_DIR / tool, "dcmtk")


def dcmtk_env(tcp_nodelay: bool = True) -> dict[str, str]:
    """The environment for a DCMTK-based process, with Nagle's algorithm off or on.

    DCMTK (and Orthanc, built on it) reads ``TCP_NODELAY`` from the environment; Debian's
    build leaves Nagle on by default, which costs ~40 ms per DIMSE exchange on loopback.
    """
    return {**os.environ, "TCP_NODELAY": "1" if tcp_nodelay else "0"}


class ManagedProcess:
    """A server process with its log file in ``workdir``; the base of the servers below.

    ``tcp_nodelay=False`` (the default) keeps the stock behaviour of these servers: Nagle's
    algorithm on, so each C-STORE they send costs ~45 ms, as with a real Orthanc or DCMTK
    PACS. ``True`` makes them about ten times faster for benchmarks of our own code.
    """

    name = "server"

    def __init__(self, workdir: str | Path, *, tcp_nodelay: bool = False) -> None:
        self.tcp_nodelay = tcp_nodelay
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _spawn(self, argv: Sequence[str], cwd: Path | None = None) -> None:
        if self.running:
            raise ServerError(f"{self.name} is already running")
        if shutil.which("setpriv"):  # die with the test run, even on SIGKILL
            argv = ["setpriv", "--pdeathsig", "TERM", "--", *argv]
        log.info("starting %s: %s", self.name, " ".join(argv))
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=cwd or self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dcmtk_env(self.tcp_nodelay),
            )

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                code = self.process.returncode if self.process else None
                raise ServerError(
                    f"{self.name} exited with code {code} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError(
            f"{self.name} did not answer within {timeout:.0f} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` seconds (idempotent)."""
        if self.process is None:
            return
        process, self.process = self.process, None
        self._signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM for %.0f s; killing it", self.name, timeout)
            process.kill()
            process.wait()
        # Forked association handlers (dcmqrscp, wlmscpfs) share the group.
        self._signal_group(process, signal.SIGKILL)

    def kill(self) -> None:
        """Kill abruptly (SIGKILL), as a crashing PACS would go."""
        if self.process is not None:
            self._signal_group(self.process, signal.SIGKILL)
            self.stop()

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    def start(self, timeout: float = 15.0) -> ManagedProcess:
        raise NotImplementedError

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_ORTHANC_SERVICES = ("Echo", "Store", "Find", "FindWorklist", "Get", "Move")
_ORTHANC_SYNTAX_GROUPS = (
    "Deflated", "Jpeg", "Jpeg2000", "JpegLossless", "Jpip", "Mpeg2", "Rle", "Mpeg4", "H265"
)  # fmt: skip


def orthanc_tls_config(
    cert: str, key: str, trusted: str, *, client_certificate_required: bool = True
) -> dict[str, Any]:
    """``extra_config`` for an Orthanc whose DICOM port speaks TLS only (Orthanc 1.9+):
    ``cert``/``key`` it presents (and sends as client when moving to a TLS modality),
    ``trusted`` the PEM file of the CAs it trusts."""
    return {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": cert,
        "DicomTlsPrivateKey": key,
        "DicomTlsTrustedCertificates": trusted,
        "DicomTlsRemoteCertificateRequired": client_certificate_required,
    }


class OrthancServer(ManagedProcess):
    """Orthanc with its own configuration, storage and index in ``workdir``.

    Every DICOM service is allowed for any calling AE; the called AE title is checked. C-MOVE
    destinations must be registered first (:meth:`add_modality`). Answers to C-FIND are in
    UTF-8 (``ISO_IR 192``). Ports are picked at the first start and kept on a restart.
    """

    name = "orthanc"

    def __init__(
        self,
        workdir: str | Path,
        aet: str = "ORTHANC",
        *,
        extra_config: dict[str, Any] | None = None,
        verbose: bool = False,
        tcp_nodelay: bool = False,
        dicomweb: bool = False,
        users: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, tcp_nodelay=tcp_nodelay)
        self.aet = aet
        self.extra_config = dict(extra_config or {})
        #: Load the DICOMweb plugin (root ``/dicom-web/``: :attr:`dicomweb_url`).
        self.dicomweb = dicomweb
        #: HTTP Basic users (name → password); with any, every HTTP request needs one.
        self.users = dict(users or {})
        self.verbose = verbose
        self.dicom_port = 0
        self.http_port = 0
        self._http: http.client.HTTPConnection | None = None
        self._http_lock = threading.Lock()

    @property
    def node(self) -> RemoteNode:
        return RemoteNode(ae_title=self.aet, host=LOOPBACK, port=self.dicom_port, name="Orthanc")

    @property
    def dicomweb_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}/dicom-web"

    def _auth_headers(self) -> dict[str, str]:
        if not self.users:
            return {}
        user, password = next(iter(self.users.items()))
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def config(self) -> dict[str, Any]:
        """The configuration written for the next start (ports included)."""
        config: dict[str, Any] = {
            "Name": f"workstation-tests-{self.aet}",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "WebDavEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DefaultEncoding": "Utf8",
            **{f"DicomAlwaysAllow{service}": True for service in _ORTHANC_SERVICES},
            "DicomModalities": {},
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "UnknownSopClassAccepted": True,
            "AcceptedTransferSyntaxes": ["1.2.840.10008.1.*"],
            **{f"{group}TransferSyntaxAccepted": True for group in _ORTHANC_SYNTAX_GROUPS},
            "SaveJobs": False,
            "SyncStorageArea": False,  # no fsync per file: uploads are several times faster
        }
        if self.dicomweb:
            config["Plugins"] = [require_file(ORTHANC_DICOMWEB_PLUGIN, "orthanc-dicomweb")]
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": False}
        if self.users:
            config["AuthenticationEnabled"] = True
            config["RegisteredUsers"] = dict(self.users)
        config.update(self.extra_config)
        return config

    def start(self, timeout: float = 30.0) -> OrthancServer:
        binary = require_binary(ORTHANC_BINARY, "orthanc")
        if not self.dicom_port:
            self.dicom_port, self.http_port = free_port(), free_port()
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        flags = ["--verbose"] if self.verbose else []
        self._spawn([binary, "--no-jobs", *flags, str(config_path)])
        self._wait_until(lambda: self._system_answers() and port_open(self.dicom_port), timeout)
        log.info("Orthanc %s on DICOM %d, HTTP %d", self.aet, self.dicom_port, self.http_port)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._http_lock:
            if self._http is not None:
                self._http.close()
                self._http = None
        super().stop(timeout)

    def _system_answers(self) -> bool:
        try:
            self.request("GET", "/system")
        except (OSError, ServerError, http.client.HTTPException):
            return False
        return True

    # REST
    def request(self, method: str, path: str, body: bytes | str | dict | list | None = None) -> Any:
        """One REST call; returns the decoded JSON (or raw bytes if the answer is not JSON)."""
        data = json.dumps(body).encode() if isinstance(body, dict | list) else body
        if isinstance(data, str):
            data = data.encode()
        with self._http_lock:
            for attempt in (1, 2):
                if self._http is None:
                    self._http = http.client.HTTPConnection(LOOPBACK, self.http_port, timeout=60)
                try:
                    self._http.request(method, path, body=data, headers=self._auth_headers())
                    response = self._http.getresponse()
                    payload = response.read()
                    break
                except (http.client.HTTPException, ConnectionError):
                    self._http.close()
                    self._http = None
                    if attempt == 2:
                        raise
        if response.status >= 300:
            raise ServerError(
                f"Orthanc {method} {path} answered {response.status}: {payload[:500]!r}"
            )
        if response.getheader("Content-Type", "").startswith("application/json"):
            return json.loads(payload)
        return payload

    def upload(self, paths: Iterable[str | Path], workers: int = 4) -> int:
        """POST each file to /instances, ``workers`` keep-alive connections in parallel.

        About 1.2 ms a small file with 4 workers (3 ms with one); returns the count.
        """
        files = [Path(p) for p in paths]

        def send(chunk: list[Path]) -> None:
            connection = http.client.HTTPConnection(LOOPBACK, self.http_port, timeout=60)
            try:
                for path in chunk:
                    connection.request(
                        "POST", "/instances", path.read_bytes(), headers=self._auth_headers()
                    )
                    response = connection.getresponse()
                    payload = response.read()
                    if response.status >= 300:
                        raise ServerError(f"Orthanc refused {path}: {response.status} {payload!r}")
            finally:
                connection.close()

        workers = max(1, min(workers, len(files) // 20 + 1))
        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(send, files[i::workers]) for i in range(workers)]:
                future.result()
        return len(files)

    def add_modality(
        self, aet: str, host: str = LOOPBACK, port: int = 11113, *, tls: bool = False
    ) -> None:
        """Register (or update) a C-MOVE destination, keyed by its AE title; ``tls``: Orthanc
        sends to it over DICOM TLS (the server needs ``DicomTls*`` in ``extra_config``, see
        :func:`orthanc_tls_config`)."""
        modality: dict[str, Any] = {"AET": aet, "Host": host, "Port": port}
        if tls:
            modality["UseDicomTls"] = True
        self.request("PUT", f"/modalities/{aet}", modality)

    def instance_uids(self, study_uid: str | None = None) -> set[str]:
        """SOP Instance UIDs held (of one study, when given)."""
        query = {"StudyInstanceUID": study_uid} if study_uid else {}
        found = self.request(
            "POST", "/tools/find", {"Level": "Instance", "Query": query, "Expand": True}
        )
        return {item["MainDicomTags"]["SOPInstanceUID"] for item in found}

    def file_bytes(self, sop_uid: str) -> bytes:
        """The stored Part-10 file of one instance."""
        matches = [
            m for m in self.request("POST", "/tools/lookup", sop_uid) if m["Type"] == "Instance"
        ]
        if not matches:
            raise ServerError(f"Orthanc holds no instance {sop_uid}")
        return self.request("GET", f"/instances/{matches[0]['ID']}/file")

    def delete_all(self) -> None:
        for patient in self.request("GET", "/patients"):
            self.request("DELETE", f"/patients/{patient}")

    def statistics(self) -> dict[str, Any]:
        """Counts of patients, studies, series and instances (GET /statistics)."""
        return self.request("GET", "/statistics")


class DcmqrscpServer(ManagedProcess):
    """DCMTK's dcmqrscp serving one RW storage area under ``workdir/db``.

    Files are registered in place with ``dcmqridx`` (:meth:`add_files`), so they must outlive
    the server. C-MOVE destinations are fixed in the config at start. dcmqrscp 3.6.7 holds at
    most 500 studies of at most 1 GB per storage area (larger quotas are cut down; dcmqridx
    aborts past 500 studies). It forks one process per association.
    """

    name = "dcmqrscp"

    def __init__(
        self,
        workdir: str | Path,
        aet: str = "DCMQRSCP",
        move_destinations: dict[str, tuple[str, int]] | None = None,
        *,
        max_studies: int = MAX_DCMQRSCP_STUDIES,
        max_pdu: int = 65536,
        extra_args: Sequence[str] = (),
        tcp_nodelay: bool = False,
    ) -> None:
        if not 0 < max_studies <= MAX_DCMQRSCP_STUDIES:
            raise ValueError(
                f"dcmqrscp holds 1 to {MAX_DCMQRSCP_STUDIES} studies, not {max_studies}"
            )
        super().__init__(workdir, tcp_nodelay=tcp_nodelay)
        self.aet = aet
        self.move_destinations = dict(move_destinations or {})
        self.max_studies = max_studies
        self.max_pdu = max_pdu
        self.extra_args = list(extra_args)
        self.db_dir = self.workdir / "db"
        self.db_dir.mkdir(exist_ok=True)
        self.port = 0

    @property
    def node(self) -> RemoteNode:
        return RemoteNode(ae_title=self.aet, host=LOOPBACK, port=self.port, name="dcmqrscp")

    def add_files(self, paths: Iterable[str | Path], batch: int = 500) -> int:
        """Register Part-10 files in the index (before or after start); returns the count."""
        tool = dcmtk("dcmqridx")
        files = [str(Path(p).resolve()) for p in paths]
        for first in range(0, len(files), batch):
            result = subprocess.run(
                [tool, str(self.db_dir), *files[first : first + batch]],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise ServerError(f"dcmqridx failed ({result.returncode}): {result.stderr[-2000:]}")
        return len(files)

    def write_config(self) -> Path:
        hosts = "\n".join(
            f"{aet} = ({aet}, {host}, {port})"
            for aet, (host, port) in self.move_destinations.items()
        )
        text = f"""# written by tests/servers.py
NetworkTCPPort  = {self.port}
MaxPDUSize      = {self.max_pdu}
MaxAssociations = 16

HostTable BEGIN
{hosts}
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
{self.aet} {self.db_dir} RW ({self.max_studies}, 1024mb) ANY
AETable END
"""
        path = self.workdir / "dcmqrscp.cfg"
        path.write_text(text)
        return path

    def start(self, timeout: float = 15.0) -> DcmqrscpServer:
        binary = dcmtk("dcmqrscp")
        self.port = self.port or free_port()
        config = self.write_config()
        self._spawn([binary, "-c", str(config), *self.extra_args])
        self._wait_until(lambda: port_open(self.port), timeout)
        log.info("dcmqrscp %s on %d", self.aet, self.port)
        return self


class WlmscpfsServer(ManagedProcess):
    """DCMTK's wlmscpfs answering worklist C-FINDs from ``.wl`` files in ``workdir/wl/<AET>``.

    Runs with ``-csk`` so answers carry the files' Specific Character Set (its default drops
    it) and ``-dfr`` so a malformed item shows up in tests instead of being skipped silently.
    """

    name = "wlmscpfs"

    def __init__(
        self,
        workdir: str | Path,
        aet: str = "WL",
        items: Sequence[Dataset] | None = None,
        *,
        extra_args: Sequence[str] = (),
        tcp_nodelay: bool = False,
    ) -> None:
        super().__init__(workdir, tcp_nodelay=tcp_nodelay)
        self.aet = aet
        self.items = list(make_worklist_items() if items is None else items)
        self.extra_args = list(extra_args)
        self.data_dir = self.workdir / "wl"
        self.port = 0

    @property
    def node(self) -> RemoteNode:
        return RemoteNode(ae_title=self.aet, host=LOOPBACK, port=self.port, name="worklist")

    def write_items(self) -> list[Path]:
        folder = self.data_dir / self.aet
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "lockfile").touch()
        for old in folder.glob("*.wl"):
            old.unlink()
        paths = []
        for number, item in enumerate(self.items, start=1):
            path = folder / f"item{number:04d}.wl"
            write_worklist_file(item, path)
            paths.append(path)
        return paths

    def start(self, timeout: float = 15.0) -> WlmscpfsServer:
        binary = dcmtk("wlmscpfs")
        self.write_items()
        self.port = self.port or free_port()
        self._spawn(
            [binary, "-dfp", str(self.data_dir), "-csk", "-dfr", *self.extra_args, str(self.port)]
        )
        self._wait_until(lambda: port_open(self.port), timeout)
        log.info("wlmscpfs %s on %d with %d items", self.aet, self.port, len(self.items))
        return self


_WORKLIST_PROTOCOLS = (
    ("CT", "CT01", "CT THORAX", "Weber^Klaus"),
    ("MR", "MR01", "MR KNEE LEFT", "Nováková^Eva"),
    ("US", "US01", "US ABDOMEN", "House^Gregory"),
)


def make_worklist_items(seed: int = 1, count: int = 6, day: dt.date | None = None) -> list[Dataset]:
    """Worklist items for the first patients of ``generate_archive(seed)`` (so priors exist).

    Modalities cycle CT, MR, US; four items a day from ``day`` (default: today) at 08:00,
    08:30..., the rest on the following days.
    """
    day = day or dt.date.today()
    patients = generate_archive(seed).patients
    order = [0, 3, 4, 2, 5, 1, 6, 7]
    items = []
    for index in range(count):
        patient = patients[order[index % len(order)] % len(patients)]
        modality, station, description, physician = _WORKLIST_PROTOCOLS[index % 3]
        when = day + dt.timedelta(days=index // 4)
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.AccessionNumber = f"W{seed:02d}{index + 1:04d}"
        ds.PatientName = patient.PatientName
        ds.PatientID = patient.PatientID
        ds.PatientBirthDate = patient.PatientBirthDate
        ds.PatientSex = patient.PatientSex
        ds.StudyInstanceUID = generate_uid(UID_PREFIX, [f"seed={seed}", "worklist", str(index)])
        ds.RequestedProcedureID = f"RP{index + 1:04d}"
        ds.RequestedProcedureDescription = description
        step = Dataset()
        step.Modality = modality
        step.ScheduledStationAETitle = station
        step.ScheduledProcedureStepStartDate = when.strftime("%Y%m%d")
        step.ScheduledProcedureStepStartTime = f"{8 + (index % 4) // 2:02d}{30 * (index % 2):02d}00"
        step.ScheduledPerformingPhysicianName = physician
        step.ScheduledProcedureStepDescription = description
        step.ScheduledProcedureStepID = f"SPS{index + 1:04d}"
        ds.ScheduledProcedureStepSequence = [step]
        items.append(ds)
    return items


def write_worklist_file(item: Dataset, path: Path) -> None:
    """Write one worklist item as a Part-10 file (what wlmscpfs reads)."""
    ds = Dataset()
    ds.update(item)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(MODALITY_WORKLIST_FIND)
    meta.MediaStorageSOPInstanceUID = generate_uid(UID_PREFIX, [str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)


def findscu(
    node: RemoteNode,
    keys: Sequence[str],
    *,
    model: str = "study",
    calling_aet: str = "FINDSCU",
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
) -> list[Dataset]:
    """Query ``node`` with DCMTK's findscu, an independent reference client.

    ``keys`` are findscu ``-k`` arguments such as ``"QueryRetrieveLevel=STUDY"`` or
    ``"PatientName=Müller*"``; ``model`` is ``study``, ``patient`` or ``worklist``.
    Returns the response identifiers in the order received.
    """
    flag = {"study": "-S", "patient": "-P", "worklist": "-W"}[model]
    with tempfile.TemporaryDirectory(prefix="findscu-") as out:
        argv = [dcmtk("findscu"), flag, "-aet", calling_aet, "-aec", node.ae_title]
        argv += ["-X", "-od", out, *extra_args]
        for key in keys:
            argv += ["-k", key]
        argv += [node.host, str(node.port)]
        result = subprocess.run(
            argv, capture_output=True, timeout=timeout, check=False, env=dcmtk_env()
        )
        if result.returncode != 0:
            raise ServerError(
                f"findscu failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )
        return [dcmread(path, force=True) for path in sorted(Path(out).glob("rsp*.dcm"))]
