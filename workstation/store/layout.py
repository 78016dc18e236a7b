"""Where an instance lives: ``<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``.

UIDs become path components, so they are validated before anything touches the disk: only
digits and dots, 1 to 64 characters, no empty component (which also rules out ``.`` and ``..``).
Leading zeros in a component are tolerated because real archives send them.

No hash prefix directory: a store holds one directory per study at the top, which every
current file system indexes (ext4 htree, NTFS, APFS), and a person reading the tree can find a
study by its UID. Hidden names (``.incoming``, ``.trash``, ``.workstation``) can never clash with
a UID, which cannot start with a dot.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from workstation.errors import InvalidInput

#: PS3.5 9.1 without the "no leading zero" rule: components of digits separated by dots.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
MAX_UID_LENGTH = 64
SUFFIX = ".dcm"


def validate_uid(uid: object, what: str = "UID") -> str:
    """Return ``uid`` if it is safe to use as a file name and valid enough for DICOM, or raise.

    Raises :class:`InvalidInput` for anything but 1-64 digits and dots with non-empty
    components: ``../../x``, ``1.2/3``, ``1.2\\x00``, ``""``, letters, and over 64 characters.
    """
    if not isinstance(uid, str):
        raise InvalidInput(f"invalid {what}: expected text, got {type(uid).__name__}")
    if not 0 < len(uid) <= MAX_UID_LENGTH or not _UID.fullmatch(uid):
        shown = uid if len(uid) <= 80 else uid[:77] + "..."
        raise InvalidInput(
            f"invalid {what} {shown!r}: a UID is 1 to 64 digits and dots, like 1.2.840.10008.1"
        )
    return uid


def instance_path(study_uid: str, series_uid: str, sop_instance_uid: str) -> PurePosixPath:
    """The path of an instance relative to the store root, after validating the three UIDs."""
    return PurePosixPath(
        validate_uid(study_uid, "Study Instance UID"),
        validate_uid(series_uid, "Series Instance UID"),
        validate_uid(sop_instance_uid, "SOP Instance UID") + SUFFIX,
    )


def series_path(study_uid: str, series_uid: str) -> PurePosixPath:
    return PurePosixPath(
        validate_uid(study_uid, "Study Instance UID"),
        validate_uid(series_uid, "Series Instance UID"),
    )


def study_path(study_uid: str) -> PurePosixPath:
    return PurePosixPath(validate_uid(study_uid, "Study Instance UID"))


def resolve_in_root(root: Path, relpath: PurePosixPath | str) -> Path:
    """``root / relpath``, refusing any path that is absolute, has ``..`` or leaves ``root``.

    The check resolves symbolic links, so a study directory linked to elsewhere is refused too.
    """
    rel = PurePosixPath(relpath)
    if rel.is_absolute() or not rel.parts or any(p in ("..", ".", "") for p in rel.parts):
        raise InvalidInput(f"refusing store path {str(rel)!r}: it must stay inside the store")
    full = root / rel
    if not full.resolve().is_relative_to(root.resolve()):
        raise InvalidInput(f"refusing store path {str(rel)!r}: it resolves outside the store")
    return full
