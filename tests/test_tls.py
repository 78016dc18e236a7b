"""DICOM TLS (PS3.15 B.9, BCP 195) both ways, against real peers on 127.0.0.1: Orthanc and
DCMTK over TLS, our storage SCP and our Q/R SCP with TLS, and each failure's plain-language
message. The certificates are made for the module by ``openssl`` (tests/tls_certs.py)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

import workstation as ws
from tests.servers import (
    LOOPBACK,
    ManagedProcess,
    OrthancServer,
    dcmtk,
    free_port,
    orthanc_tls_config,
    port_open,
)
from tests.tls_certs import Certificates, make_certificates
from workstation.cli.main import main
from workstation.demo import Archive
from workstation.dimse.association import associate
from workstation.dimse.storage import StorageServer
from workstation.dimse.tls import TlsServerConfig, key_warning
from workstation.errors import AssociationAborted, TlsFailed
from workstation.serve import QRServer
from workstation.settings import _from_json
from workstation.store import LocalStore

STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls") / "certs")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    with LocalStore(tmp_path / "store", fsync=False) as local:
        yield local


def _body(part10: bytes) -> bytes:
    """The data set of a Part-10 file (what follows the file meta group)."""
    assert part10[128:132] == b"DICM"
    meta_length = int.from_bytes(part10[140:144], "little")
    return part10[144 + meta_length :]


def _client(certs: Certificates, port: int, aet: str = "WS", **options: object) -> ws.RemoteNode:
    tls: dict[str, object] = dict(tls=True, tls_ca=certs.ca)
    tls.update(options)
    return ws.RemoteNode(aet, LOOPBACK, port, **tls)  # type: ignore[arg-type]


def _run_dcmtk(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk(args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout, check=False
    )


# -- Orthanc over TLS: find, move and get -------------------------------------------------


@pytest.fixture(scope="module")
def tls_orthanc(
    tmp_path_factory: pytest.TempPathFactory,
    certs: Certificates,
    archive: Archive,
    archive_files: list[Path],
) -> Iterator[tuple[OrthancServer, int]]:
    """Orthanc speaking only DICOM TLS (client certificates required), holding two studies;
    it knows WORKSTATION (our move destination, over TLS too) on the port returned."""
    wanted = {ref.SOPInstanceUID for ref in archive.all_instances(archive.studies[:2])}
    files = [
        p
        for p in archive_files
        if str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) in wanted
    ]
    server = OrthancServer(
        tmp_path_factory.mktemp("orthanc-tls"),
        extra_config=orthanc_tls_config(certs.server.cert, certs.server.key, certs.ca),
    )
    try:
        server.start()
        server.upload(files)
        store_port = free_port()
        server.add_modality("WORKSTATION", LOOPBACK, store_port, tls=True)
        yield server, store_port
    finally:
        server.kill()


def test_find_move_and_get_from_orthanc_over_tls(
    tls_orthanc: tuple[OrthancServer, int], certs: Certificates, archive: Archive, tmp_path: Path
) -> None:
    orthanc, store_port = tls_orthanc
    node = _client(
        certs, orthanc.dicom_port, "ORTHANC", tls_cert=certs.client.cert, tls_key=certs.client.key
    )
    found = {str(ds.StudyInstanceUID) for ds in ws.find(node, ws.Query.study())}
    assert found == {study.StudyInstanceUID for study in archive.studies[:2]}

    moved, got = archive.studies[0].StudyInstanceUID, archive.studies[1].StudyInstanceUID
    with LocalStore(tmp_path / "moved", fsync=False) as store:
        # Orthanc sends the sub-operations over TLS: our storage SCP presents our certificate
        local = ws.LocalAE("WORKSTATION", store_port, LOOPBACK)
        tls = TlsServerConfig(certs.client.cert, certs.client.key, certs.ca, True)
        with StorageServer(local, store, tls=tls) as scp:
            outcome = ws.move(node, ws.Query.study(StudyInstanceUID=moved), scp)
        assert outcome.state is ws.RetrieveState.DONE, outcome.message
        held = orthanc.instance_uids(moved)
        assert outcome.received == len(held) > 0
        for uid in held:
            path = store.path_of(uid)
            assert path is not None
            assert _body(path.read_bytes()) == _body(orthanc.file_bytes(uid))

    with LocalStore(tmp_path / "got", fsync=False) as store:
        outcome = ws.get(node, ws.Query.study(StudyInstanceUID=got), store)
        assert outcome.state is ws.RetrieveState.DONE, outcome.message
        held = orthanc.instance_uids(got)
        assert outcome.received == len(held) > 0
        for uid in held:
            path = store.path_of(uid)
            assert path is not None
            assert _body(path.read_bytes()) == _body(orthanc.file_bytes(uid))


def test_orthanc_wants_our_client_certificate(
    tls_orthanc: tuple[OrthancServer, int], certs: Certificates
) -> None:
    orthanc, _ = tls_orthanc
    with pytest.raises(TlsFailed, match=r"wants a client certificate.*--tls-cert FILE --tls-key"):
        ws.echo(_client(certs, orthanc.dicom_port, "ORTHANC"))


def test_plain_node_on_orthanc_tls_port_says_turn_on_tls(
    tls_orthanc: tuple[OrthancServer, int],
) -> None:
    orthanc, _ = tls_orthanc
    with pytest.raises((AssociationAborted, TlsFailed), match="turn on TLS for"):
        ws.echo(ws.RemoteNode("ORTHANC", LOOPBACK, orthanc.dicom_port))


# -- each failure in plain language, against our own storage SCP ---------------------------


@pytest.mark.parametrize(
    ("server", "options", "message", "logged"),
    [
        ("expired", {}, "certificate of .* has expired", "our certificate has expired"),
        ("untrusted", {}, r"not trusted \(unknown CA.*--tls-ca FILE", "does not accept our"),
        ("wrong_host", {}, r"not for '127.0.0.1' \(host name mismatch\).*--tls-no-verify-host",
         "does not accept our"),
        ("required", {}, "wants a client certificate", "sent no client certificate"),
        ("plain", {}, "does not speak TLS on port", "began a TLS handshake on our plain"),
    ],
)  # fmt: skip
def test_tls_failures_say_what_to_do(
    server: str,
    options: dict[str, object],
    message: str,
    logged: str,
    certs: Certificates,
    store: LocalStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pair = getattr(certs, server, certs.server)
    tls = None if server == "plain" else TlsServerConfig(
        pair.cert, pair.key, certs.ca, require_client_cert=server == "required")  # fmt: skip
    caplog.set_level(logging.WARNING, "workstation.dimse.wire.scp")
    with StorageServer(ws.LocalAE("WS", 0, LOOPBACK), store, tls=tls) as scp:
        with pytest.raises(TlsFailed, match=message) as raised:
            ws.echo(_client(certs, scp.port, **options))
        assert "\n" not in str(raised.value)
        scp.stop()  # its association threads have logged by now
    assert any(logged in record.getMessage() for record in caplog.records), caplog.text


def test_host_check_can_be_turned_off_and_client_certificates_pass(
    certs: Certificates, store: LocalStore
) -> None:
    wrong = TlsServerConfig(certs.wrong_host.cert, certs.wrong_host.key)
    with StorageServer(ws.LocalAE("WS", 0, LOOPBACK), store, tls=wrong) as scp:
        assert "success" in str(ws.echo(_client(certs, scp.port, tls_verify_host=False)))
    strict = TlsServerConfig(certs.server.cert, certs.server.key, certs.ca, True)
    with StorageServer(ws.LocalAE("WS", 0, LOOPBACK), store, tls=strict) as scp:
        node = _client(certs, scp.port, tls_cert=certs.client.cert, tls_key=certs.client.key)
        assert "success" in str(ws.echo(node))
        # a client certificate from a CA the SCP does not trust is refused
        stranger = node.with_options(tls_cert=certs.untrusted.cert, tls_key=certs.untrusted.key)
        with pytest.raises(TlsFailed):
            ws.echo(stranger)


def test_plain_caller_on_our_tls_port_is_named(
    certs: Certificates, store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "workstation.dimse.wire.scp")
    tls = TlsServerConfig(certs.server.cert, certs.server.key)
    with StorageServer(ws.LocalAE("WS", 0, LOOPBACK), store, tls=tls) as scp:
        with pytest.raises(AssociationAborted, match="DICOM TLS port, turn on TLS for the node"):
            ws.echo(ws.RemoteNode("WS", LOOPBACK, scp.port))
        scp.stop()
    assert any("plain DICOM to our TLS port" in r.getMessage() for r in caplog.records)


# -- DCMTK against our storage SCP and our Q/R SCP -----------------------------------------


def test_dcmtk_echoscu_and_storescu_to_our_storage_scp_over_tls(
    certs: Certificates, store: LocalStore, archive_files: list[Path]
) -> None:
    sent = archive_files[:3]
    tls = TlsServerConfig(certs.server.cert, certs.server.key, certs.ca, True)
    client = ("+tls", certs.client.key, certs.client.cert, "+cf", certs.ca)
    with StorageServer(ws.LocalAE("WS", 0, LOOPBACK), store, tls=tls) as scp:
        port = str(scp.port)
        echo = _run_dcmtk("echoscu", *client, "-aec", "WS", LOOPBACK, port)
        assert echo.returncode == 0, echo.stderr
        pushed = _run_dcmtk("storescu", *client, "-aec", "WS", LOOPBACK, port, *map(str, sent))
        assert pushed.returncode == 0, pushed.stderr
        # without a client certificate, DCMTK is refused
        anonymous = _run_dcmtk("echoscu", "+tla", "+cf", certs.ca, LOOPBACK, port)
        assert anonymous.returncode != 0
        assert store.flush(10)
    for path in sent:
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        stored = store.path_of(uid)
        assert stored is not None
        assert _body(stored.read_bytes()) == _body(path.read_bytes())


class TlsStorescp(ManagedProcess):
    """DCMTK storescp over TLS (client certificates required), writing into ``workdir/in``."""

    name = "storescp-tls"

    def __init__(self, workdir: Path, certs: Certificates) -> None:
        super().__init__(workdir)
        self.certs = certs
        self.port = free_port()
        self.folder = self.workdir / "in"
        self.folder.mkdir()

    def start(self, timeout: float = 15.0) -> TlsStorescp:
        pair = self.certs.server
        self._spawn([
            dcmtk("storescp"), "+tls", pair.key, pair.cert, "+cf", self.certs.ca,
            "-aet", "STORESCP", "-od", str(self.folder), str(self.port),
        ])  # fmt: skip
        self._wait_until(lambda: port_open(self.port), timeout)
        return self

    def received(self) -> set[str]:
        return {
            str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in self.folder.iterdir()
        }


def test_dcmtk_find_and_move_through_our_qr_scp_over_tls(
    certs: Certificates,
    store: LocalStore,
    archive: Archive,
    archive_files: list[Path],
    tmp_path: Path,
) -> None:
    """findscu +tls against ``serve``; a C-MOVE over TLS, which serve carries out over TLS to
    storescp +tls (client certificates required on every hop)."""
    for path in archive_files[:40]:
        store.store_file(path, move=False)
    assert store.flush(10)
    study_uids = {
        str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in archive_files[:40]
    }
    storescp = TlsStorescp(tmp_path / "storescp", certs).start()
    try:
        destination = _client(
            certs, storescp.port, "STORESCP", tls_cert=certs.client.cert, tls_key=certs.client.key
        )
        tls = TlsServerConfig(certs.server.cert, certs.server.key, certs.ca, True)
        client = ("+tls", certs.client.key, certs.client.cert, "+cf", certs.ca)
        with QRServer(
            store, ae_title="SERVE", port=0, bind=LOOPBACK, destinations=lambda: [destination],
            tls=tls,
        ) as server:  # fmt: skip
            port = str(server.port)
            found = _run_dcmtk(
                "findscu", "-v", *client, "-aec", "SERVE", "-S",
                "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", LOOPBACK, port,
            )  # fmt: skip
            assert found.returncode == 0, found.stderr
            assert all(uid in found.stderr for uid in study_uids), found.stderr
            # DCMTK 3.6.7's movescu has no TLS: our requestor sends the C-MOVE over TLS
            first = sorted(study_uids)[0]
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "STUDY"
            identifier.StudyInstanceUID = first
            serve = _client(
                certs, server.port, "SERVE", tls_cert=certs.client.cert, tls_key=certs.client.key
            )
            with associate(serve, [(STUDY_ROOT_MOVE, None)]) as assoc:
                statuses = [int(status.Status) for status, _ in assoc.send_c_move(
                    identifier, "STORESCP", STUDY_ROOT_MOVE)]  # fmt: skip
            assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
        expected = {
            str(ds.SOPInstanceUID)
            for ds in (dcmread(p, stop_before_pixels=True) for p in archive_files[:40])
            if str(ds.StudyInstanceUID) == first
        }
        assert storescp.received() == expected
    finally:
        storescp.stop()


# -- the command line and the settings ------------------------------------------------------


def test_cli_tls_options_nodes_and_errors(
    certs: Certificates,
    store: LocalStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(tmp_path / "config"))
    loose_key = tmp_path / "loose.key"
    shutil.copy(certs.client.key, loose_key)
    os.chmod(loose_key, 0o644)
    assert key_warning(certs.client.key) is None
    assert "chmod 600" in (key_warning(str(loose_key)) or "")
    tls = TlsServerConfig(certs.server.cert, certs.server.key, certs.ca, True)
    with StorageServer(ws.LocalAE("WS", 0, LOOPBACK), store, tls=tls) as scp:
        address = f"WS@{LOOPBACK}:{scp.port}"
        add = ["nodes", "add", "pacs", address, "--tls", "--tls-ca", certs.ca,
               "--tls-cert", certs.client.cert, "--tls-key", str(loose_key)]  # fmt: skip
        assert main(add) == 0
        out, err = capsys.readouterr()
        assert "TLS" in out and "readable by other users" in err
        assert main(["echo", "pacs"]) == 0
        assert "success" in capsys.readouterr().out
        # on the command line, without a client certificate: one line saying what to do
        assert main(["echo", address, "--tls", "--tls-ca", certs.ca]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "wants a client certificate" in err
        assert main(["echo", address, "--tls-ca", certs.other_ca]) == 1
        assert "not trusted (unknown CA" in capsys.readouterr().err
    saved = json.loads((tmp_path / "config" / "settings.json").read_text())["nodes"]["pacs"]
    assert saved["tls"] is True and saved["tls_ca"] == certs.ca
    assert main(["nodes", "add", "pacs", address, "--no-tls"]) == 0
    assert "TLS" not in capsys.readouterr().out


def test_settings_without_tls_fields_still_load() -> None:
    old = {"version": 1, "ae_title": "OLD",
           "nodes": {"pacs": {"ae_title": "PACS", "host": "10.0.0.1", "port": 104}}}  # fmt: skip
    settings = _from_json(old)
    assert settings.nodes["pacs"].tls is False and settings.scp_tls_config is None


def test_nodes_dialog_tls_group_saves_a_node_and_our_scp_tls(
    qtbot: Any, certs: Certificates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QDialog

    from workstation import settings as settings_module
    from workstation.ui.nodes.nodes_dialog import NodesDialog

    monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(tmp_path / "config"))
    loose_key = tmp_path / "loose.key"
    shutil.copy(certs.client.key, loose_key)
    os.chmod(loose_key, 0o640)
    pacs = ws.RemoteNode("PACS", LOOPBACK, 2762, name="pacs")
    dialog = NodesDialog(settings_module.Settings(nodes={"pacs": pacs}))
    qtbot.addWidget(dialog)
    dialog.node_list.setCurrentRow(0)
    group = dialog.tls_group
    assert not group.isChecked()
    group.setChecked(True)
    qtbot.keyClicks(group.ca.edit, certs.ca)
    qtbot.keyClicks(group.cert.edit, certs.client.cert)
    qtbot.keyClicks(group.key.edit, str(loose_key))
    assert "readable by other users" in group.warning.text()
    group.check.setChecked(False)  # do not check the host name
    server = dialog.scp_tls_group
    server.setChecked(True)
    assert "certificate and its private key" in dialog.local_error.text()
    qtbot.keyClicks(server.cert.edit, certs.server.cert)
    qtbot.keyClicks(server.key.edit, certs.server.key)
    server.check.setChecked(True)
    assert dialog.local_error.text() == ""
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    saved = settings_module.load()
    node = saved.nodes["pacs"]
    assert (node.tls, node.tls_ca, node.tls_cert, node.tls_key, node.tls_verify_host) == (
        True, certs.ca, certs.client.cert, str(loose_key), False
    )  # fmt: skip
    assert saved.scp_tls_config == TlsServerConfig(
        certs.server.cert, certs.server.key, "", require_client_cert=True
    )
