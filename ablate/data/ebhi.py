"""Reader of the EBHI-Seg layout `<root>/<Category>/{image,label}/*.png`.

The reader pairs images and masks by file name and reads every file's header first (size
and mode, nothing decoded): files over the pixel limit or of the wrong size are dropped with
their reason, and a dataset too large to hold in memory is refused. Only then are the kept
pairs decoded (in threads: PIL releases the GIL while decoding), straight into the stacked
uint8 arrays.

Masks are read in the encoding the dataset uses, recognised over all its masks: gray levels
0/255 with compression noise (foreground > 127, the EBHI release), 0/1, or a palette whose
index 0 is background. A dataset whose masks fit none of these, or mix them, is refused.
Whatever the reader drops, the encoding it recognised, each category's foreground share and
the masks that are empty where the rest of their category is not are in a `CleaningReport`.
"""

from __future__ import annotations

import os
import struct
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from ablate.data.masks import MaskValues, binarize, mask_encoding, read_mask
from ablate.errors import DatasetError, printable

IMAGE_DIR = "image"
LABEL_DIR = "label"
# Folders that archive tools leave behind; as invisible to the user as dot files.
IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
IMAGE_MODES = frozenset({"RGB", "RGBA"})
"""RGBA is accepted when its alpha channel is fully opaque (checked once decoded)."""
MASK_MODES = frozenset({"L", "1", "P", "LA", "RGB", "RGBA"})
MIN_CATEGORY_PAIRS = 2
"""A category needs one pair to train on and one to test on."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Pixels of one image or mask, read from its header before anything is decoded. Far below
Pillow's own decompression-bomb limit (89 M), so Pillow's warning never fires either."""
MAX_DATASET_PIXELS = 2**31
"""Image pixels of the whole dataset (about 8.6 GB once decoded with the masks): 19 times
the full EBHI-Seg release."""
RESERVED_CATEGORIES = {
    "macro": "the summary's row of the mean over categories",
    "total": "the cleaning report's row of all categories",
}
"""Folder names that would collide with rows the reports add (compared case-insensitively)."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class DroppedFile:
    """A file left out of the dataset, and why."""

    path: str
    """Relative to the root, e.g. "Low-grade IN/image/x.png"."""
    reason: str
    """"no label", "label without image", "unreadable PNG: ...", "wrong size ...", "not RGB ..."."""


@dataclass
class CleaningReport:
    """What a scan found: usable pairs per category, every dropped file, and the masks."""

    root: str
    counts: dict[str, int]
    dropped: list[DroppedFile] = field(default_factory=list)
    encoding: str = ""
    """The masks' encoding, as `MaskEncoding.meaning`."""
    foreground: dict[str, float] = field(default_factory=dict)
    """Share of foreground pixels in each category's masks."""
    empty_masks: list[str] = field(default_factory=list)
    """Masks without foreground in a category whose other masks have some."""

    @property
    def total(self) -> int:
        """Usable image/mask pairs over all categories."""
        return sum(self.counts.values())

    @property
    def total_foreground(self) -> float:
        """Share of foreground pixels over all masks (all masks have one size)."""
        if not self.total:
            return 0.0
        shares = sum(self.foreground.get(name, 0.0) * count for name, count in self.counts.items())
        return shares / self.total

    def format(self) -> str:
        """The text printed by `ablate data check`."""
        width = max([len("category"), *(len(name) for name in self.counts)])
        lines = [f"dataset {self.root}"]
        if self.encoding:
            lines.append(f"masks: {self.encoding}")
        lines.append(f"  {'category':<{width}}  pairs  foreground")
        lines += [
            f"  {name:<{width}}  {count:>5}  {_percent(self.foreground.get(name))}"
            for name, count in self.counts.items()
        ]
        lines.append(f"  {'total':<{width}}  {self.total:>5}  {_percent(self.total_foreground)}")
        for name, share in self.foreground.items():
            if share == 0.0:
                lines.append(f"warning: no mask of {name} has any foreground")
        if not self.dropped:
            lines.append("dropped: none")
        else:
            lines.append(f"dropped {len(self.dropped)} file(s):")
            lines += [f"  {item.path}: {item.reason}" for item in self.dropped]
        if self.empty_masks:
            lines.append(
                f"{len(self.empty_masks)} empty mask(s) where the rest of their category has "
                "foreground (kept; check them):"
            )
            lines += [f"  {path}" for path in self.empty_masks]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-able form, stored in the study directory as dataset.json."""
        return {
            "root": self.root,
            "counts": dict(self.counts),
            "total": self.total,
            "dropped": [asdict(item) for item in self.dropped],
            "mask_encoding": self.encoding,
            "foreground": {name: round(share, 4) for name, share in self.foreground.items()},
            "empty_masks": list(self.empty_masks),
        }


def _percent(share: float | None) -> str:
    return f"{'':>10}" if share is None else f"{share:>10.1%}"


@dataclass
class SegmentationData:
    """A whole dataset decoded into memory."""

    images: np.ndarray
    """(N, H, W, 3) uint8."""
    masks: np.ndarray
    """(N, H, W) uint8 in {0, 1}: foreground as the dataset's mask encoding marks it."""
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
class _Header:
    """What a file's header says (nothing decoded), or why it cannot be used."""

    relative: str
    size: tuple[int, int] = (0, 0)
    """(height, width), as numpy shapes are."""
    problem: str | None = None


@dataclass
class _Pair:
    category: str
    name: str
    image_path: Path
    label_path: Path
    image: _Header
    label: _Header


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
        _check_category_name(category)
        missing = [sub for sub in (IMAGE_DIR, LABEL_DIR) if not (category / sub).is_dir()]
        if missing:
            raise DatasetError(f"{category}: category folder has no {' or '.join(missing)}/ folder")
    return categories


def _check_category_name(folder: Path) -> None:
    """Refuse a category name that would merge with a row the reports add, or break lines.

    A category named `macro` would be averaged into the summary's macro row (its n doubles
    and its deltas change): renaming the folder is the only safe way out.
    """
    name = folder.name
    reserved = RESERVED_CATEGORIES.get(name.casefold())
    if reserved:
        raise DatasetError(
            f"{folder}: category folder name {name!r} is reserved ({reserved}); rename the folder"
        )
    problem = _name_problem(name)
    if problem:
        raise DatasetError(
            f"{printable(str(folder.parent))}: category folder name '{printable(name)}' "
            f"{problem}; rename the folder"
        )


def _name_problem(name: str) -> str | None:
    """Why a file or folder name cannot name a category or an image, or None.

    A name that is not UTF-8 reaches Python with surrogates that no report, Parquet file or
    terminal can encode (runs would fail after training); a control character would break
    the reports' lines or act on the terminal that prints them.
    """
    if any(0xDC80 <= ord(character) <= 0xDCFF for character in name):
        return "is not valid UTF-8"
    if any(unicodedata.category(character) == "Cc" for character in name):
        return "contains a control character"
    return None


def _pngs(folder: Path, root: Path, dropped: list[DroppedFile]) -> dict[str, Path]:
    """PNG files of `folder` by name; anything else, and a name `_name_problem` refuses, is
    dropped with its reason (its path escaped to be printable)."""
    found = {}
    for path in _visible(folder):
        problem = _name_problem(path.name)
        if problem is None and path.is_file() and path.suffix.lower() == ".png":
            found[path.name] = path
            continue
        reason = f"file name {problem}; rename it" if problem else "not an image"
        dropped.append(DroppedFile(printable(path.relative_to(root).as_posix()), reason))
    return found


def _unreadable(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):  # its text repeats the full path
        return "unreadable PNG: not an image file PIL can identify"
    if isinstance(error, Image.DecompressionBombError):
        return f"too large: over {MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS)"
    return f"unreadable PNG: {error}"


def _png_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk (its first 24 bytes); None if not a PNG."""
    with path.open("rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _too_large(size: tuple[int, int]) -> str | None:
    height, width = size
    if height * width <= MAX_IMAGE_PIXELS:
        return None
    return (
        f"too large: {width}x{height} = {width * height:,} pixels, over the limit of "
        f"{MAX_IMAGE_PIXELS:,} (MAX_IMAGE_PIXELS); not decoded"
    )


def _read_header(path: Path, relative: str, modes: frozenset[str], kind: str) -> _Header:
    """Size and mode of one file, read without decoding its pixels.

    The PNG size is read from the file's first bytes before PIL opens it, so an oversized
    image costs 24 bytes of reading; other content goes through PIL's header parsing.
    """
    try:
        size = _png_size(path)
        problem = _too_large(size) if size is not None else None
        if problem is not None:
            return _Header(relative, size, problem)
        with Image.open(path) as image:
            size = (image.height, image.width)
            problem = _too_large(size)
            if problem is None and image.mode not in modes:
                problem = _mode_problem(kind, image.mode)
            return _Header(relative, size, problem)
    except Exception as error:  # PIL raises many types for damaged files
        return _Header(relative, problem=_unreadable(error))


def _mode_problem(kind: str, mode: str) -> str:
    return f"not RGB (mode {mode})" if kind == IMAGE_DIR else f"unsupported mask mode {mode}"


def _find_pairs(root: Path, categories: list[Path], dropped: list[DroppedFile]) -> list[_Pair]:
    """Every name present on both sides, with the headers of its two files."""
    found = []
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
            found.append((category.name, name, images[name], labels[name]))

    def headers(item: tuple[str, str, Path, Path]) -> _Pair:
        category, name, image_path, label_path = item
        image = _read_header(image_path, f"{category}/{IMAGE_DIR}/{name}", IMAGE_MODES, IMAGE_DIR)
        label = _read_header(label_path, f"{category}/{LABEL_DIR}/{name}", MASK_MODES, LABEL_DIR)
        return _Pair(category, name, image_path, label_path, image, label)

    return _in_threads(headers, found)


Item = TypeVar("Item")
Result = TypeVar("Result")


def _in_threads(work: Callable[[Item], Result], items: list[Item]) -> list[Result]:
    """`work` over `items` in threads, in order (file reads and PIL decoding drop the GIL)."""
    workers = min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, items))


def _size_text(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _pair_problem(pair: _Pair, expected: tuple[int, int] | None) -> tuple[str, str] | None:
    """(culprit path, reason) when the pair cannot be used, judged on headers only."""
    for header in (pair.image, pair.label):
        if header.problem:
            return header.relative, header.problem
    if pair.image.size != expected:
        return (
            pair.image.relative,
            f"wrong size {_size_text(pair.image.size)} (expected {_size_text(expected)})",
        )
    if pair.label.size != pair.image.size:
        label_size = _size_text(pair.label.size)
        return pair.label.relative, f"wrong size {label_size} (expected {_size_text(expected)})"
    return None


def _common_size(pairs: list[_Pair]) -> tuple[int, int] | None:
    """The most common image size (ties: the larger count first, then the smaller size)."""
    sizes = Counter(pair.image.size for pair in pairs if pair.image.problem is None)
    if not sizes:
        return None
    return min(sizes, key=lambda size: (-sizes[size], size))


def _drop_pair(pair: _Pair, culprit: str, reason: str, dropped: list[DroppedFile]) -> None:
    dropped.append(DroppedFile(culprit, reason))
    partner = pair.label.relative if culprit == pair.image.relative else pair.image.relative
    dropped.append(DroppedFile(partner, f"its pair was dropped ({culprit})"))


def _keep_by_header(pairs: list[_Pair], dropped: list[DroppedFile]) -> list[_Pair]:
    """The pairs whose headers are usable and of the common size; the others are dropped."""
    expected = _common_size(pairs)
    usable = []
    for pair in pairs:
        problem = _pair_problem(pair, expected)
        if problem is None:
            usable.append(pair)
        else:
            _drop_pair(pair, *problem, dropped)
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


def _check_total_size(root: Path, pairs: list[_Pair]) -> None:
    """Refuse, before decoding anything, a dataset too large to hold in memory."""
    pixels = sum(pair.image.size[0] * pair.image.size[1] for pair in pairs)
    if pixels > MAX_DATASET_PIXELS:
        raise DatasetError(
            f"{root}: {len(pairs)} pairs hold {pixels:,} image pixels, over the limit of "
            f"{MAX_DATASET_PIXELS:,} (MAX_DATASET_PIXELS): too large to decode into memory"
        )


def _decode_image(path: Path, into: np.ndarray) -> str | None:
    """Decode an RGB image into `into` (H, W, 3); RGBA whose alpha is fully opaque counts as
    RGB. Returns the problem, or None."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
                image = image.convert("RGB")
            if image.mode != "RGB":
                return f"not RGB (mode {image.mode})"
            into[...] = np.asarray(image, dtype=np.uint8)
            return None
    except Exception as error:  # PIL raises many types for damaged files
        return _unreadable(error)


def _decode_mask(path: Path, into: np.ndarray) -> MaskValues | str:
    """`read_mask`, or the problem of a file PIL cannot read."""
    try:
        return read_mask(path, into)
    except Exception as error:  # PIL raises many types for damaged files
        return _unreadable(error)


def _decode_pairs(
    pairs: list[_Pair], dropped: list[DroppedFile]
) -> tuple[list[_Pair], np.ndarray, np.ndarray, list[MaskValues]]:
    """Decode every pair into preallocated arrays (no second copy of the dataset is ever
    made); pairs that fail to decode are dropped with their reason."""
    height, width = pairs[0].image.size if pairs else (0, 0)
    images = np.empty((len(pairs), height, width, 3), dtype=np.uint8)
    masks = np.empty((len(pairs), height, width), dtype=np.uint8)

    def decode(index: int) -> tuple[str | None, MaskValues | str]:
        pair = pairs[index]
        return _decode_image(pair.image_path, images[index]), _decode_mask(
            pair.label_path, masks[index]
        )

    kept, read = [], []
    for index, (image_problem, mask) in enumerate(_in_threads(decode, list(range(len(pairs))))):
        pair = pairs[index]
        if image_problem is not None:
            _drop_pair(pair, pair.image.relative, image_problem, dropped)
        elif isinstance(mask, str):
            _drop_pair(pair, pair.label.relative, mask, dropped)
        else:
            kept.append(index)
            read.append(mask)
    if len(kept) < len(pairs):
        images, masks = images[kept], masks[kept]  # a copy, only when a file was damaged
    return [pairs[index] for index in kept], images, masks, read


def _foreground(
    masks: np.ndarray, pairs: list[_Pair], categories: list[str]
) -> tuple[dict[str, float], list[str]]:
    """Each category's foreground share, and the masks empty where their category is not."""
    shares = masks.mean(axis=(1, 2))  # (N,)
    in_category = {name: [] for name in categories}
    for index, pair in enumerate(pairs):
        in_category[pair.category].append(index)
    foreground = {name: float(shares[rows].mean()) for name, rows in in_category.items()}
    empty = [
        pairs[index].label.relative
        for index in range(len(pairs))
        if shares[index] == 0.0 and foreground[pairs[index].category] > 0.0
    ]
    return foreground, empty


@contextmanager
def _bomb_warnings_silenced() -> Iterator[None]:
    """Keep Pillow's DecompressionBombWarning off the terminal while files are read.

    The warning fires as soon as PIL opens a file over its own limit, before our size check
    can refuse it. Set around the worker threads by the thread that starts them: the filter
    list is only changed before the threads start and after they end.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def load_ebhi(root: str | Path) -> SegmentationData:
    """Read an EBHI-Seg folder into memory, dropping unusable files with their reasons.

    Images must be RGB PNGs of one common size (the most frequent one; an RGBA image whose
    alpha channel is fully opaque is accepted as RGB). Masks may be L, 1, P, LA, RGB or RGBA,
    in the dataset's one encoding (see `mask_encoding`). Sizes come from the file headers, so
    nothing is decoded before the limits (MAX_IMAGE_PIXELS, MAX_DATASET_PIXELS) are checked.
    Dot files and archive leftovers (`__MACOSX`) are ignored silently.

    Args:
        root: folder holding `<Category>/image/*.png` and `<Category>/label/*.png`.

    Returns:
        The decoded dataset, categories sorted, pairs sorted by file name within a category.

    Raises:
        DatasetError: root missing, empty or not in the layout, a reserved category name,
            no usable pair (or no category with MIN_CATEGORY_PAIRS pairs), a dataset over
            the size limit, or masks in no recognised encoding.

    Example:
        >>> data = load_ebhi("shared/data/EBHI-SEG-sample")
        >>> data.images.shape, data.report.total, data.report.encoding
        ((671, 224, 224, 3), 671, 'gray levels 0/255, foreground > 127')
    """
    root = Path(root).expanduser()
    category_dirs = _check_root(root)
    dropped: list[DroppedFile] = []
    with _bomb_warnings_silenced():
        usable = _keep_by_header(_find_pairs(root, category_dirs, dropped), dropped)
        _check_total_size(root, usable)
        usable, images, masks, read = _decode_pairs(usable, dropped)
    if not usable:
        reasons = "; ".join(f"{item.path}: {item.reason}" for item in dropped[:3])
        raise DatasetError(f"{root}: no usable image/label pair ({reasons or 'no PNG files'})")
    kept, categories = _keep_testable_categories(
        usable, sorted(folder.name for folder in category_dirs), dropped
    )
    if not kept:
        raise DatasetError(
            f"{root}: no category has {MIN_CATEGORY_PAIRS} usable pairs (one to train on, "
            "one to test on)"
        )
    if len(kept) < len(usable):
        rows = [index for index, pair in enumerate(usable) if pair.category in categories]
        images, masks, read = images[rows], masks[rows], [read[index] for index in rows]
    encoding = mask_encoding(root, [pair.label.relative for pair in kept], read)
    binarize(masks, encoding)
    foreground, empty = _foreground(masks, kept, categories)
    counts = {name: sum(pair.category == name for pair in kept) for name in categories}
    report = CleaningReport(str(root), counts, dropped, encoding.meaning, foreground, empty)
    return SegmentationData(
        images=images,
        masks=masks,
        category_ids=np.array([categories.index(pair.category) for pair in kept], dtype=np.int64),
        categories=categories,
        names=[f"{pair.category}/{pair.name}" for pair in kept],
        report=report,
    )
