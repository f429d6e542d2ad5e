"""Reader of the EBHI-Seg layout `<root>/<Category>/{image,label}/*.png`.

The reader pairs images and masks by file name, decodes every PNG once (in threads: PIL
releases the GIL while decoding), drops what cannot be used with a reason, and returns
stacked uint8 arrays. Whatever it drops is listed in a `CleaningReport`.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ablate.errors import DatasetError

IMAGE_DIR = "image"
LABEL_DIR = "label"
# Folders that archive tools leave behind; as invisible to the user as dot files.
IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
MASK_MODES = frozenset({"L", "1", "P", "LA", "RGB", "RGBA"})
MIN_CATEGORY_PAIRS = 2
"""A category needs one pair to train on and one to test on."""


@dataclass(frozen=True)
class DroppedFile:
    """A file left out of the dataset, and why."""

    path: str
    """Relative to the root, e.g. "Low-grade IN/image/x.png"."""
    reason: str
    """"no label", "label without image", "unreadable PNG: ...", "wrong size ...", "not RGB ..."."""


@dataclass
class CleaningReport:
    """What a scan found: usable pairs per category and every dropped file."""

    root: str
    counts: dict[str, int]
    dropped: list[DroppedFile] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Usable image/mask pairs over all categories."""
        return sum(self.counts.values())

    def format(self) -> str:
        """The text printed by `ablate data check`."""
        width = max([len("category"), *(len(name) for name in self.counts)])
        lines = [f"dataset {self.root}", f"  {'category':<{width}}  pairs"]
        lines += [f"  {name:<{width}}  {count:>5}" for name, count in self.counts.items()]
        lines.append(f"  {'total':<{width}}  {self.total:>5}")
        if not self.dropped:
            lines.append("dropped: none")
        else:
            lines.append(f"dropped {len(self.dropped)} file(s):")
            lines += [f"  {item.path}: {item.reason}" for item in self.dropped]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-able form, stored in the study directory as dataset.json."""
        return {
            "root": self.root,
            "counts": dict(self.counts),
            "total": self.total,
            "dropped": [asdict(item) for item in self.dropped],
        }


@dataclass
class SegmentationData:
    """A whole dataset decoded into memory."""

    images: np.ndarray
    """(N, H, W, 3) uint8."""
    masks: np.ndarray
    """(N, H, W) uint8 in {0, 1}, binarized with `> 127`."""
    category_ids: np.ndarray
    """(N,) int64, index into `categories`."""
    categories: list[str]
    """Sorted category folder names."""
    names: list[str]
    """"<Category>/<file name>", one unique id per image."""
    report: CleaningReport

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class _Decoded:
    """One decoded PNG, or why it could not be used."""

    relative: str
    array: np.ndarray | None = None
    problem: str | None = None


@dataclass
class _Pair:
    category: str
    name: str
    image: _Decoded
    label: _Decoded


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_NAMES


def _visible(folder: Path) -> list[Path]:
    try:
        return sorted(path for path in folder.iterdir() if not _is_hidden(path.name))
    except OSError as error:
        raise DatasetError(f"{folder}: cannot list folder ({error.strerror or error})") from None


def _check_root(root: Path) -> list[Path]:
    """The category folders of `root`; DatasetError when the layout is not EBHI-Seg."""
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected <root>/<Category>/image|label/*.png)")
    entries = _visible(root)
    if not entries:
        raise DatasetError(f"{root}: dataset folder is empty")
    categories = [path for path in entries if path.is_dir()]
    if not categories:
        raise DatasetError(
            f"{root}: no category folder (expected <root>/<Category>/image|label/*.png)"
        )
    for category in categories:
        missing = [sub for sub in (IMAGE_DIR, LABEL_DIR) if not (category / sub).is_dir()]
        if missing:
            raise DatasetError(f"{category}: category folder has no {' or '.join(missing)}/ folder")
    return categories


def _pngs(folder: Path, root: Path, dropped: list[DroppedFile]) -> dict[str, Path]:
    """PNG files of `folder` by name; anything else is reported as not an image."""
    found = {}
    for path in _visible(folder):
        if path.is_file() and path.suffix.lower() == ".png":
            found[path.name] = path
        else:
            dropped.append(DroppedFile(path.relative_to(root).as_posix(), "not an image"))
    return found


def _unreadable(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):  # its text repeats the full path
        return "unreadable PNG: not an image file PIL can identify"
    return f"unreadable PNG: {error}"


def _decode_image(path: Path, relative: str) -> _Decoded:
    """An RGB (H, W, 3) uint8 array; RGBA whose alpha is fully opaque counts as RGB."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
                image = image.convert("RGB")
            if image.mode != "RGB":
                return _Decoded(relative, problem=f"not RGB (mode {image.mode})")
            return _Decoded(relative, np.asarray(image, dtype=np.uint8).copy())
    except Exception as error:  # PIL raises many types for damaged files
        return _Decoded(relative, problem=_unreadable(error))


def _decode_mask(path: Path, relative: str) -> _Decoded:
    """A binary (H, W) uint8 mask in {0, 1}: gray value > 127 is foreground."""
    try:
        with Image.open(path) as mask:
            mask.load()
            if mask.mode not in MASK_MODES:
                return _Decoded(relative, problem=f"unsupported mask mode {mask.mode}")
            gray = np.asarray(mask.convert("L"), dtype=np.uint8)
            return _Decoded(relative, (gray > 127).astype(np.uint8))
    except Exception as error:  # PIL raises many types for damaged files
        return _Decoded(relative, problem=_unreadable(error))


def _find_pairs(
    root: Path, categories: list[Path], dropped: list[DroppedFile]
) -> list[tuple[str, str, Path, Path]]:
    """(category, file name, image path, label path) of every name present on both sides."""
    pairs = []
    for category in categories:
        images = _pngs(category / IMAGE_DIR, root, dropped)
        labels = _pngs(category / LABEL_DIR, root, dropped)
        for name in sorted(images.keys() - labels.keys()):
            dropped.append(DroppedFile(f"{category.name}/{IMAGE_DIR}/{name}", "no label"))
        for name in sorted(labels.keys() - images.keys()):
            dropped.append(
                DroppedFile(f"{category.name}/{LABEL_DIR}/{name}", "label without image")
            )
        for name in sorted(images.keys() & labels.keys()):
            pairs.append((category.name, name, images[name], labels[name]))
    return pairs


def _decode_pairs(found: list[tuple[str, str, Path, Path]]) -> list[_Pair]:
    def decode(item: tuple[str, str, Path, Path]) -> _Pair:
        category, name, image_path, label_path = item
        image = _decode_image(image_path, f"{category}/{IMAGE_DIR}/{name}")
        label = _decode_mask(label_path, f"{category}/{LABEL_DIR}/{name}")
        return _Pair(category, name, image, label)

    workers = min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(decode, found))


def _size_text(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _pair_problem(pair: _Pair, expected: tuple[int, int] | None) -> tuple[str, str] | None:
    """(culprit path, reason) when the pair cannot be used, else None."""
    for decoded in (pair.image, pair.label):
        if decoded.problem:
            return decoded.relative, decoded.problem
    image_shape = pair.image.array.shape[:2]
    if image_shape != expected:
        return (
            pair.image.relative,
            f"wrong size {_size_text(image_shape)} (expected {_size_text(expected)})",
        )
    if pair.label.array.shape != image_shape:
        label_size = _size_text(pair.label.array.shape)
        return pair.label.relative, f"wrong size {label_size} (expected {_size_text(image_shape)})"
    return None


def _common_size(pairs: list[_Pair]) -> tuple[int, int] | None:
    """The most common image size (ties: the larger count first, then the smaller size)."""
    sizes = Counter(pair.image.array.shape[:2] for pair in pairs if pair.image.array is not None)
    if not sizes:
        return None
    return min(sizes, key=lambda size: (-sizes[size], size))


def _keep_usable(pairs: list[_Pair], dropped: list[DroppedFile]) -> list[_Pair]:
    expected = _common_size(pairs)
    usable = []
    for pair in pairs:
        problem = _pair_problem(pair, expected)
        if problem is None:
            usable.append(pair)
            continue
        culprit, reason = problem
        dropped.append(DroppedFile(culprit, reason))
        partner = pair.label if culprit == pair.image.relative else pair.image
        dropped.append(DroppedFile(partner.relative, f"its pair was dropped ({culprit})"))
    return usable


def _keep_testable_categories(
    usable: list[_Pair], categories: list[str], dropped: list[DroppedFile]
) -> tuple[list[_Pair], list[str]]:
    """Leave out, with a reason, each category too small to be trained and tested.

    Such a category would silently miss from every per-category table and from the macro
    mean; its folder is reported instead.
    """
    counts = Counter(pair.category for pair in usable)
    kept = [name for name in categories if counts[name] >= MIN_CATEGORY_PAIRS]
    for name in categories:
        if name not in kept:
            dropped.append(
                DroppedFile(
                    f"{name}/",
                    f"category left out: {counts[name]} usable pair(s), at least "
                    f"{MIN_CATEGORY_PAIRS} needed (one to train on, one to test on)",
                )
            )
    return [pair for pair in usable if pair.category in kept], kept


def load_ebhi(root: str | Path) -> SegmentationData:
    """Read an EBHI-Seg folder into memory, dropping unusable files with their reasons.

    Images must be RGB PNGs of one common size (the most frequent one; an RGBA image whose
    alpha channel is fully opaque is accepted as RGB). Masks may be L, 1, P, LA, RGB or RGBA;
    they are converted to gray and binarized with `> 127` (EBHI masks are not clean 0/255).
    Dot files and archive leftovers (`__MACOSX`) are ignored silently.

    Args:
        root: folder holding `<Category>/image/*.png` and `<Category>/label/*.png`.

    Returns:
        The decoded dataset, categories sorted, pairs sorted by file name within a category.

    Raises:
        DatasetError: root missing, empty or not in the layout, or no usable pair at all
            (or no category with MIN_CATEGORY_PAIRS pairs).

    Example:
        >>> data = load_ebhi("shared/data/EBHI-SEG-sample")
        >>> data.images.shape, data.report.total
        ((671, 224, 224, 3), 671)
    """
    root = Path(root).expanduser()
    category_dirs = _check_root(root)
    dropped: list[DroppedFile] = []
    found = _find_pairs(root, category_dirs, dropped)
    usable = _keep_usable(_decode_pairs(found), dropped)
    if not usable:
        reasons = "; ".join(f"{item.path}: {item.reason}" for item in dropped[:3])
        raise DatasetError(f"{root}: no usable image/label pair ({reasons or 'no PNG files'})")
    usable, categories = _keep_testable_categories(
        usable, sorted(folder.name for folder in category_dirs), dropped
    )
    if not usable:
        raise DatasetError(
            f"{root}: no category has {MIN_CATEGORY_PAIRS} usable pairs (one to train on, "
            "one to test on)"
        )
    counts = {name: sum(pair.category == name for pair in usable) for name in categories}
    report = CleaningReport(str(root), counts, dropped)
    return SegmentationData(
        images=np.stack([pair.image.array for pair in usable]),
        masks=np.stack([pair.label.array for pair in usable]),
        category_ids=np.array([categories.index(pair.category) for pair in usable], dtype=np.int64),
        categories=categories,
        names=[f"{pair.category}/{pair.name}" for pair in usable],
        report=report,
    )
