"""Synthetic anatomy for the demo archive: images a clinician recognises, made in milliseconds.

Each body region is a short list of ellipsoids (a 3D Shepp-Logan in spirit), each of one
tissue, painted in order so later ones overwrite earlier ones. The same model gives every view
the demo series ask for:

- a slice (axial, coronal or sagittal) at a position that moves along the series, so
  scrolling through it shows the anatomy change;
- a projection along y or x (CR/DX radiographs, the CT topogram), from the exact chord length
  of every ellipsoid along each ray;
- an ultrasound frame (B-mode speckle over the tissues' echogenicity, in a fan for the
  abdomen and a rectangle for the thyroid).

Tissues carry CT numbers (HU), T1/T2/PD-FS signal levels, an X-ray attenuation and an echo
level. Pixels are deterministic (noise comes from seeded generators) and cached, since many
demo series share a view. Qt-free; numpy only.
"""

from __future__ import annotations

import math
import zlib
from functools import cache, lru_cache
from typing import NamedTuple

import numpy as np

# tissue: (HU, T1, T2, PD fat-saturated, X-ray attenuation per unit length, echo level)
_TISSUES: dict[str, tuple[float, float, float, float, float, float]] = {
    "air": (-1000, 0, 0, 0, 0.0, 0.9),
    "lung": (-850, 30, 30, 30, 0.12, 0.9),
    "fat": (-100, 900, 650, 90, 0.85, 0.55),
    "soft": (45, 380, 260, 260, 1.0, 0.35),
    "blood": (45, 120, 160, 160, 1.05, 0.03),
    "contrast": (190, 120, 160, 160, 1.2, 0.03),
    "liver": (60, 520, 220, 200, 1.05, 0.5),
    "spleen": (52, 420, 380, 360, 1.05, 0.45),
    "kidney": (140, 450, 460, 420, 1.05, 0.3),
    "fluid": (5, 150, 1300, 1200, 1.0, 0.02),
    "csf": (8, 150, 1300, 1200, 1.0, 0.02),
    "grey": (40, 480, 720, 650, 1.0, 0.3),
    "white": (27, 650, 460, 450, 1.0, 0.3),
    "bone": (1100, 40, 40, 40, 2.8, 1.0),
    "marrow": (260, 760, 460, 130, 1.5, 0.8),
    "cartilage": (100, 420, 620, 680, 1.05, 0.1),
    "disc": (80, 400, 1050, 950, 1.05, 0.2),
    "thyroid": (90, 460, 420, 400, 1.0, 0.75),
    "lesion": (72, 520, 300, 320, 1.02, 0.2),
}
_NAMES = tuple(_TISSUES)
_INDEX = {name: i for i, name in enumerate(_NAMES)}
_PROPERTIES = np.array([_TISSUES[name] for name in _NAMES], dtype=np.float32)
HU, T1, T2, PDFS, XRAY, ECHO = range(6)


class Ellipsoid(NamedTuple):
    """A tissue filling ``((u/a)² + (v/b)² + ((z-cz)/c)² <= 1)``, (u, v) = (x, y) rotated."""

    tissue: str
    cx: float
    cy: float
    cz: float
    a: float
    b: float
    c: float
    angle: float = 0.0  # degrees about the z axis
    #: "slice" or "projection" for a part only one kind of view shows ("" for both).
    only: str = ""


class Model(NamedTuple):
    """A body region: x patient right→left, y anterior→posterior, z inferior→superior."""

    name: str
    ellipsoids: tuple[Ellipsoid, ...]
    #: Half-extents of the field of view along x, y, z.
    extent: tuple[float, float, float]
    #: The range along each axis that a series of slices covers.
    sweep: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


def _e(
    tissue: str,
    cx: float,
    cy: float,
    cz: float,
    a: float,
    b: float,
    c: float,
    angle: float = 0.0,
    only: str = "",
) -> Ellipsoid:
    return Ellipsoid(tissue, cx, cy, cz, a, b, c, angle, only)


def _mirror(*parts: Ellipsoid) -> list[Ellipsoid]:
    """Each ellipsoid and its left-right mirror image."""
    return [e for p in parts for e in (p, p._replace(cx=-p.cx, angle=-p.angle))]


def _rib_hoops(levels: tuple[float, ...]) -> list[Ellipsoid]:
    """Ribs as radiographs show them: thin bony hoops around the chest wall."""
    out = []
    for z in levels:
        out += [
            _e("bone", 0, 0.02, z, 0.85, 0.55, 0.035, only="projection"),
            _e("soft", 0, 0.02, z, 0.81, 0.51, 0.032, only="projection"),
        ]
    return out


def _scatter(
    seed: int, tissue: str, count: int, box: tuple[float, ...], size: tuple[float, float], c: float
) -> list[Ellipsoid]:
    rng = np.random.default_rng(seed)
    x0, x1, y0, y1, z0, z1 = box
    out = []
    for _ in range(count):
        r = float(rng.uniform(*size))
        out.append(
            _e(
                tissue,
                float(rng.uniform(x0, x1)),
                float(rng.uniform(y0, y1)),
                float(rng.uniform(z0, z1)),
                r,
                r * float(rng.uniform(0.8, 1.3)),
                c * float(rng.uniform(0.6, 1.4)),
                float(rng.uniform(0, 180)),
            )
        )
    return out


def _head() -> Model:
    parts = [
        _e("soft", 0, 0, 0, 0.72, 0.92, 0.95),
        _e("soft", 0, -0.5, -0.68, 0.55, 0.42, 0.35),  # the face
        _e("bone", 0, 0, 0, 0.69, 0.89, 0.92),
        _e("csf", 0, 0, 0, 0.655, 0.85, 0.88),
        _e("grey", 0, 0, 0, 0.635, 0.83, 0.86),
        _e("white", 0, 0.02, 0.08, 0.5, 0.66, 0.68),
        *_mirror(_e("grey", 0.22, 0.0, -0.05, 0.09, 0.16, 0.16, 10)),  # basal ganglia
        *_mirror(_e("csf", 0.1, -0.06, 0.12, 0.07, 0.3, 0.26, 14)),  # lateral ventricles
        _e("csf", 0, 0.06, -0.08, 0.018, 0.1, 0.12),  # third ventricle
        _e("bone", 0, 0.35, -0.55, 0.5, 0.35, 0.07),  # skull base
        _e("grey", 0, 0.48, -0.66, 0.42, 0.28, 0.22),  # cerebellum
        _e("csf", 0, 0.36, -0.6, 0.04, 0.05, 0.08),  # fourth ventricle
        *_mirror(_e("fat", 0.3, -0.74, -0.62, 0.17, 0.16, 0.14)),  # orbits
        *_mirror(_e("fluid", 0.3, -0.78, -0.62, 0.12, 0.12, 0.12)),  # globes
        _e("air", 0, -0.8, -0.8, 0.08, 0.16, 0.22),  # nasal cavity
        *_mirror(_e("air", 0.3, -0.55, -0.88, 0.14, 0.12, 0.12)),  # maxillary sinuses
        _e("lesion", 0.36, 0.22, 0.3, 0.09, 0.08, 0.08),  # a small left haematoma
    ]
    return Model(
        "head",
        tuple(parts),
        (1.0, 1.0, 1.0),
        ((-0.5, 0.5), (-0.6, 0.6), (-0.4, 0.75)),
    )


def _chest() -> Model:
    parts = [
        _e("fat", 0, 0, 0, 0.92, 0.62, 1.5),
        _e("soft", 0, 0, 0, 0.86, 0.56, 1.5),
        *_mirror(_e("bone", 0.62, 0.4, 0.45, 0.22, 0.035, 0.3, -35)),  # scapulae
        *_mirror(
            *(
                _e("bone", 0.8 * math.cos(t), 0.52 * math.sin(t), z, 0.04, 0.03, 0.2, only="slice")
                for t, z in ((-2.4, 0.5), (-1.9, -0.2), (-1.2, 0.1), (-0.5, -0.4), (0.2, 0.3))
            )
        ),  # ribs crossing the axial plane
        *_rib_hoops((-0.62, -0.42, -0.22, -0.02, 0.18, 0.38, 0.58, 0.78)),
        *_mirror(_e("lung", 0.42, -0.02, 0.1, 0.33, 0.43, 0.95)),
        _e("blood", 0.12, -0.14, -0.4, 0.33, 0.3, 0.42, -20),  # heart
        _e("soft", 0.14, -0.16, -0.42, 0.29, 0.26, 0.38, -20),  # myocardium
        _e("blood", 0.14, -0.16, -0.42, 0.22, 0.19, 0.32, -20),  # cavities
        _e("blood", 0.02, -0.1, 0.35, 0.08, 0.08, 0.3),  # ascending aorta
        _e("blood", 0.12, 0.28, 0.0, 0.07, 0.07, 1.5),  # descending aorta
        _e("air", 0, -0.1, 0.6, 0.06, 0.06, 0.6),  # trachea
        _e("bone", 0, 0.42, 0, 0.115, 0.105, 1.5),  # vertebra
        _e("marrow", 0, 0.42, 0, 0.1, 0.09, 1.5),
        _e("bone", 0, 0.62, 0, 0.07, 0.06, 1.5),  # posterior elements
        _e("csf", 0, 0.56, 0, 0.04, 0.04, 1.5),  # spinal canal
        _e("bone", 0, -0.56, 0.1, 0.07, 0.035, 0.85),  # sternum
        *_mirror(_e("bone", 0.34, -0.45, 0.9, 0.34, 0.035, 0.035, -15)),  # clavicles
        *_scatter(11, "blood", 70, (-0.72, 0.72, -0.4, 0.35, -0.8, 0.9), (0.008, 0.022), 0.25),
    ]
    body = [p for p in parts if p.tissue != "blood" or p.a > 0.03]
    vessels = [
        v for v in parts if v.tissue == "blood" and v.a <= 0.03 and abs(abs(v.cx) - 0.42) < 0.3
    ]
    return Model(
        "chest",
        (*body, *vessels),
        (1.0, 1.0, 1.1),
        ((-0.5, 0.5), (-0.35, 0.35), (-0.7, 0.8)),
    )


def _abdomen() -> Model:
    parts = [
        _e("fat", 0, 0, 0, 0.95, 0.7, 1.5),
        _e("soft", 0, 0, 0, 0.9, 0.65, 1.5),
        _e("fat", 0, 0, 0, 0.83, 0.58, 1.5),
        _e("liver", -0.38, -0.05, 0.55, 0.42, 0.45, 0.6, 10),
        _e("fluid", -0.25, -0.22, 0.25, 0.07, 0.1, 0.12),  # gallbladder
        _e("spleen", 0.56, 0.2, 0.6, 0.17, 0.22, 0.35, -20),
        _e("soft", 0.3, -0.25, 0.5, 0.24, 0.18, 0.3),  # stomach
        _e("air", 0.3, -0.36, 0.55, 0.16, 0.06, 0.2),
        _e("soft", 0.05, 0.06, 0.22, 0.26, 0.05, 0.08, -15),  # pancreas
        *_mirror(_e("kidney", 0.38, 0.3, -0.1, 0.13, 0.17, 0.42, 25)),
        *_mirror(_e("fat", 0.32, 0.28, -0.1, 0.045, 0.06, 0.15, 25)),  # renal sinus
        *_mirror(_e("soft", 0.2, 0.4, -0.5, 0.09, 0.09, 0.7)),  # psoas
        *_scatter(5, "soft", 14, (-0.5, 0.5, -0.45, 0.1, -1.0, 0.25), (0.08, 0.12), 0.3),
        *_scatter(6, "air", 6, (-0.45, 0.45, -0.45, 0.05, -1.0, 0.2), (0.03, 0.06), 0.1),
        _e("contrast", 0.06, 0.2, 0, 0.06, 0.06, 1.5),  # aorta
        _e("blood", -0.1, 0.16, 0.2, 0.07, 0.06, 1.0),  # inferior vena cava
        _e("bone", 0, 0.42, 0, 0.13, 0.12, 1.5),  # vertebra
        _e("marrow", 0, 0.42, 0, 0.115, 0.105, 1.5),
        _e("bone", 0, 0.66, 0, 0.05, 0.07, 1.5),
        _e("csf", 0, 0.58, 0, 0.045, 0.045, 1.5),
        *_mirror(_e("bone", 0.55, 0.3, -0.95, 0.25, 0.08, 0.3, 40)),  # iliac wings
    ]
    return Model("abdomen", tuple(parts), (1.0, 1.0, 1.1), ((-0.5, 0.5), (-0.3, 0.4), (-0.8, 0.9)))


def _knee() -> Model:
    parts = [
        _e("fat", 0, 0, 0, 0.72, 0.68, 1.5),
        _e("soft", 0, 0.05, 0, 0.64, 0.58, 1.5),
        _e("fluid", 0, -0.42, 0.32, 0.32, 0.07, 0.22),  # suprapatellar effusion
        _e("bone", 0, 0, 0.75, 0.3, 0.27, 0.7),  # femoral shaft
        _e("marrow", 0, 0, 0.75, 0.26, 0.23, 0.68),
        *_mirror(_e("cartilage", 0.2, 0.06, 0.1, 0.22, 0.32, 0.26)),  # condyles
        *_mirror(_e("bone", 0.2, 0.06, 0.1, 0.2, 0.3, 0.24)),
        *_mirror(_e("marrow", 0.2, 0.06, 0.1, 0.18, 0.28, 0.22)),
        _e("cartilage", 0, 0.05, -0.28, 0.47, 0.4, 0.2),
        _e("bone", 0, 0.05, -0.5, 0.45, 0.38, 0.4),  # tibia
        _e("marrow", 0, 0.05, -0.5, 0.42, 0.35, 0.38),
        _e("bone", 0.42, 0.3, -0.7, 0.1, 0.1, 0.3),  # fibula
        _e("cartilage", 0, -0.58, 0.25, 0.24, 0.1, 0.21),
        _e("bone", 0, -0.62, 0.25, 0.22, 0.08, 0.2),  # patella
        _e("marrow", 0, -0.62, 0.25, 0.19, 0.06, 0.17),
        _e("soft", 0, -0.56, -0.3, 0.08, 0.03, 0.3),  # patellar tendon
        _e("blood", 0.05, 0.5, 0, 0.05, 0.05, 1.5),  # popliteal artery
    ]
    return Model("knee", tuple(parts), (1.0, 1.0, 1.0), ((-0.4, 0.4), (-0.4, 0.4), (-0.6, 0.6)))


def _lumbar_spine() -> Model:
    parts = [
        _e("fat", 0, 0, 0, 0.95, 0.95, 1.5),
        _e("soft", 0, -0.2, 0, 0.85, 0.7, 1.5),
        *_mirror(_e("soft", 0.3, 0.55, 0, 0.22, 0.25, 1.5)),  # paraspinal muscles
        _e("csf", 0, 0.42, 0, 0.1, 0.09, 1.5),  # thecal sac
        _e("white", 0, 0.42, 1.0, 0.04, 0.04, 0.35),  # conus
    ]
    for level in range(-2, 3):
        z = level * 0.38
        parts += [
            _e("bone", 0, 0.1, z, 0.3, 0.27, 0.15),
            _e("marrow", 0, 0.1, z, 0.28, 0.25, 0.135),
            _e("bone", 0, 0.66, z + 0.05, 0.22, 0.13, 0.12),  # posterior elements
            _e("disc", 0, 0.1, z + 0.19, 0.29, 0.26, 0.035),
        ]
    return Model("lspine", tuple(parts), (1.0, 1.0, 1.0), ((-0.25, 0.25), (0.0, 0.3), (-0.6, 0.6)))


def _neck() -> Model:
    parts = [
        _e("fat", 0, 0, 0, 0.92, 0.85, 1.5),
        _e("soft", 0, 0.05, 0, 0.86, 0.78, 1.5),
        _e("cartilage", 0, -0.12, 0, 0.17, 0.17, 1.5),
        _e("air", 0, -0.1, 0, 0.13, 0.13, 1.5),  # trachea
        *_mirror(_e("thyroid", 0.3, -0.2, 0, 0.16, 0.22, 0.5, 20)),
        _e("thyroid", 0, -0.36, 0, 0.2, 0.05, 0.3),  # isthmus
        *_mirror(_e("soft", 0.2, -0.55, 0, 0.2, 0.05, 1.5)),  # strap muscles
        *_mirror(_e("blood", 0.6, -0.05, 0, 0.09, 0.09, 1.5)),  # carotids
        *_mirror(_e("blood", 0.74, -0.16, 0, 0.12, 0.08, 1.5)),  # jugular veins
        _e("bone", 0, 0.45, 0, 0.16, 0.14, 1.5),
        _e("fluid", 0.38, -0.15, 0.05, 0.05, 0.05, 0.05),  # a thyroid cyst
    ]
    return Model("neck", tuple(parts), (1.0, 1.0, 1.0), ((-0.4, 0.4), (-0.3, 0.3), (-0.4, 0.4)))


def _hand() -> Model:
    parts = [_e("soft", 0.05, 0, -0.35, 0.42, 0.06, 0.4)]
    for x, top in ((-0.3, 0.55), (-0.1, 0.7), (0.1, 0.66), (0.3, 0.5)):
        parts.append(_e("soft", x, 0, (top + 0.02) / 2, 0.08, 0.045, (top - 0.02) / 2 + 0.05))
    parts.append(_e("soft", -0.55, 0, -0.2, 0.09, 0.05, 0.32))  # thumb
    parts.append(_e("soft", 0, 0, -0.95, 0.36, 0.08, 0.25))  # wrist
    for x, top in ((-0.3, 0.55), (-0.1, 0.7), (0.1, 0.66), (0.3, 0.5)):
        parts += [
            _e("bone", x, 0, -0.25, 0.04, 0.035, 0.2),
            _e("marrow", x, 0, -0.25, 0.022, 0.02, 0.18),
        ]
        length = top + 0.02
        for k, share in enumerate((0.45, 0.32, 0.23)):
            start = 0.0 + sum((0.45, 0.32, 0.23)[:k]) * length
            half = share * length / 2 - 0.015
            width, middle = 0.033 - 0.005 * k, start + share * length / 2
            parts += [
                _e("bone", x, 0, middle, width, width, half),
                _e("marrow", x, 0, middle, width * 0.55, width * 0.55, half * 0.9),
            ]
    parts += [
        _e("bone", -0.5, 0, -0.33, 0.04, 0.035, 0.13),
        _e("bone", -0.56, 0, -0.08, 0.035, 0.03, 0.1),
        _e("bone", -0.6, 0, 0.08, 0.03, 0.03, 0.06),
    ]
    for k in range(8):
        parts.append(
            _e("bone", -0.24 + 0.16 * (k % 4), 0, -0.56 - 0.12 * (k // 4), 0.065, 0.05, 0.05)
        )
    parts += [
        _e("bone", -0.12, 0, -1.05, 0.12, 0.07, 0.25),
        _e("bone", 0.22, 0, -1.05, 0.07, 0.06, 0.25),
    ]
    return Model("hand", tuple(parts), (1.0, 1.0, 1.15), ((-0.1, 0.1),) * 3)


def _pelvis() -> Model:
    parts = [
        _e("fat", 0, 0, 0, 0.98, 0.7, 1.5),
        _e("soft", 0, 0, 0, 0.9, 0.62, 1.5),
        *_mirror(_e("bone", 0.45, 0.12, 0.35, 0.34, 0.07, 0.36, 30)),  # iliac wings
        _e("bone", 0, 0.35, 0.3, 0.18, 0.1, 0.32),  # sacrum
        _e("bone", 0, 0.1, 0.85, 0.16, 0.13, 0.12),  # L5
        *_mirror(_e("bone", 0.48, 0.05, -0.3, 0.13, 0.13, 0.13)),  # femoral heads
        *_mirror(_e("bone", 0.6, 0.05, -0.42, 0.06, 0.06, 0.16)),  # necks
        *_mirror(_e("bone", 0.68, 0.05, -0.9, 0.1, 0.1, 0.42)),  # shafts
        *_mirror(_e("marrow", 0.68, 0.05, -0.9, 0.06, 0.06, 0.4)),
        *_mirror(_e("bone", 0.22, -0.1, -0.48, 0.2, 0.05, 0.06)),  # pubic rami
        *_mirror(_e("bone", 0.3, 0.1, -0.62, 0.14, 0.06, 0.07)),  # ischia
        *_scatter(9, "air", 8, (-0.45, 0.45, -0.4, 0.1, 0.2, 0.8), (0.03, 0.07), 0.06),
    ]
    return Model("pelvis", tuple(parts), (1.05, 1.0, 1.15), ((-0.4, 0.4),) * 3)


@cache
def model(name: str) -> Model:
    """The model of one body region: head, chest, abdomen, knee, lspine, neck, hand, pelvis."""
    makers = {
        "head": _head,
        "chest": _chest,
        "abdomen": _abdomen,
        "knee": _knee,
        "lspine": _lumbar_spine,
        "neck": _neck,
        "hand": _hand,
        "pelvis": _pelvis,
    }
    return makers[name]()


_BODY_PARTS = {
    "HEAD": "head",
    "BRAIN": "head",
    "CHEST": "chest",
    "ABDOMEN": "abdomen",
    "KNEE": "knee",
    "LSPINE": "lspine",
    "NECK": "neck",
    "HAND": "hand",
    "PELVIS": "pelvis",
}


# -- rendering -------------------------------------------------------------------------------

_AXES = {"x": 0, "y": 1, "z": 2}
# view -> (axis along columns, axis along rows, fixed or projected axis)
_PLANES = {
    "axial": ("x", "y", "z"),
    "coronal": ("x", "z", "y"),
    "sagittal": ("y", "z", "x"),
}


def _grid(
    m: Model, columns_axis: str, rows_axis: str, rows: int, columns: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of pixel centres: rows along ``rows_axis`` (z runs upwards)."""
    ext = m.extent
    half = max(ext[_AXES[columns_axis]], ext[_AXES[rows_axis]])
    scale = 2 * half / max(rows, columns)
    u = (np.arange(columns, dtype=np.float32) - (columns - 1) / 2) * scale
    v = (np.arange(rows, dtype=np.float32) - (rows - 1) / 2) * scale
    if rows_axis == "z":
        v = -v
    return u, v


def _slice_labels(m: Model, view: str, position: float, rows: int, columns: int) -> np.ndarray:
    """Tissue index of each pixel of the plane ``view`` at ``position`` on the fixed axis."""
    cols_axis, rows_axis, fixed_axis = _PLANES[view]
    u, v = _grid(m, cols_axis, rows_axis, rows, columns)
    labels = np.full((rows, columns), _INDEX["air"], dtype=np.uint8)
    for e in m.ellipsoids:
        if e.only == "projection":
            continue
        centre = (e.cx, e.cy, e.cz)
        rad = math.radians(e.angle)
        cos, sin = math.cos(rad), math.sin(rad)
        half = (
            math.hypot(e.a * cos, e.b * sin),
            math.hypot(e.a * sin, e.b * cos),
            e.c,
        )
        fixed = _AXES[fixed_axis]
        if abs(position - centre[fixed]) >= half[fixed]:
            continue
        ci, ri = _AXES[cols_axis], _AXES[rows_axis]
        col_sel = np.nonzero(np.abs(u - centre[ci]) < half[ci])[0]
        row_sel = np.nonzero(np.abs(v - centre[ri]) < half[ri])[0]
        if not col_sel.size or not row_sel.size:
            continue
        c0, c1, r0, r1 = col_sel[0], col_sel[-1] + 1, row_sel[0], row_sel[-1] + 1
        coords: list[np.ndarray | float] = [0.0, 0.0, 0.0]
        coords[ci] = u[c0:c1][None, :]
        coords[ri] = v[r0:r1][:, None]
        coords[fixed] = position
        dx = coords[0] - e.cx
        dy = coords[1] - e.cy
        dz = coords[2] - e.cz
        uu = dx * cos + dy * sin
        vv = dy * cos - dx * sin
        inside = (uu / e.a) ** 2 + (vv / e.b) ** 2 + (dz / e.c) ** 2 <= 1.0
        window = labels[r0:r1, c0:c1]
        window[np.broadcast_to(inside, window.shape)] = _INDEX[e.tissue]
    return labels


@cache
def _parents(name: str) -> tuple[int, ...]:
    """For each ellipsoid of a model, the tissue the ones before it put at its centre."""
    m = model(name)
    return tuple(_tissue_at(m, n, (e.cx, e.cy, e.cz)) for n, e in enumerate(m.ellipsoids))


def _tissue_at(m: Model, upto: int, point: tuple[float, float, float]) -> int:
    """The tissue the ellipsoids before ``upto`` put at ``point``."""
    tissue = _INDEX["air"]
    for e in m.ellipsoids[:upto]:
        if e.only == "slice":
            continue
        rad = math.radians(e.angle)
        dx, dy, dz = point[0] - e.cx, point[1] - e.cy, point[2] - e.cz
        uu = dx * math.cos(rad) + dy * math.sin(rad)
        vv = dy * math.cos(rad) - dx * math.sin(rad)
        if (uu / e.a) ** 2 + (vv / e.b) ** 2 + (dz / e.c) ** 2 <= 1.0:
            tissue = _INDEX[e.tissue]
    return tissue


@lru_cache(maxsize=32)
def _projection(name: str, along: str, rows: int, columns: int) -> np.ndarray:
    """Line integrals of X-ray attenuation along ``along`` (x or y), rows along z (read-only)."""
    m = model(name)
    cols_axis = "y" if along == "x" else "x"
    u_all, v_all = _grid(m, cols_axis, "z", rows, columns)
    total = np.zeros((rows, columns), dtype=np.float32)
    mu = _PROPERTIES[:, XRAY]
    for e, parent in zip(m.ellipsoids, _parents(name), strict=True):
        if e.only == "slice":
            continue
        delta = float(mu[_INDEX[e.tissue]] - mu[parent])
        if delta == 0.0:
            continue
        rad = math.radians(e.angle)
        cos, sin = math.cos(rad), math.sin(rad)
        # Only the pixels whose ray can meet the ellipsoid (its bounding box).
        across = (
            math.hypot(e.a * sin, e.b * cos) if along == "x" else math.hypot(e.a * cos, e.b * sin)
        )
        centre = e.cy if along == "x" else e.cx
        cols = np.nonzero(np.abs(u_all - centre) < across)[0]
        rows_in = np.nonzero(np.abs(v_all - e.cz) < e.c)[0]
        if not cols.size or not rows_in.size:
            continue
        c0, c1, r0, r1 = cols[0], cols[-1] + 1, rows_in[0], rows_in[-1] + 1
        u, v = u_all[c0:c1], v_all[r0:r1]
        # A ray p0 + t·d: in the ellipsoid's frame (u, v), d is (sin, cos) along y, (cos, -sin)
        # along x; chord = sqrt(B² - 4AC) / A.
        if along == "y":
            du, dv = sin, cos
            offset = (u - e.cx)[None, :]
            u0, v0 = offset * cos, -offset * sin
        else:
            du, dv = cos, -sin
            offset = (u - e.cy)[None, :]
            u0, v0 = offset * sin, offset * cos
        w = ((v - e.cz) / e.c)[:, None]
        a = du * du / e.a**2 + dv * dv / e.b**2
        b = 2 * (u0 * du / e.a**2 + v0 * dv / e.b**2)
        c = u0 * u0 / e.a**2 + v0 * v0 / e.b**2 + w * w - 1
        disc = b * b - 4 * a * c
        total[r0:r1, c0:c1] += delta * np.sqrt(np.maximum(disc, 0.0)) / a
    total.flags.writeable = False
    return total


@lru_cache(maxsize=4)
def _noise_bank(shape: tuple[int, int]) -> np.ndarray:
    """Unit Gaussian noise, made once per image size (read-only)."""
    bank = np.random.default_rng(20240).standard_normal((2 * shape[0], 2 * shape[1]))
    bank = bank.astype(np.float32)
    bank.flags.writeable = False
    return bank


def _noise(seed: str, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Noise of ``sigma`` for one image: a window of the bank chosen by the ``seed`` text."""
    offset = zlib.crc32(seed.encode())
    row, column = offset % shape[0], (offset >> 12) % shape[1]
    return sigma * _noise_bank(shape)[row : row + shape[0], column : column + shape[1]]


def _smooth(image: np.ndarray, passes: int = 1) -> np.ndarray:
    """A small blur (3-tap binomial along both axes), to take the staircase off edges."""
    out = image
    for _ in range(passes):
        out = out.copy()
        out[1:-1, :] = 0.25 * out[:-2, :] + 0.5 * out[1:-1, :] + 0.25 * out[2:, :]
        out[:, 1:-1] = 0.25 * out[:, :-2] + 0.5 * out[:, 1:-1] + 0.25 * out[:, 2:]
    return out


class Phantom(NamedTuple):
    """Stored pixel values and how to show them."""

    pixels: np.ndarray  # rows × columns, uint16, values within bits_stored
    photometric: str
    window_center: list[float]
    window_width: list[float]
    bits_stored: int


def _position(sweep: tuple[float, float], index: int, count: int) -> float:
    low, high = sweep
    return low + (high - low) * (index + 0.5) / max(count, 1)


@lru_cache(maxsize=256)
def phantom(
    modality: str,
    body_part: str,
    description: str,
    index: int,
    count: int,
    rows: int,
    columns: int,
) -> Phantom:
    """The demo image ``index`` (0-based) of ``count`` of a series, as stored pixels.

    CT pixels are HU + 1024 (RescaleIntercept -1024); MR are signal levels; CR is
    MONOCHROME1 (as many CR readers write it), the others MONOCHROME2.
    """
    region = _BODY_PARTS.get(body_part.upper(), "abdomen")
    m = model(region)
    words = description.upper().split()
    key = f"{modality}|{region}|{description}|{index}|{count}|{rows}x{columns}"
    if modality == "US":
        return _ultrasound(m, key, index, rows, columns)
    if modality in ("CR", "DX") or "TOPOGRAM" in words:
        along = "x" if "LAT" in words else "y"
        image = _radiograph(m, key, along, modality, rows, columns)
        if modality == "CT":  # a topogram: stored values are shown through RescaleIntercept
            shifted = [c - 1024 for c in image.window_center]
            return image._replace(window_center=shifted)
        return image
    view = "axial"
    if {"SAG", "SAGITTAL"} & set(words):
        view = "sagittal"
    elif {"COR", "CORONAL"} & set(words):
        view = "coronal"
    fixed = _AXES[_PLANES[view][2]]
    labels = _slice_labels(m, view, _position(m.sweep[fixed], index, count), rows, columns)
    if modality == "CT":
        hu = _smooth(_PROPERTIES[labels, HU], 2) + _noise(
            key, labels.shape, 4 if region == "head" else 10
        )
        pixels = np.clip(np.rint(hu + 1024), 0, 4095).astype(np.uint16)
        center, width = {
            "head": ([40.0, 600.0], [80.0, 2800.0]),
            "chest": ([-600.0, 40.0], [1500.0, 400.0]),
        }.get(region, ([40.0, 300.0], [400.0, 1500.0]))
        return Phantom(pixels, "MONOCHROME2", center, width, 12)
    column = T1 if "T1" in words else PDFS if "PD" in words else T2
    signal = _smooth(_PROPERTIES[labels, column])
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    coil = 1.15 - 0.3 * ((x / columns - 0.5) ** 2 + (y / rows - 0.3) ** 2)  # coil shading
    signal = signal * coil + np.abs(_noise(key, labels.shape, 18))
    pixels = np.clip(np.rint(signal), 0, 4095).astype(np.uint16)
    top = 0.9 * float(pixels.max()) or 1.0
    return Phantom(pixels, "MONOCHROME2", [round(top / 2)], [round(top)], 12)


@lru_cache(maxsize=32)
def _detector(name: str, along: str, rows: int, columns: int) -> tuple[np.ndarray, float, float]:
    """The noiseless radiograph (read-only) and its window (center, width)."""
    path = _projection(name, along, rows, columns)
    # Log-domain detector signal: more attenuation, brighter (MONOCHROME2).
    signal = 300 + 3600 * (1.0 - np.exp(-0.9 * path))
    signal.flags.writeable = False
    low, high = (float(v) for v in np.percentile(signal, (1, 99.8)))
    return signal, (low + high) / 2, max(high - low, 1.0)


def _radiograph(m: Model, key: str, along: str, modality: str, rows: int, columns: int) -> Phantom:
    signal, center, width = _detector(m.name, along, rows, columns)
    pixels = np.clip(np.rint(signal + _noise(key, signal.shape, 12)), 0, 4095).astype(np.uint16)
    if modality == "CR":  # MONOCHROME1: the minimum is white
        return Phantom(4095 - pixels, "MONOCHROME1", [4095 - center], [width], 12)
    return Phantom(pixels, "MONOCHROME2", [center], [width], 12)


def _ultrasound(m: Model, key: str, index: int, rows: int, columns: int) -> Phantom:
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    linear = m.name == "neck"
    fine = _slice_labels(m, "axial", _position(m.sweep[2], index, 5), 320, 320)
    if linear:  # a linear probe on the front of the neck: depth runs down from the skin
        mx = -0.8 + 1.6 * x / columns
        my = -0.86 + 1.1 * y / rows
        mask = np.ones((rows, columns), bool)
        depth = y / rows
    else:  # a curved probe below the right costal margin, pointing back
        apex_x, apex_y = -0.3, -1.05
        dx, dy = (x - columns / 2) / rows, y / rows + 0.18
        radius, theta = np.hypot(dx, dy), np.arctan2(dx, dy)
        mask = (np.abs(theta) < math.radians(32)) & (radius > 0.2) & (radius < 1.12)
        mx = apex_x + np.sin(theta) * radius * 1.25
        my = apex_y + np.cos(theta) * radius * 1.25
        depth = np.clip((radius - 0.2) / 0.92, 0, 1)
    ix = np.clip(np.rint((mx + 1) * 159.5), 0, 319).astype(np.intp)
    iy = np.clip(np.rint((my + 1) * 159.5), 0, 319).astype(np.intp)
    echo = _PROPERTIES[fine[iy, ix], ECHO]
    speckle = _smooth(
        np.hypot(_noise(key, (rows, columns), 1), _noise(key + "q", (rows, columns), 1))
    )
    signal = echo * speckle * (1.1 - 0.55 * depth)
    image = np.log1p(6 * signal) / math.log1p(6 * 2.2) * 235
    image = np.where(mask, np.clip(image, 0, 255), 0)
    return Phantom(np.rint(image).astype(np.uint16), "MONOCHROME2", [128.0], [256.0], 8)
