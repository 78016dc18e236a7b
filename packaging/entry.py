"""The packaged application's entry point (``packaging/build.py`` freezes this file).

``workstation ARGS`` runs the command line as the installed script does. In the frozen
application ``sys.executable`` is this program, not a Python, yet the window starts helpers
with it the way it would start Python: ``sys.executable -m workstation.dimse.find_helper`` (the
C-FIND helper process) and ``sys.executable -I -S -c CODE`` (the crash log's copier). So the
entry point also understands those two forms, for our own modules and code only.
"""

from __future__ import annotations

import runpy
import sys

#: Interpreter options the window passes that mean nothing to a frozen program.
_IGNORED_FLAGS = {"-I", "-S", "-E", "-s", "-u", "-B"}


def main(argv: list[str]) -> int:
    args = list(argv)
    while args and args[0] in _IGNORED_FLAGS:
        args.pop(0)
    if len(args) >= 2 and args[0] == "-m" and args[1].startswith("workstation."):
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    if len(args) >= 2 and args[0] == "-c" and len(args) < len(argv):  # only after -I/-S
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
        return 0
    from workstation.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
