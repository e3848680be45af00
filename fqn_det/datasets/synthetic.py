"""Deterministic synthetic COCO-format detection dataset ("shapes on clutter").

The generator draws filled geometric shapes on cluttered backgrounds. The
*class* of an object is its shape; its colour is random, so a detector has to
learn shape rather than colour. Object sizes are log-uniform between
``MIN_OBJECT_SIZE`` px and ``0.75 * img_size`` so every FPN level (strides
8..128) receives objects.

Design notes:

* Every image gets its own ``numpy.random.Generator`` seeded from
  ``SeedSequence(seed, spawn_key=(split, index))``: output is reproducible,
  train and val use different streams, and image ``i`` does not depend on how
  many images are generated (a smaller dataset is a prefix of a larger one).
* Objects are drawn in order (largest first, so small objects lie on top of
  big ones). A per-pixel instance map keeps track of what is visible. A
  candidate object is rejected (and re-sampled) if it would leave any earlier
  object with less than ``MIN_VISIBLE_FRACTION`` of its pixels visible, or
  with a degenerate visible box. The truncation by the image border counts
  against the same threshold.
* Annotated boxes are the tight boxes of the *visible* pixels (so they are
  always inside the image), ``area`` is the visible pixel count (COCO
  semantics: segmentation area).
* Background clutter (smooth colour field, gradient, soft blobs, thin lines,
  thin open polylines, specks, noise) never contains filled shapes, so nothing
  that looks like an object is left unannotated.

This module only depends on numpy, OpenCV and tqdm.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

GENERATOR_VERSION = 2  # 2: objects >= 12 px and >= 50 % visible, at most 6 per image
DEFAULT_CLASSES: Tuple[str, ...] = ('rectangle', 'ellipse', 'triangle', 'cross', 'ring')
SUPPORTED_SHAPES = DEFAULT_CLASSES
MIN_OBJECT_SIZE = 12.0  # px, longest side of the (unoccluded) object box
MAX_OBJECT_FRACTION = 0.75  # of img_size
MIN_VISIBLE_FRACTION = 0.5  # reject objects more than half hidden
MIN_BOX_SIDE = 2  # px
MAX_ATTEMPTS = 12  # re-samples per object before giving up on it
JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_OPTIMIZE, 0,
               cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
_SPLIT_IDS = {'train': 0, 'val': 1}

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------
def _ellipse_points(a: float, b: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([a * np.cos(t), b * np.sin(t)], axis=1)


def _shape_polygons(shape: str, rng: np.random.Generator
                    ) -> Tuple[np.ndarray, Optional[float]]:
    """Return the outer polygon of ``shape`` (about unit size, centred at 0).

    Returns:
        ``(points, hole_fraction)``: ``points`` is an ``(N, 2)`` float array;
        ``hole_fraction`` is the relative ring width for rings, else ``None``.
    """
    if shape == 'rectangle':
        h = rng.uniform(0.4, 1.0)
        pts = np.array([[-1, -h], [1, -h], [1, h], [-1, h]], dtype=np.float64)
        return pts, None
    if shape == 'ellipse':
        return _ellipse_points(1.0, rng.uniform(0.45, 1.0)), None
    if shape == 'triangle':
        ang = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.35, 0.35, 3)
        rad = rng.uniform(0.7, 1.0, 3)
        return np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1), None
    if shape == 'cross':
        t = rng.uniform(0.22, 0.38)  # half arm thickness
        h = rng.uniform(0.7, 1.0)  # half length of the vertical arm
        pts = np.array([[-t, -h], [t, -h], [t, -t], [1, -t], [1, t], [t, t], [t, h],
                        [-t, h], [-t, t], [-1, t], [-1, -t], [-t, -t]], dtype=np.float64)
        return pts, None
    if shape == 'ring':
        return _ellipse_points(1.0, rng.uniform(0.6, 1.0)), rng.uniform(0.25, 0.45)
    raise ValueError(f'unknown shape {shape!r}')


def _render_object(shape: str, size: float, img_size: int, rng: np.random.Generator,
                   inside: bool = False) -> Tuple[np.ndarray, int, int]:
    """Sample one object of ``shape`` whose box has longest side ``size``.

    The object may stick out of the image by up to 15% of its extent per side
    unless ``inside`` is True.

    Returns:
        ``(mask, x0, y0)``: a boolean mask of the whole (unclipped) object and
        the image coordinates of its top-left pixel.
    """
    pts, hole = _shape_polygons(shape, rng)
    theta = rng.uniform(0.0, np.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    pts = pts @ rot.T
    lo, hi = pts.min(0), pts.max(0)
    scale = (size - 1.0) / float((hi - lo).max())
    pts = (pts - (lo + hi) / 2.0) * scale  # centred, longest box side == size
    ext = (hi - lo) * scale
    # Top-left corner: at most 15% of the object may leave the image per side.
    margin = 0.0 if inside else 0.15
    tl = np.array([rng.uniform(-margin * e, img_size - (1 - margin) * e - 1.0) for e in ext])
    pts = pts + tl + ext / 2.0
    x0, y0 = (int(v) for v in np.floor(pts.min(0)))
    x1, y1 = (int(v) for v in np.ceil(pts.max(0)))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    fix = lambda p: np.round((p - [x0, y0]) * 16).astype(np.int32)  # noqa: E731
    cv2.fillPoly(mask, [fix(pts)], 1, cv2.LINE_8, shift=4)
    if hole is not None:
        centre = (pts.max(0) + pts.min(0)) / 2.0
        min_axis = float(np.linalg.norm(pts - centre, axis=1).min())
        hole = min(max(hole, MIN_BOX_SIDE / max(min_axis, 1e-6)), 0.6)
        inner = centre + (pts - centre) * (1.0 - hole)
        cv2.fillPoly(mask, [fix(inner)], 0, cv2.LINE_8, shift=4)
    return mask.astype(bool), x0, y0


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------
def _background(img_size: int, rng: np.random.Generator) -> np.ndarray:
    """Cluttered ``uint8`` BGR background without anything shape-like."""
    s = img_size
    lo = 64  # the smooth part is computed at low resolution, then upsampled
    k = int(rng.integers(2, 5))
    field = cv2.resize(rng.uniform(30, 225, (k, k, 3)).astype(np.float32), (lo, lo),
                       interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:lo, 0:lo].astype(np.float32) / lo
    ang = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(ang) * xx + np.sin(ang) * yy)[..., None]
    field += grad * rng.uniform(-40, 40, 3).astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):  # soft, edge-less blobs
        cx, cy = rng.uniform(0, 1, 2)
        sig = rng.uniform(0.05, 0.25)
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sig * sig))[..., None]
        field += g * rng.uniform(-50, 50, 3).astype(np.float32)
    field = cv2.resize(field, (s, s), interpolation=cv2.INTER_LINEAR)
    img = np.clip(field, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 7))):  # long thin lines
        p, q = rng.integers(0, s, 2), rng.integers(0, s, 2)
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), col, 1, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):  # thin open random-walk polylines
        n = int(rng.integers(3, 7))
        walk = rng.integers(0, s, 2) + np.cumsum(rng.normal(0, s / 8, (n, 2)), axis=0)
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.polylines(img, [walk.astype(np.int32)], False, col,
                      int(rng.integers(1, 3)), cv2.LINE_AA)
    n = int(rng.integers(0, 16))  # single-pixel specks
    img[rng.integers(0, s, n), rng.integers(0, s, n)] = rng.integers(0, 256, (n, 3))
    return img


def _pick_colour(under: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random colour differing by >= 64 (in some channel) from ``under``'s mean."""
    mean = under.reshape(-1, 3).mean(0)
    for _ in range(8):
        col = rng.integers(0, 256, 3).astype(np.float64)
        if np.abs(col - mean).max() >= 64:
            return col.astype(np.uint8)
    return np.where(mean < 128, mean + 96, mean - 96).clip(0, 255).astype(np.uint8)


def _visible_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """``(x, y, w, h)`` of the true pixels of ``mask``, ``None`` if empty."""
    ys = np.flatnonzero(mask.any(1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(0))
    return int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)


def _make_image(img_size: int, classes: Sequence[str], max_objects: int,
                rng: np.random.Generator) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Generate one image and its objects.

    Returns:
        ``(image, objects)``: a BGR ``uint8`` image and a list of dicts with
        ``label`` (index into ``classes``), ``bbox`` ``[x, y, w, h]`` and
        ``area`` (visible pixels), in drawing order.
    """
    s = img_size
    img = _background(s, rng)
    ids = np.full((s, s), -1, np.int32)  # index of the object visible at each pixel
    full_area: List[int] = []
    windows: List[Tuple[slice, slice]] = []  # in-image window of each object
    labels: List[int] = []
    n = int(rng.integers(1, max_objects + 1))
    log_lo, log_hi = math.log(MIN_OBJECT_SIZE), math.log(MAX_OBJECT_FRACTION * s)
    sizes = np.sort(np.exp(rng.uniform(log_lo, log_hi, n)))[::-1]  # big ones first
    for size in sizes:
        for attempt in range(MAX_ATTEMPTS):
            label = int(rng.integers(len(classes)))
            last_chance = not labels and attempt == MAX_ATTEMPTS - 1
            mask, x0, y0 = _render_object(classes[label], float(size), s, rng, last_chance)
            h, w = mask.shape
            ys, xs = slice(max(y0, 0), min(y0 + h, s)), slice(max(x0, 0), min(x0 + w, s))
            inside = mask[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
            area = int(mask.sum())
            box = _visible_box(inside)
            if (box is None or inside.sum() < MIN_VISIBLE_FRACTION * area
                    or min(box[2:]) < MIN_BOX_SIDE):
                continue
            trial = ids.copy()
            trial[ys, xs][inside] = len(labels)
            covered = np.unique(ids[ys, xs][inside])
            ok = True
            for j in covered[covered >= 0]:
                vis = trial[windows[j]] == j
                vbox = _visible_box(vis)
                if (vbox is None or vis.sum() < MIN_VISIBLE_FRACTION * full_area[j]
                        or min(vbox[2:]) < MIN_BOX_SIDE):
                    ok = False
                    break
            if not ok:
                continue
            region = img[ys, xs]
            region[inside] = _pick_colour(region[inside], rng)
            ids = trial
            full_area.append(area)
            windows.append((ys, xs))
            labels.append(label)
            break
    if not labels:  # unreachable in practice: the first object is never occluded
        raise RuntimeError('could not place any object in a synthetic image')
    objects = []
    for j, label in enumerate(labels):
        vis = ids[windows[j]] == j
        bx, by, bw, bh = _visible_box(vis)  # type: ignore[misc]
        objects.append(dict(label=label,
                             bbox=[windows[j][1].start + bx, windows[j][0].start + by, bw, bh],
                             area=int(vis.sum())))
    # Uniform pixel noise with a random std in [2, 8] (cheaper than Gaussian).
    amp = np.float32(rng.uniform(2.0, 8.0) * math.sqrt(12.0))
    noise = (rng.random((s, s, 3), dtype=np.float32) - np.float32(0.5)) * amp
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return img, objects


# --------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')


def _write_split(split: str, root: Path, n: int, cfg: Dict[str, Any], pbar: Any) -> int:
    """Write ``root/<split>/*.jpg`` and its COCO json; return the annotation count."""
    (root / split).mkdir()
    classes = cfg['classes']
    images, anns = [], []
    for i in range(n):
        seq = np.random.SeedSequence(cfg['seed'], spawn_key=(_SPLIT_IDS[split], i))
        img, objects = _make_image(cfg['img_size'], classes, cfg['max_objects'],
                                   np.random.default_rng(seq))
        file_name = f'{i:06d}.jpg'
        if not cv2.imwrite(str(root / split / file_name), img, JPEG_PARAMS):
            raise OSError(f'cv2.imwrite failed for {root / split / file_name}')
        images.append(dict(id=i + 1, file_name=file_name, width=cfg['img_size'],
                           height=cfg['img_size']))
        for obj in objects:
            anns.append(dict(id=len(anns) + 1, image_id=i + 1,
                             category_id=obj['label'] + 1, bbox=obj['bbox'],
                             area=obj['area'], iscrowd=0))
        pbar.update(1)
    coco = dict(
        info=dict(description=f'fqn_det synthetic shapes ({split})',
                  version=str(GENERATOR_VERSION)),
        licenses=[],
        images=images,
        annotations=anns,
        categories=[dict(id=k + 1, name=c, supercategory='shape')
                    for k, c in enumerate(classes)])
    with open(root / 'annotations' / f'instances_{split}.json', 'w') as f:
        json.dump(coco, f, separators=(',', ':'))
    return len(anns)


def _result(out_dir: Path, meta: Dict[str, Any]) -> Dict[str, Any]:
    cfg, stats = meta['config'], meta['stats']
    return dict(out_dir=str(out_dir),
                train_img_dir=str(out_dir / 'train'),
                val_img_dir=str(out_dir / 'val'),
                train_ann_file=str(out_dir / 'annotations' / 'instances_train.json'),
                val_ann_file=str(out_dir / 'annotations' / 'instances_val.json'),
                num_train=cfg['num_train'], num_val=cfg['num_val'],
                num_train_annotations=stats['num_train_annotations'],
                num_val_annotations=stats['num_val_annotations'],
                img_size=cfg['img_size'], classes=list(cfg['classes']))


def _read_meta(out_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        with open(out_dir / 'meta.json') as f:
            meta = json.load(f)
        return meta if isinstance(meta, dict) and 'config' in meta and 'stats' in meta else None
    except (OSError, ValueError):
        return None


def generate_synthetic_coco(out_dir: PathLike,
                            num_train: int = 3000,
                            num_val: int = 200,
                            img_size: int = 128,
                            seed: int = 0,
                            classes: Optional[Sequence[str]] = None,
                            max_objects: int = 6,
                            progress: bool = True,
                            overwrite: bool = False) -> Dict[str, Any]:
    """Generate (or reuse) a deterministic synthetic COCO detection dataset.

    Layout written under ``out_dir``::

        train/000000.jpg ...            val/000000.jpg ...
        annotations/instances_train.json annotations/instances_val.json
        meta.json

    Category ids start at 1 in the order of ``classes``; image and annotation
    ids start at 1 in each split. Every image has at least one annotation.

    The dataset is built in a temporary sibling folder that is renamed to
    ``out_dir`` at the end, so an interrupted run leaves no partial dataset.

    Args:
        out_dir: Destination folder.
        num_train: Number of training images (>= 1).
        num_val: Number of validation images (>= 1).
        img_size: Side of the square images in px (>= 32).
        seed: Non-negative seed; same seed gives byte-identical output.
        classes: Shape classes to use, a non-empty subset of
            ``DEFAULT_CLASSES`` (the default: all five).
        max_objects: Maximum objects per image (>= 1); the count is uniform
            in ``[1, max_objects]`` (an object that cannot be placed without
            hiding others is dropped, but never the first one).
        progress: Show a tqdm progress bar over images.
        overwrite: Replace an existing ``out_dir`` whose ``meta.json`` does
            not match the requested configuration.

    Returns:
        Dict with ``out_dir``, ``train_img_dir``, ``val_img_dir``,
        ``train_ann_file``, ``val_ann_file``, ``num_train``, ``num_val``,
        ``num_train_annotations``, ``num_val_annotations``, ``img_size`` and
        ``classes``.

    Raises:
        ValueError: If an argument is invalid (the message names it).
        FileExistsError: If ``out_dir`` exists with a different (or no)
            ``meta.json`` and ``overwrite`` is False.
    """
    _check_int('num_train', num_train, 1)
    _check_int('num_val', num_val, 1)
    _check_int('img_size', img_size, 32)
    _check_int('seed', seed, 0)
    _check_int('max_objects', max_objects, 1)
    classes = list(DEFAULT_CLASSES if classes is None else classes)
    if isinstance(classes, str) or len(classes) == 0:
        raise ValueError('classes must contain at least 1 class')
    bad = [c for c in classes if c not in SUPPORTED_SHAPES]
    if bad or len(set(classes)) != len(classes):
        raise ValueError(f'classes must be distinct names from {SUPPORTED_SHAPES}, '
                         f'got {classes!r}')
    cfg = dict(version=GENERATOR_VERSION, seed=int(seed), num_train=int(num_train),
               num_val=int(num_val), img_size=int(img_size), classes=classes,
               max_objects=int(max_objects))
    out_dir = Path(out_dir)

    if out_dir.exists() or out_dir.is_symlink():
        meta = _read_meta(out_dir)
        if meta is not None and meta['config'] == cfg:
            return _result(out_dir, meta)
        if not overwrite:
            found = 'no readable meta.json' if meta is None else f'config {meta["config"]}'
            raise FileExistsError(
                f'{out_dir} already exists with {found}, which does not match the '
                f'requested config {cfg}; pass overwrite=True to regenerate it')

    from ..utils.progress import progress_bar

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}.tmp-', dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp creates it 0o700
        (tmp / 'annotations').mkdir()
        with progress_bar(total=num_train + num_val, desc='synthetic coco', unit='img',
                          disable=not progress) as pbar:
            stats = dict(num_train_annotations=_write_split('train', tmp, num_train, cfg, pbar),
                         num_val_annotations=_write_split('val', tmp, num_val, cfg, pbar))
        meta = dict(config=cfg, stats=stats)
        with open(tmp / 'meta.json', 'w') as f:
            json.dump(meta, f, indent=2)
        if out_dir.exists() or out_dir.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}.old-', dir=out_dir.parent))
            os.replace(out_dir, old / 'data')  # overwrite: move the old one aside first
            try:
                os.replace(tmp, out_dir)
            except OSError:
                os.replace(old / 'data', out_dir)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, out_dir)
            except OSError:
                # Another process finished the same dataset first: use theirs.
                theirs = _read_meta(out_dir)
                if theirs is None or theirs['config'] != cfg:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                return _result(out_dir, theirs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _result(out_dir, meta)
