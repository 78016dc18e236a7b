"""A C-MOVE from a pynetdicom Q/R SCP into our storage SCP delivers every instance.

pynetdicom (3.0.4, and its main branch) can lose a C-STORE-RSP on a C-MOVE's sub-association:
its reactor thread, woken at the end of one ``send_c_store()``, may still count as paused when
the next ``send_c_store()`` checks, and then takes that call's response off the queue as an
"unexpected" message. Our SCP answers within a millisecond on loopback, so on a busy machine
the retrieve stalled midway. :func:`workstation.dimse.pynetdicom_ae.close_reactor_race` closes
the race for the pynetdicom peers we run (the demo archive, ``serve``, the tests' quirky SCP).

The first test makes the late wake-up certain (the woken reactor is held back, as a loaded
machine's scheduler does); the second is the plain case, many small instances at full speed.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import association as pynetdicom_association

import workstation as ws
from workstation.demo import DemoArchive, generate_archive

LOOPBACK = "127.0.0.1"
#: A stalled retrieve ends at this idle timeout; a healthy one never waits that long.
IDLE = 5.0
#: How long a woken reactor thread of a sub-association is kept from running...
WAKE_DELAY = 0.025
#: ... and how long its sender pauses between a C-STORE-RQ and taking the response.
SENDER_DELAY = 0.05


class _LateWake(threading.Event):
    """A reactor checkpoint whose waiter, once woken, runs only ``WAKE_DELAY`` s later."""

    def wait(self, timeout: float | None = None) -> bool:
        woken = super().wait(timeout)
        time.sleep(WAKE_DELAY)
        return woken


@pytest.fixture
def scheduled_badly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread order of a loaded machine, made certain on every association we request
    with pynetdicom (a C-MOVE's sub-association): the reactor woken by the end of one
    ``send_c_store()`` runs late, and the next ``send_c_store()`` sends its request and is
    descheduled before it reads the response."""
    init = pynetdicom_association.Association.__init__

    def __init__(self: pynetdicom_association.Association, ae: Any, mode: str) -> None:
        init(self, ae, mode)
        assert isinstance(self._reactor_checkpoint, threading.Event)  # what is replaced
        if not self.is_requestor:
            return
        self._reactor_checkpoint = _LateWake()
        self._reactor_checkpoint.set()
        send_msg = self.dimse.send_msg

        def send_then_pause(primitive: Any, context_id: int) -> None:
            send_msg(primitive, context_id)
            time.sleep(SENDER_DELAY)

        self.dimse.send_msg = send_then_pause  # type: ignore[method-assign]

    monkeypatch.setattr(pynetdicom_association.Association, "__init__", __init__)


def _unexpected(caplog: pytest.LogCaptureFixture) -> list[str]:
    """pynetdicom's warnings about a message it did not expect (a response taken by the
    reactor: "Received unexpected C-STORE service message")."""
    return [r.getMessage() for r in caplog.records if "unexpected" in r.getMessage()]


def _move_study(tmp_path: Path, instances_per_series: int) -> tuple[ws.RetrieveOutcome, set[str]]:
    content = generate_archive(
        seed=11,
        patients=1,
        studies_per_patient=(1, 1),
        series_per_study=(2, 2),
        instances_per_series=(instances_per_series, instances_per_series),
    )
    study = content.studies[0]
    with (
        ws.LocalStore(tmp_path / "store", fsync=False) as store,
        ws.StorageServer(ws.LocalAE("WORKSTATION", 0, LOOPBACK), store) as storage,
        DemoArchive(content) as pacs,
    ):
        pacs.add_destination("WORKSTATION", LOOPBACK, storage.port)
        outcome = ws.move(
            pacs.node,
            ws.Query.study(StudyInstanceUID=study.StudyInstanceUID),
            storage,
            idle_timeout=IDLE,
        )
        store.flush()
        stored = store.instance_uids()
    assert stored <= content.sop_instance_uids(study.StudyInstanceUID)
    return outcome, stored


def test_move_completes_when_the_senders_reactor_wakes_late(
    tmp_path: Path, scheduled_badly: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pynetdicom")
    outcome, stored = _move_study(tmp_path, instances_per_series=5)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert outcome.received == len(stored) == 10
    assert not _unexpected(caplog)


def test_move_of_many_small_instances_completes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pynetdicom")
    outcome, stored = _move_study(tmp_path, instances_per_series=150)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert outcome.received == len(stored) == 300
    assert not _unexpected(caplog)
