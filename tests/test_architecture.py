"""The core stays Qt-free: only workstation/ui imports PySide6 or qasync."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import workstation

PACKAGE = Path(workstation.__file__).parent
QT = ("PySide6", "qasync", "shiboken6", "PyQt5", "PyQt6")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_core_module_imports_qt() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(n for n in _imports(path) if n.startswith(QT))
        for path in PACKAGE.rglob("*.py")
        if "ui" not in path.relative_to(PACKAGE).parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_core_module_loads_no_qt() -> None:
    code = (
        "import importlib, pkgutil, sys, workstation\n"
        "for m in pkgutil.walk_packages(workstation.__path__, 'workstation.'):\n"
        "    if not m.name.startswith(('workstation.ui', 'workstation.__main__')):\n"
        "        importlib.import_module(m.name)\n"
        f"print(sorted(n for n in sys.modules if n.startswith({QT!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_core_never_imports_the_faces() -> None:
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if parts[0] in ("ui", "cli") or parts == ("__main__.py",):
            continue
        faces = [n for n in _imports(path) if n.startswith(("workstation.ui", "workstation.cli"))]
        assert not faces, f"{path.relative_to(PACKAGE)} imports {faces}"


def test_workstation_echo_loads_neither_pydicom_nor_pynetdicom(tmp_path: Path) -> None:
    """``workstation echo`` must start fast: its path imports only the lean wire modules."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def refuse_politely() -> None:  # an A-ASSOCIATE-RJ: the echo fails, having associated
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(bytes([3, 0, 0, 0, 0, 4, 0, 1, 1, 3]))

    threading.Thread(target=refuse_politely, daemon=True).start()
    code = (
        "import sys\n"
        "from workstation.cli.main import main\n"
        f"code = main(['echo', 'PEER@127.0.0.1:{port}'])\n"
        "print(code, sorted({n.split('.')[0] for n in sys.modules} & {'pydicom', 'pynetdicom'}))\n"
    )
    env = {"WORKSTATION_CONFIG_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    listener.close()
    assert result.stdout.strip() == "1 []", result.stderr
    assert "calling AE title" in result.stderr  # it did get the rejection and explains it
