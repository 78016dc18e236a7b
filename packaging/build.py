"""Build the self-contained application folder with PyInstaller, and check it runs.

Usage (from a checkout, with the project's venv; ``pip install pyinstaller`` first)::

    .venv/bin/python packaging/build.py                      # -> dist/workstation/
    .venv/bin/python packaging/build.py --out /tmp/app --check
    .venv/bin/python packaging/build.py --install-desktop    # build, then add it to the menu

The result, ``<out>/workstation/``, holds the ``workstation`` program, its Python, Qt (with
the xcb, Wayland and offscreen platform plugins), pydicom's and pynetdicom's data, the icons,
the About text and licence notices, and the libraries' licence files (their ``*.dist-info``).
It runs without the source tree or a Python installation: copy the folder anywhere.
``--check`` starts the built program with ``--version`` and with ``--demo`` (the window on the
demo archive, for a few seconds, on whatever display or ``QT_QPA_PLATFORM`` is set: CI uses
Xvfb), and checks the C-FIND helper process starts from the frozen program.

Why PyInstaller: it freezes a PySide6 program from PyPI packages as they are, with maintained
hooks for Qt (plugins, translations) and for pydicom/pynetdicom data, in ~30 s on 2 cores, and
its one-folder layout keeps Qt as separate shared libraries a user can replace (LGPLv3).
Nuitka compiles every module to C: minutes to tens of minutes per build here, and a C compiler
in CI, for a program whose speed is in the network and the disk. Briefcase wraps the app into
platform installers (AppImage needs Docker on Linux) and builds its own Python environment
from PyPI on each run; neither fits a quick, offline-repeatable CI step.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAME = "workstation"
#: Packages whose data files (dictionaries, UID lists...) the program needs at run time.
DATA_PACKAGES = ("pydicom", "pynetdicom", "workstation_resources")
#: Packages whose metadata (version, licence files) ships in the folder.
METADATA = ("workstation", "pydicom", "pynetdicom", "qasync", "platformdirs", "numpy")
#: Qt and Python modules the program never uses: smaller and quicker to build.
EXCLUDES = ("tkinter", "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtNetwork", "pytest")


def stage(checkout: Path, into: Path) -> Path:
    """Install the checkout (not its dependencies) into ``into``, as a wheel install would:
    only what pyproject.toml packages goes into the build, never stray files of the tree."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-deps", "--no-compile", "--target", str(into), str(checkout)],
        check=True,
    )  # fmt: skip
    return into


def build(out: Path, work: Path) -> Path:
    """Freeze the program into ``out/workstation``; returns the program's path."""
    staged = stage(REPO, work / "site")
    command = [
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--onedir", "--name", NAME,
        "--log-level", "WARN", "--distpath", str(out), "--workpath", str(work / "build"),
        "--specpath", str(work), "--paths", str(staged),
        # Modules imported by name at run time (the lazy API, the helper process, the CLI).
        "--collect-submodules", "workstation",
        "--hidden-import", "workstation_resources",
    ]  # fmt: skip
    for package in DATA_PACKAGES:
        command += ["--collect-data", package]
    for package in METADATA:
        command += ["--copy-metadata", package]
    for module in EXCLUDES:
        command += ["--exclude-module", module]
    command.append(str(REPO / "packaging" / "entry.py"))
    env = {**os.environ, "PYTHONPATH": str(staged)}  # the staged copy, not an editable one
    subprocess.run(command, check=True, env=env, cwd=work)
    program = out / NAME / NAME
    if not program.is_file():
        raise SystemExit(f"PyInstaller made no {program}")
    return program


def check(program: Path, seconds: float = 6.0) -> None:
    """Start the built program as a user would; raise SystemExit when it does not work."""
    scratch = Path(tempfile.mkdtemp(prefix="workstation-check-"))
    env = {
        **os.environ,
        "WORKSTATION_CONFIG_DIR": str(scratch / "config"),
        "WORKSTATION_STORE_DIR": str(scratch / "store"),
        "WORKSTATION_LOG_DIR": str(scratch / "logs"),
        "PYTHONPATH": "",  # nothing from a source tree or venv may help it
    }
    try:
        version = subprocess.run(
            [str(program), "--version"], capture_output=True, text=True, env=env, timeout=60
        )
        if version.returncode != 0 or not version.stdout.startswith(f"{NAME} "):
            raise SystemExit(f"{program} --version failed:\n{version.stdout}{version.stderr}")
        print(f"ok: {version.stdout.strip()}")
        print(f"ok: a search through the frozen C-FIND helper found {check_search(program)}")
        window = subprocess.Popen(
            [str(program), "--demo"], stderr=subprocess.PIPE, text=True, env=env, cwd=scratch
        )
        time.sleep(seconds)
        alive = window.poll() is None
        if alive:
            window.send_signal(signal.SIGTERM)
        _, stderr = window.communicate(timeout=30)
        failures = [
            m for m in ("traceback", "invalid choice", "could not load") if m in stderr.lower()
        ]
        if not alive or failures:
            state = "stayed up" if alive else f"ended with code {window.returncode}"
            raise SystemExit(f"{program} --demo {state}; its stderr:\n{stderr}")
        print(f"ok: the window ran on the demo archive for {seconds:g} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_search(program: Path) -> str:
    """Search the demo archive for SMITH* as the window does, through its C-FIND helper
    process started from the frozen program; returns what was found."""
    from workstation.cancel import CancelToken
    from workstation.demo.archive import demo_archive
    from workstation.dimse import find_helper
    from workstation.query import Query

    archive = demo_archive(seed=1).start()
    executable, sys.executable = sys.executable, str(program)
    try:
        helper = find_helper.FindProcess()  # starts `program -m workstation.dimse.find_helper`
    finally:
        sys.executable = executable
    try:
        query = Query.study(PatientName="SMITH*")
        batches = helper.study_rows(
            archive.node, query, calling_aet="CHECK", limit=None, cancel=CancelToken(),
            outcome=find_helper.FindOutcome(),
        )  # fmt: skip
        rows = [row for batch in batches for row in batch]
        process = helper._process
        if process is None or process.poll() is not None or not rows:  # no silent fallback
            raise SystemExit("the frozen C-FIND helper did not run, or found nothing")
        return f"{len(rows)} studies"
    finally:
        helper.close()
        archive.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO / "dist", help="where workstation/ goes (default dist/)"
    )
    parser.add_argument("--check", action="store_true", help="then start it as a user would")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long --check runs it")
    parser.add_argument(
        "--install-desktop",
        action="store_true",
        help="then add it to the desktop's menu (~/.local/share/applications and icons)",
    )
    args = parser.parse_args(argv)
    out = args.out.absolute()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="workstation-build-") as work:
        program = build(out, Path(work))
    print(f"built {program} in {time.monotonic() - started:.0f} s")
    if args.check:
        check(program, args.seconds)
    if args.install_desktop:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from install_desktop import install

        install(program)
    return 0


if __name__ == "__main__":
    sys.exit(main())
