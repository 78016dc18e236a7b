"""Everything the window runs on, opened once and closed once: settings, store, SCP, queue.

Qt-free. :meth:`Session.open` reads the settings, opens the local store, binds the storage SCP
and loads the retrieve queue; it is quick, except when the store's index is migrated to a new
schema (seconds at a million instances), so the window calls it in a worker thread
(:func:`workstation.ui.app.open_session`). :meth:`Session.start_demo`, the
slow part of ``--demo`` (about a second to build the synthetic archive), runs in a worker.
:meth:`Session.close` stops in the safe order: the queue first (running retrieves are
cancelled and stay queued, so the next start resumes them), then the SCP, then the store.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field

from workstation import settings as settings_module
from workstation.demo.archive import DemoArchive, demo_archive
from workstation.dimse.storage import StorageServer
from workstation.errors import InvalidInput, PortInUse
from workstation.jobs import RetrieveQueue
from workstation.nodes import LocalAE, RemoteNode, RetrieveMethod
from workstation.serve import QRServer
from workstation.settings import Settings
from workstation.store import LocalStore

log = logging.getLogger(__name__)

DEMO_NODE = "DEMO"
#: The demo archive's AE title: it stores to our SCP in demo mode.
DEMO_AE_TITLE = "DEMO"
JOB_FILE = "jobs.sqlite"
#: Seconds the queue gets on quit to cancel running retrieves before we stop waiting.
SHUTDOWN_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Session:
    """The running services of one window. The window listens to ``queue``
    (:meth:`RetrieveQueue.add_listener`) and ``store`` (:meth:`LocalStore.add_listener`);
    both call on worker threads."""

    settings: Settings
    store: LocalStore
    scp: StorageServer
    queue: RetrieveQueue
    #: "WORKSTATION@11113 listening", or why the SCP is not listening.
    scp_status: str
    demo_requested: bool = False
    demo: DemoArchive | None = None
    #: Nodes that exist only in this session (the demo archive): never saved.
    session_nodes: dict[str, RemoteNode] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False
    #: The Q/R SCP serving the store to other nodes (settings' serve_enabled), when running.
    serve: QRServer | None = None
    #: "serving the store as WORKSTATION@0.0.0.0:11114", "off", or why it did not start.
    serve_status: str = "off"

    @classmethod
    def open(cls, *, demo: bool = False, settings: Settings | None = None) -> Session:
        """Open the store, start the SCP (never fatal) and load the queue."""
        prefs = settings if settings is not None else settings_module.load()
        # A full check, when one is owed (a power cut, a lost index), must not hold up the
        # window: it runs on a thread while the store is in use (see LocalStore).
        store = LocalStore(prefs.store_dir, check_in_background=True)
        try:
            scp, status = _start_scp(prefs, store, demo)
            queue = RetrieveQueue(
                store,
                scp,
                db_path=settings_module.config_dir() / JOB_FILE,
                per_node_limit=prefs.retrieves_per_node,
                idle_timeout=prefs.retrieve_idle_timeout,
                resume=False,  # resumed by the window once it listens (see resume_jobs)
                calling_aet=prefs.ae_title,
            )
        except BaseException:
            store.close()
            raise
        session = cls(prefs, store, scp, queue, status, demo_requested=demo)
        session._start_serve()
        return session

    def _start_serve(self) -> None:
        """Serve the store (Q/R SCP) when the settings say so; a failure is not fatal.

        C-MOVE destinations are the saved nodes as they are at each request; the callers
        allowed are the allowed callers and saved nodes at start.
        """
        prefs = self.settings
        if not prefs.serve_enabled:
            return
        try:
            server = QRServer(
                self.store,
                ae_title=prefs.ae_title,
                port=prefs.serve_port,
                bind=prefs.store_bind,
                destinations=lambda: list(self.settings.nodes.values()),
                allowed_callers=prefs.serve_callers,
                tls=prefs.scp_tls_config,
            ).start()
        except (PortInUse, InvalidInput) as exc:
            log.warning("the store is not served: %s", exc)
            self.serve_status = f"not serving the store: {exc}"
            return
        self.serve = server
        self.serve_status = f"serving the store as {server}"

    # -- nodes -----------------------------------------------------------------------------

    @property
    def nodes(self) -> dict[str, RemoteNode]:
        """Saved nodes plus this session's (the demo), by name."""
        return {**self.settings.nodes, **self.session_nodes}

    def node(self, name: str) -> RemoteNode | None:
        return self.nodes.get(name)

    def start_demo(self) -> RemoteNode:
        """Start the demo archive (blocking, ~1 s: run it in a worker) and add node DEMO.

        The archive learns our AE as a C-MOVE destination on 127.0.0.1 and our SCP's port;
        when the SCP could not start, the node retrieves by C-GET instead.
        """
        archive = demo_archive(port=0, realistic=True).start()
        method = RetrieveMethod.MOVE if self.scp.running else RetrieveMethod.GET
        if self.scp.running:
            archive.add_destination(self.scp.ae_title, "127.0.0.1", self.scp.port)
        node = archive.node.with_options(name=DEMO_NODE, retrieve_method=method)
        with self._lock:
            if self.closed:
                archive.stop()
                raise RuntimeError("the session closed while the demo archive started")
            self.demo = archive
            self.session_nodes[DEMO_NODE] = node
        log.info("demo archive ready as node %s (%s)", DEMO_NODE, node)
        return node

    def apply_local_ae(self, old: Settings, new: Settings) -> str:
        """Move our storage SCP to the AE title, port, callers and TLS of ``new`` while it
        runs (blocking, up to a few seconds: run it in a worker); returns the status line.

        Raises :class:`PortInUse` (or :class:`InvalidInput` for TLS files) when the new one
        cannot listen: the SCP then goes on as it was. An unchanged port keeps the one it
        listens on (the demo's stand-in port when ours was taken). The retrieves that start
        from now on call with the new AE title, and the demo archive sends to it.
        """
        scp = self.scp
        same = (new.store_port, new.store_bind) == (old.store_port, old.store_bind)
        local = LocalAE(new.ae_title, scp.port, scp.local.bind) if same else new.local_ae
        callers = [*new.serve_callers, *([DEMO_AE_TITLE] if self.demo_requested else [])]
        self.queue.calling_aet = new.ae_title
        try:
            scp.reconfigure(local, allowed_callers=callers, tls=new.scp_tls_config)
            scp.start()  # when it was not listening (its port was taken at start, say)
        except (PortInUse, InvalidInput) as exc:
            if not scp.running:
                self.scp_status = str(exc)
            raise
        if self.demo is not None:
            self.demo.add_destination(scp.ae_title, "127.0.0.1", scp.port)
        self.scp_status = f"{scp.ae_title}@{scp.port} listening"
        log.info("storage SCP now %s", self.scp_status)
        return self.scp_status

    # -- the queue -------------------------------------------------------------------------

    def resume_jobs(self) -> None:
        """Start the retrieves interrupted at the last exit (call once the window listens)."""
        self.queue.resume()

    # -- shutdown --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the queue (running jobs persist as queued), the demo, the SCP, the store."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        try:
            self.queue.shutdown(wait=True, cancel_running=True, timeout=SHUTDOWN_TIMEOUT)
        except Exception:
            log.exception("the retrieve queue did not shut down cleanly")
        if self.demo is not None:
            self.demo.stop()
        if self.serve is not None:
            try:
                self.serve.stop()
            except Exception:
                log.exception("the Q/R SCP did not stop cleanly")
        try:
            self.scp.stop()
        except Exception:
            log.exception("the storage SCP did not stop cleanly")
        self.store.close()
        log.info("session closed")


def _start_scp(prefs: Settings, store: LocalStore, demo: bool) -> tuple[StorageServer, str]:
    """Start our storage SCP; in demo mode fall back to a free port when ours is taken."""
    local = prefs.local_ae
    # Only the PACS the user configured (and the callers allowed by hand) may store to us;
    # with none configured yet, anyone may (a modality pushing to a fresh install).
    callers = [*prefs.serve_callers, *([DEMO_AE_TITLE] if demo else [])]
    tls = prefs.scp_tls_config
    scp = StorageServer(local, store, allowed_callers=callers, tls=tls)
    try:
        scp.start()
    except InvalidInput as exc:  # the TLS certificate or key cannot be used
        log.warning("storage SCP not started: %s", exc)
        return scp, str(exc)
    except PortInUse as exc:
        if not demo:
            log.warning("storage SCP not started: %s", exc)
            return scp, str(exc)
        fallback = LocalAE(local.ae_title, _free_port(), "127.0.0.1")
        log.warning("port %d is taken; the demo uses port %d", local.port, fallback.port)
        scp = StorageServer(fallback, store, allowed_callers=callers, tls=tls)
        scp.start()
    return scp, f"{scp.ae_title}@{scp.port} listening"
