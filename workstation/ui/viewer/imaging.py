"""Decoding one frame of a stored image, and showing it through a window: no Qt here.

A :class:`Frame` holds what the viewer needs to redraw at any window without decoding again:
the grayscale values after the Modality LUT (RescaleSlope/Intercept, PS3.3 C.11.1, so CT is in
HU), or 8-bit RGB for colour (pydicom converts YBR to RGB; PALETTE COLOR goes through its
LUT). :func:`render` applies the linear VOI function of PS3.3 C.11.2.1.2.1 and inverts
MONOCHROME1. Decoding runs in the viewer's worker threads; every function here is safe there.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, pixel_array
from pydicom.uid import UID

log = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: The install hint shown for a compressed image without a decoder.
CODECS_HINT = "install workstation[codecs] to view it"

#: CT window presets: name → (center, width) in HU.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "Lung": (-600.0, 1500.0),
    "Bone": (300.0, 1500.0),
    "Brain": (40.0, 80.0),
    "Abdomen": (40.0, 400.0),
}

#: Header attributes the corner text shows.
INFO_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "InstanceNumber",
    "SliceLocation",
    "SliceThickness",
    "InstitutionName",
)


class FrameUnavailable(Exception):
    """The file holds no frame we can show; ``str(exc)`` is the text to show instead."""


@dataclass(frozen=True)
class Frame:
    """One decoded image, ready to be windowed."""

    #: rows × columns float32 modality values, or rows × columns × 3 uint8 RGB.
    pixels: np.ndarray
    #: MONOCHROME1: the lowest value is shown white.
    invert: bool = False
    #: The file's first Window Center/Width, or None.
    window: tuple[float, float] | None = None
    #: The lowest and highest value (the window when the file has none).
    data_range: tuple[float, float] = (0.0, 1.0)
    info: dict[str, str] = field(default_factory=dict)

    @property
    def color(self) -> bool:
        return self.pixels.ndim == 3

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)

    @property
    def default_window(self) -> tuple[float, float]:
        """The file's window, else one spanning the data range."""
        if self.window is not None:
            return self.window
        low, high = self.data_range
        return (low + high) / 2, max(high - low, 1.0)


def read_header(path: str | os.PathLike[str]) -> Dataset:
    """The data set without its pixel data (raises :class:`FrameUnavailable`)."""
    try:
        return dcmread(os.fspath(path), stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise FrameUnavailable(f"Not a readable DICOM file: {exc}") from exc


def frame_count(path: str | os.PathLike[str]) -> int:
    """How many frames the file holds (1 when it does not say); 0 when it is unreadable."""
    try:
        ds = dcmread(os.fspath(path), stop_before_pixels=True, specific_tags=["NumberOfFrames"])
    except Exception:
        return 0
    return max(_int(ds.get("NumberOfFrames"), 1), 1)


def decode_frame(path: str | os.PathLike[str], index: int = 0) -> Frame:
    """Frame ``index`` (0-based) of the file at ``path``.

    Raises :class:`FrameUnavailable` with the text to show when there is no pixel data, or it
    cannot be decoded (e.g. "This image is JPEG 2000 compressed: install workstation[codecs]
    to view it").
    """
    try:
        ds = dcmread(os.fspath(path), defer_size=1024)
    except Exception as exc:
        raise FrameUnavailable(f"Not a readable DICOM file: {exc}") from exc
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise FrameUnavailable("This file holds no image")
    frames = max(_int(ds.get("NumberOfFrames"), 1), 1)
    if not 0 <= index < frames:
        raise FrameUnavailable(f"The file has {frames} frames, not {index + 1}")
    missing = missing_decoder(ds)
    if missing:
        raise FrameUnavailable(missing)
    try:
        arr = pixel_array(os.fspath(path), index=index if frames > 1 else None)
    except Exception as exc:
        raise FrameUnavailable(_failure(ds, exc)) from exc
    return to_frame(arr, ds)


def to_frame(arr: np.ndarray, ds: Dataset) -> Frame:
    """A :class:`Frame` from the decoded pixel array of one frame of ``ds``."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    info = _info(ds)
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # pydicom gives YBR as RGB already
        rgb = arr[..., :3]
        if rgb.dtype != np.uint8:
            top = float(rgb.max()) if rgb.size else 0.0
            scale = 255.0 / top if top > 255 else 1.0
            rgb = np.clip(np.rint(rgb.astype(np.float32) * scale), 0, 255).astype(np.uint8)
        return Frame(np.ascontiguousarray(rgb), info=info, data_range=(0.0, 255.0))
    if arr.ndim != 2:
        raise FrameUnavailable(f"Unsupported image layout {arr.shape}")
    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    return Frame(
        np.ascontiguousarray(values),
        invert=photometric == "MONOCHROME1",
        window=file_window(ds),
        data_range=(low, high),
        info=info,
    )


def render(frame: Frame, center: float, width: float) -> np.ndarray:
    """8-bit pixels of ``frame`` shown through the window (rows × columns [× 3], uint8).

    PS3.3 C.11.2.1.2.1: below ``c - 0.5 - (w - 1) / 2`` black, above ``c - 0.5 + (w - 1) / 2``
    white, linear in between; MONOCHROME1 inverted. Colour images are shown as they are.
    """
    if frame.color:
        return frame.pixels
    width = max(float(width), 1.0)
    scale = np.float32(255.0 / max(width - 1.0, 1e-3))
    offset = np.float32((center - 0.5) - (width - 1.0) / 2)
    out = (frame.pixels - offset) * scale
    np.clip(out, 0.0, 255.0, out=out)
    gray: np.ndarray = np.rint(out).astype(np.uint8)
    if frame.invert:
        np.subtract(255, gray, out=gray)
    return gray


def file_window(ds: Dataset) -> tuple[float, float] | None:
    """The first Window Center/Width pair (PS3.3 C.11.2), or None when absent or invalid."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c = float(center[0] if isinstance(center, MultiValue | list) else center)
        w = float(width[0] if isinstance(width, MultiValue | list) else width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if w >= 1 else None


def compression_name(ts: UID) -> str:
    """ "JPEG 2000", "JPEG-LS", "RLE"... for a compressed transfer syntax."""
    keyword = ts.keyword
    for prefix, name in (
        ("HTJPEG2000", "HTJ2K"),
        ("JPEG2000", "JPEG 2000"),
        ("JPEGLS", "JPEG-LS"),
        ("JPEG", "JPEG"),
        ("RLE", "RLE"),
        ("Deflated", "Deflate"),
        ("MPEG", "MPEG video"),
        ("HEVC", "HEVC video"),
    ):
        if keyword.startswith(prefix):
            return name
    return ts.name or str(ts)


def missing_decoder(ds: Dataset) -> str:
    """The message to show when the image is compressed and no decoder is installed, else ''."""
    ts = _transfer_syntax(ds)
    if not ts or not ts.is_compressed:
        return ""
    try:
        available = get_decoder(ts).is_available
    except Exception:  # no decoder class at all for this transfer syntax
        available = False
    if available:
        return ""
    return f"This image is {compression_name(ts)} compressed: {CODECS_HINT}"


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    return UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")


def _failure(ds: Dataset, exc: Exception) -> str:
    ts = _transfer_syntax(ds)
    log.info("cannot decode pixel data: %s", exc)
    if ts and ts.is_compressed:
        return f"This image is {compression_name(ts)} compressed and could not be decoded: {exc}"
    return f"Cannot decode the image: {exc}"


def _info(ds: Dataset) -> dict[str, str]:
    out = {}
    for keyword in INFO_KEYWORDS:
        value = ds.get(keyword)
        if value is not None and str(value) != "":
            out[keyword] = str(value)
    return out


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
