"""The synthetic generator: layout, determinism, category differences, cached generation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ablate.config import SyntheticConfig
from ablate.data import synth
from ablate.data.ebhi import load_ebhi
from ablate.data.synth import CATEGORY_STYLES, GENERATOR_VERSION, write_synthetic


def file_bytes(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*.png"))
    }


def test_layout_and_mask_encoding(synthetic_root):
    data = load_ebhi(synthetic_root)
    assert data.categories == sorted(CATEGORY_STYLES)
    assert data.report.counts == dict.fromkeys(sorted(CATEGORY_STYLES), 8)
    assert data.report.dropped == []
    assert data.images.shape == (48, 64, 64, 3)
    with Image.open(next(synthetic_root.glob("*/label/*.png"))) as mask:
        assert mask.mode == "L" and set(np.unique(np.asarray(mask)).tolist()) <= {0, 255}
    with Image.open(next(synthetic_root.glob("*/image/*.png"))) as image:
        assert image.mode == "RGB"


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = file_bytes(write_synthetic(tmp_path / "a", per_class=2, size=48, seed=5))
    again = file_bytes(write_synthetic(tmp_path / "b", per_class=2, size=48, seed=5))
    other = file_bytes(write_synthetic(tmp_path / "c", per_class=2, size=48, seed=6))
    assert first == again
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first)


def macro_dice(pred: np.ndarray, masks: np.ndarray, category_ids: np.ndarray) -> float:
    scores = []
    for category in np.unique(category_ids):
        p, t = pred[category_ids == category], masks[category_ids == category].astype(bool)
        scores.append(2 * (p & t).sum() / (p.sum() + t.sum()))
    return float(np.mean(scores))


def test_foreground_share_differs_and_colour_alone_is_not_enough(synthetic_root):
    data = load_ebhi(synthetic_root)
    shares = np.array([data.masks[data.category_ids == c].mean() for c in range(6)])
    # Some categories mostly background, some mostly foreground: all-foreground is no answer.
    assert shares.min() < 0.42 and shares.max() > 0.6
    floor = macro_dice(np.ones(data.masks.shape, bool), data.masks, data.category_ids)
    assert floor < 0.72
    # Foreground is darker on average, but pale lumens inside glands are foreground too: the
    # best brightness threshold beats the floor yet stays far from what a U-Net reaches.
    brightness = data.images.mean(axis=-1)
    best = max(
        macro_dice(brightness < level, data.masks, data.category_ids)
        for level in range(100, 240, 5)
    )
    assert floor < best < 0.85


def test_synthetic_root_generates_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    config = SyntheticConfig(per_class=2, size=32, seed=1)
    root = synth.synthetic_root(config)
    assert root == tmp_path / "cache" / "synthetic" / f"v{GENERATOR_VERSION}-2-32-1"
    stamps = {path: path.stat().st_mtime_ns for path in root.rglob("*.png")}
    assert len(stamps) == 24
    assert synth.synthetic_root(config) == root
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*.png")} == stamps
    assert [path.name for path in root.parent.iterdir()] == [root.name]  # no staging left over


def test_synthetic_root_survives_a_race(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))
    config = SyntheticConfig(per_class=3, size=32, seed=2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        roots = list(pool.map(lambda _: synth.synthetic_root(config), range(2)))
    assert roots[0] == roots[1]
    assert len(list(roots[0].rglob("*.png"))) == 36
    assert [path.name for path in roots[0].parent.iterdir()] == [roots[0].name]
    assert file_bytes(roots[0]) == file_bytes(write_synthetic(tmp_path / "ref", 3, 32, 2))
