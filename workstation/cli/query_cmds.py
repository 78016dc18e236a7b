"""``workstation echo`` and ``workstation find`` (in the spirit of DCMTK findscu)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from workstation import settings as settings_mod
from workstation.cli.argtypes import positive_int

if TYPE_CHECKING:
    from workstation.nodes import RemoteNode
    from workstation.query import Query

# The parser is built for every command, so this module imports only what parsing needs; each
# command imports its machinery when it runs (``workstation echo`` never loads pydicom).
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def resolve_target(args: argparse.Namespace) -> tuple[RemoteNode, str]:
    """The node named on the command line, with ``--timeout`` applied, and our AE title."""
    settings = settings_mod.load()
    node = settings.node(args.target)
    if args.timeout is not None:
        node = node.with_options(dimse_timeout=args.timeout, connect_timeout=args.timeout)
    from workstation.cli.tls_args import apply_client

    node = apply_client(node, args)
    return node, args.aet or settings.ae_title


def run_echo(args: argparse.Namespace) -> int:
    from workstation.dimse.echo import echo

    node, aet = resolve_target(args)
    print(echo(node, calling_aet=aet))
    return 0


def add_query_arguments(parser: argparse.ArgumentParser, *, worklist: bool = True) -> None:
    """Model, level, keys and query file: shared by find, move and get."""
    models = parser.add_mutually_exclusive_group()
    models.add_argument(
        "-P",
        dest="model",
        action="store_const",
        const="PATIENT_ROOT",
        help="Patient Root information model",
    )
    models.add_argument(
        "-S",
        dest="model",
        action="store_const",
        const="STUDY_ROOT",
        help="Study Root information model (default)",
    )
    if worklist:
        models.add_argument(
            "-W",
            dest="model",
            action="store_const",
            const="WORKLIST",
            help="Modality Worklist information model",
        )
    parser.add_argument(
        "-L",
        "--level",
        type=str.upper,
        choices=LEVELS,
        help="query/retrieve level (default: PATIENT with -P, else STUDY)",
    )
    parser.add_argument(
        "-q",
        "--key",
        dest="keys",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="a matching or return key: keyword or tag, Seq.Key for sequences; repeatable",
    )
    parser.add_argument(
        "query_file", nargs="?", help="a DICOM file whose attributes start the query"
    )


def build_query(args: argparse.Namespace, *, defaults: bool = True) -> Query:
    from workstation.query import InformationModel, Level, Query

    model = InformationModel[args.model or "STUDY_ROOT"]
    level = None
    if model is not InformationModel.WORKLIST:
        default = Level.PATIENT if model is InformationModel.PATIENT_ROOT else Level.STUDY
        level = Level(args.level) if args.level else default
    return Query.build(model, level, args.keys, args.query_file, defaults=defaults)


def add_find_arguments(parser: argparse.ArgumentParser) -> None:
    add_query_arguments(parser)
    parser.add_argument(
        "--no-default-keys",
        action="store_true",
        help="send only the keys given (no default return keys for the level)",
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="stop after N matches (sends C-CANCEL)",
    )
    parser.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="leave out repeated matches (same UID) and matches whose values contradict the "
        "query, for a PACS that ignores a key (e.g. ModalitiesInStudy) or answers once per "
        "instance; --no-refine prints exactly what the PACS sent (default: refine)",
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one DICOM JSON object per line")
    fmt.add_argument("--csv", action="store_true", help="comma-separated values with a header")


def run_find(args: argparse.Namespace) -> int:
    from workstation.cli.output import CsvWriter, Flusher, JsonLinesWriter, write_table
    from workstation.dimse.find import find

    node, aet = resolve_target(args)
    query = build_query(args, defaults=not args.no_default_keys)
    results = find(node, query, calling_aet=aet, limit=args.limit, refine=args.refine)
    # The printers read each match's raw bytes: no pydicom Dataset per match.
    if args.json:
        with JsonLinesWriter() as lines:
            for match in results.raw():
                lines.write(match)
    elif args.csv:
        writer = CsvWriter()
        flush = Flusher(sys.stdout)
        for match in results.raw():
            writer.write(match)
            flush()
    else:
        write_table(list(results.raw()))
    noun = "match" if results.count == 1 else "matches"
    summary = f"{results.count} {noun} from {node} in {results.seconds:.2f} s"
    if results.limited:
        summary += f" (stopped at --limit {args.limit})"
    if results.duplicates:
        summary += f"; {results.duplicates} repeated matches left out"
    if results.dropped:
        summary += (
            f"; {results.dropped} matches that contradict the query left out "
            "(--no-refine shows them)"
        )
    if (not args.json and not args.csv) or sys.stderr.isatty():
        print(summary, file=sys.stderr)
    if not results.count and results.charset and not results.cancelled:
        print(charset_hint(node, results.charset), file=sys.stderr)
    return 0


def charset_hint(node: RemoteNode, charset: str) -> str:
    """One line for a query with non-ASCII text that matched nothing: the character set it was
    sent in may not be the one the PACS holds its names in (and matches bytes against)."""
    from workstation.nodes import CHARSET_NAMES, charset_label, other_charset

    other = other_charset(charset)
    return (
        f"no match; the query was sent as {charset_label(charset)}: if {node.label} holds "
        f"{CHARSET_NAMES[other]} names, set its character set with `workstation nodes add "
        f'{node.name or "NAME"} {node} --charset "{other}"`'
    )
