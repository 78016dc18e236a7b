"""Session fixtures: the seeded archive and the real servers that hold it.

The session servers (``orthanc``, ``dcmqrscp``, ``worklist``) are shared by every test: treat
them as read-only. A test that stores into, deletes from or kills a PACS makes its own with
``make_orthanc``. All servers listen on 127.0.0.1 ports picked at start. The server classes
and DCMTK helpers (``findscu``, ``dcmtk``, ``free_port``) are in ``tests/servers.py``:
``from tests.servers import findscu``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt
# The window's GUI-thread checks on (workstation.ui.common.thread_guard): a model, buffer or task
# callback run on a worker thread raises instead of corrupting Qt.
os.environ.setdefault("WORKSTATION_CHECK_THREADS", "1")

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

# Helpers live in tests/servers.py, imported as `tests.servers` (also when pytest is started
# as a script, which leaves the repository root off sys.path); `servers` names the same module.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tests.servers
from tests.servers import (
    LOOPBACK,
    DcmqrscpServer,
    ManagedProcess,
    OrthancServer,
    ServerError,
    WlmscpfsServer,
    free_port,
    make_worklist_items,
)
from workstation.demo import Archive, generate_archive

# The window tests' plugin asserts too; test modules import it before pytest_plugins loads it.
pytest.register_assert_rewrite("tests.ui_support")

sys.modules.setdefault("servers", tests.servers)

#: AE titles of the move destinations every session PACS knows.
WORKSTATION_AET = "WORKSTATION"
STORESCP_AET = "STORESCP"


def _start(server: ManagedProcess) -> None:
    try:
        server.start()
    except ServerError as error:
        pytest.fail(f"cannot start {server.name}: {error}", pytrace=False)


@pytest.fixture(scope="session")
def archive() -> Archive:
    """``generate_archive(seed=1)``: 12 patients, 28 studies, 213 instances of 16×16."""
    return generate_archive(seed=1)


@pytest.fixture(scope="session")
def archive_files(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The archive as Part-10 files, in ``archive.all_instances()`` order."""
    return archive.write(tmp_path_factory.mktemp("archive"))


@pytest.fixture(scope="session")
def store_port() -> int:
    """The port our storage SCP (AE ``WORKSTATION``) should listen on for C-MOVE tests."""
    return free_port()


@pytest.fixture(scope="session")
def storescp_port() -> int:
    """The port for a DCMTK storescp (AE ``STORESCP``), a reference move destination."""
    return free_port()


def _destinations(store_port: int, storescp_port: int) -> dict[str, tuple[str, int]]:
    return {WORKSTATION_AET: (LOOPBACK, store_port), STORESCP_AET: (LOOPBACK, storescp_port)}


@pytest.fixture(scope="session")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory,
    archive_files: list[Path],
    store_port: int,
    storescp_port: int,
) -> Iterator[OrthancServer]:
    """Orthanc (AE ``ORTHANC``) holding the archive; knows WORKSTATION and STORESCP."""
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"))
    try:
        _start(server)
        server.upload(archive_files)
        for aet, (host, port) in _destinations(store_port, storescp_port).items():
            server.add_modality(aet, host, port)
        yield server
    finally:
        server.kill()  # a graceful Orthanc stop takes ~2.5 s; its files are thrown away


@pytest.fixture(scope="session")
def dcmqrscp(
    tmp_path_factory: pytest.TempPathFactory,
    archive_files: list[Path],
    store_port: int,
    storescp_port: int,
) -> Iterator[DcmqrscpServer]:
    """DCMTK dcmqrscp (AE ``DCMQRSCP``) holding the archive; knows WORKSTATION and STORESCP."""
    server = DcmqrscpServer(
        tmp_path_factory.mktemp("dcmqrscp"),
        move_destinations=_destinations(store_port, storescp_port),
    )
    try:
        try:
            server.add_files(archive_files)
        except ServerError as error:
            pytest.fail(str(error), pytrace=False)
        _start(server)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def worklist_items() -> list[Dataset]:
    """``make_worklist_items(seed=1)``: six items (CT, MR, US), four today, two tomorrow."""
    return make_worklist_items(seed=1)


@pytest.fixture(scope="session")
def worklist(
    tmp_path_factory: pytest.TempPathFactory, worklist_items: list[Dataset]
) -> Iterator[WlmscpfsServer]:
    """DCMTK wlmscpfs (AE ``WL``) serving ``worklist_items``."""
    server = WlmscpfsServer(tmp_path_factory.mktemp("worklist"), items=worklist_items)
    try:
        _start(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_orthanc(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., OrthancServer]]:
    """Factory for a private Orthanc: ``make_orthanc(files=(), aet="ORTHANC", **options)``.

    Every server it made is killed when the test ends.
    """
    servers: list[OrthancServer] = []

    def make(files: Iterable[Path] = (), aet: str = "ORTHANC", **options: object) -> OrthancServer:
        server = OrthancServer(tmp_path_factory.mktemp("orthanc"), aet, **options)  # type: ignore[arg-type]
        servers.append(server)
        _start(server)
        server.upload(files)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.kill()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Say how many peer warnings the rate limit held back now, not after pytest's summary
    (its closing line stays the run's last)."""
    from workstation import logs

    if logs._installed is not None:
        logs._installed.flush()
