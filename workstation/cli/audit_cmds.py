"""``workstation audit``: list the audit trail, or write it as DICOM audit messages (XML).

Reads ``<store>/.workstation/audit.sqlite`` directly, so it works while the window has the
store open. The listing shows patient identity (it is the user's own audit); nothing of it is
logged.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from workstation import settings as settings_mod
from workstation.errors import InvalidInput, StoreError


def _when(text: str) -> date | datetime:
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from None


def add_parser(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    from workstation.audit import ACTIONS, OUTCOMES

    settings = settings_mod.load()
    p = sub.add_parser(
        "audit",
        help="list the audit trail: retrieves, sends, exports, imports, deletions, pushes",
        description="List who retrieved, sent, exported, imported, deleted or received which "
        "study, newest first; --xml writes the selection as DICOM audit messages (PS3.15 A.5).",
    )
    add_common(p)
    p.add_argument("--since", type=_when, metavar="DATE", help="from this day (YYYY-MM-DD)")
    p.add_argument("--until", type=_when, metavar="DATE", help="through this day")
    p.add_argument("--action", choices=ACTIONS, help="only this action")
    p.add_argument("--outcome", choices=OUTCOMES, help="only this outcome")
    p.add_argument("--node", metavar="NODE", help="only this node (AET@HOST:PORT, AE or host)")
    p.add_argument("--study", metavar="UID", help="only events naming this Study Instance UID")
    p.add_argument("--user", metavar="NAME", help="only this OS user")
    p.add_argument("--limit", type=int, metavar="N", help="at most N events")
    p.add_argument("--xml", metavar="FILE", help="write the events as DICOM audit messages")
    p.add_argument("--json", action="store_true", help="print the events as JSON")
    p.add_argument(
        "--store",
        default=None,
        metavar="DIR",
        help=f"the local store folder (default: {settings.store_dir})",
    )
    p.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from workstation.audit import AuditFilter, trail_for
    from workstation.audit_xml import check_xml, to_xml

    root = Path(args.store or settings_mod.load().store_dir).expanduser()
    if args.store and not root.is_dir():
        raise InvalidInput(f"no store folder {root}: check --store")
    filters = AuditFilter(
        since=args.since,
        until=args.until,
        action=args.action,
        outcome=args.outcome,
        node=args.node,
        study_uid=args.study,
        user=args.user,
        limit=args.limit,
    )
    try:
        events = trail_for(root).query(filters)
    except Exception as exc:  # sqlite3.Error, OSError: one line
        raise StoreError(f"cannot read the audit trail of {root}: {exc}") from None
    if args.xml:
        data = to_xml(events)
        problems = check_xml(data)
        if problems:  # pragma: no cover - to_xml always writes what check_xml accepts
            raise StoreError(f"the audit XML is not valid: {problems[0]}")
        target = Path(args.xml).expanduser()
        try:
            target.write_bytes(data)
        except OSError as exc:
            raise InvalidInput(f"cannot write {target}: {exc.strerror or exc}") from None
        print(f"wrote {len(events)} audit message(s) to {target}", file=sys.stderr)
        return 0
    if args.json:
        json.dump([e.to_json() for e in events], sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0
    if not events:
        print("no audit events", file=sys.stderr)
        return 0
    for e in events:
        studies = ",".join(e.study_uids[:3]) + ("…" if len(e.study_uids) > 3 else "")
        print(
            f"{e.time.astimezone():%Y-%m-%d %H:%M:%S}  {e.user:<10} {e.action:<8} "
            f"{e.outcome:<9} {e.instances:>6} ok {e.failed:>4} failed  "
            f"{e.node or e.detail or '-'}  {studies or '-'}"
        )
    return 0
