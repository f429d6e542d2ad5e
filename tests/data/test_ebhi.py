"""The EBHI-Seg reader on real PNG files: pairing, binarization, and every drop reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ablate.data.ebhi import load_ebhi
from ablate.errors import DatasetError


def dropped(data) -> dict[str, str]:
    return {item.path: item.reason for item in data.report.dropped}


def test_pairs_categories_and_arrays(ebhi):
    data = load_ebhi(ebhi.good(("Polyp", "Normal"), pairs=3))
    assert data.categories == ["Normal", "Polyp"]
    assert data.images.shape == (6, ebhi.side, ebhi.side, 3) and data.images.dtype == np.uint8
    assert data.masks.shape == (6, ebhi.side, ebhi.side) and data.masks.dtype == np.uint8
    assert data.category_ids.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.category_ids.dtype == np.int64
    assert data.names[0] == "Normal/p0.png"
    np.testing.assert_array_equal(data.images[0], ebhi.rgb(0))
    np.testing.assert_array_equal(data.masks[0], ebhi.mask(value=1))
    assert data.report.counts == {"Normal": 3, "Polyp": 3} and data.report.dropped == []


def test_orphan_image_and_label_without_image(ebhi):
    root = ebhi.good()
    ebhi.png("Normal/image/orphan.png", ebhi.rgb(9))
    ebhi.png("Polyp/label/lonely.png", ebhi.mask())
    data = load_ebhi(root)
    assert len(data) == 6
    assert dropped(data) == {
        "Normal/image/orphan.png": "no label",
        "Polyp/label/lonely.png": "label without image",
    }


def test_gray_masks_binarized_above_127(ebhi):
    root = ebhi.good(("Normal",), pairs=1)
    side = ebhi.side
    gray = np.linspace(1, 254, side * side).astype(np.uint8).reshape(side, side)
    assert {127, 128} <= set(np.unique(gray).tolist())  # every value 1..254 occurs
    ebhi.pair("Normal", "gray.png", mask=gray)
    data = load_ebhi(root)
    mask = data.masks[data.names.index("Normal/gray.png")]
    np.testing.assert_array_equal(mask, (gray > 127).astype(np.uint8))
    assert mask[gray == 127].max() == 0 and mask[gray == 128].min() == 1


def test_mask_peaking_at_253_is_foreground(ebhi):
    root = ebhi.good(("Normal",), pairs=1)
    ebhi.pair("Normal", "peak.png", mask=ebhi.mask(value=253))
    data = load_ebhi(root)
    mask = data.masks[data.names.index("Normal/peak.png")]
    assert mask.sum() == ebhi.side * ebhi.side // 2


def test_rgb_mask_converted_to_gray(ebhi):
    root = ebhi.good(("Normal",), pairs=1)
    ebhi.pair("Normal", "rgb.png", mask=np.repeat(ebhi.mask()[..., None], 3, axis=2))
    data = load_ebhi(root)
    np.testing.assert_array_equal(
        data.masks[data.names.index("Normal/rgb.png")], ebhi.mask(value=1)
    )


def test_hidden_files_ignored_silently(ebhi):
    root = ebhi.good()
    (root / ".DS_Store").write_bytes(b"\0\1")
    (root / "Normal" / ".DS_Store").write_bytes(b"\0\1")
    (root / "Normal" / "image" / ".DS_Store").write_bytes(b"\0\1")
    ebhi.png("Normal/image/._p0.png", ebhi.rgb(3))
    (root / ".hidden-category").mkdir()
    (root / "__MACOSX").mkdir()
    data = load_ebhi(root)
    assert len(data) == 6 and data.report.dropped == []
    assert data.categories == ["Normal", "Polyp"]


def test_non_png_dropped_as_not_an_image(ebhi):
    root = ebhi.good()
    (root / "Normal" / "image" / "notes.txt").write_text("hello")
    assert dropped(load_ebhi(root)) == {"Normal/image/notes.txt": "not an image"}


def test_wrong_size_image_dropped_with_its_label(ebhi):
    root = ebhi.good(pairs=3)
    ebhi.pair("Normal", "small.png", image=ebhi.rgb(1, side=24), mask=ebhi.mask(24))
    data = load_ebhi(root)
    assert len(data) == 6
    reasons = dropped(data)
    assert reasons["Normal/image/small.png"] == "wrong size 24x24 (expected 32x32)"
    assert "Normal/label/small.png" in reasons


def test_mask_of_other_size_dropped(ebhi):
    root = ebhi.good()
    ebhi.pair("Polyp", "bad-mask.png", mask=ebhi.mask(side=16))
    reasons = dropped(load_ebhi(root))
    assert reasons["Polyp/label/bad-mask.png"] == "wrong size 16x16 (expected 32x32)"


def test_truncated_png_dropped_as_unreadable(ebhi):
    root = ebhi.good()
    path = ebhi.png("Normal/image/broken.png", ebhi.rgb(5))
    ebhi.png("Normal/label/broken.png", ebhi.mask())
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    reason = dropped(load_ebhi(root))["Normal/image/broken.png"]
    assert reason.startswith("unreadable PNG")


def test_garbage_png_dropped_as_unreadable(ebhi):
    root = ebhi.good()
    (root / "Normal" / "label" / "p0.png").write_bytes(b"not a png at all")
    data = load_ebhi(root)
    assert dropped(data)["Normal/label/p0.png"].startswith("unreadable PNG")
    assert "Normal/p0.png" not in data.names


def test_grayscale_image_dropped_as_not_rgb(ebhi):
    root = ebhi.good()
    ebhi.pair("Normal", "gray.png", image=ebhi.rgb(2)[..., 0])
    assert dropped(load_ebhi(root))["Normal/image/gray.png"] == "not RGB (mode L)"


def test_rgba_image_accepted_only_when_opaque(ebhi):
    root = ebhi.good(("Normal",), pairs=1)
    opaque = np.dstack([ebhi.rgb(4), np.full((ebhi.side, ebhi.side), 255, np.uint8)])
    translucent = np.dstack([ebhi.rgb(4), np.full((ebhi.side, ebhi.side), 100, np.uint8)])
    ebhi.pair("Normal", "opaque.png", image=opaque)
    ebhi.pair("Normal", "translucent.png", image=translucent)
    data = load_ebhi(root)
    np.testing.assert_array_equal(data.images[data.names.index("Normal/opaque.png")], ebhi.rgb(4))
    assert dropped(data) == {
        "Normal/image/translucent.png": "not RGB (mode RGBA)",
        "Normal/label/translucent.png": "its pair was dropped (Normal/image/translucent.png)",
    }


def test_category_too_small_to_test_is_left_out_with_its_reason(ebhi):
    root = ebhi.good(("Normal", "Polyp"), pairs=2)
    ebhi.pair("Serrated adenoma", "only.png")
    (root / "Empty" / "image").mkdir(parents=True)
    (root / "Empty" / "label").mkdir()
    data = load_ebhi(root)
    assert data.categories == ["Normal", "Polyp"] and len(data) == 4
    assert data.report.counts == {"Normal": 2, "Polyp": 2}
    reasons = dropped(data)
    assert reasons["Serrated adenoma/"].startswith("category left out: 1 usable pair(s)")
    assert reasons["Empty/"].startswith("category left out: 0 usable pair(s)")


def test_no_category_large_enough_is_a_dataset_error(ebhi):
    root = ebhi.good(("Normal", "Polyp"), pairs=1)
    with pytest.raises(DatasetError, match="no category has 2 usable pairs"):
        load_ebhi(root)


def test_bad_roots_raise_dataset_error(ebhi, bad_dataset):
    with pytest.raises(DatasetError) as caught:
        load_ebhi(bad_dataset.build(ebhi))
    message = str(caught.value)
    assert bad_dataset.culprit in message and bad_dataset.says in message


def test_report_format_and_dict(ebhi):
    root = ebhi.good()
    ebhi.png("Normal/image/orphan.png", ebhi.rgb(9))
    report = load_ebhi(root).report
    text = report.format()
    assert "Normal" in text and "total" in text and " 6" in text
    assert "Normal/image/orphan.png: no label" in text
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["total"] == 6
    assert as_dict["dropped"] == [{"path": "Normal/image/orphan.png", "reason": "no label"}]


def test_real_sample(sample_root):
    data = load_ebhi(sample_root)
    assert len(data) == 671 and data.report.total == 671
    assert data.images.shape == (671, 224, 224, 3)
    assert data.categories == [
        "Adenocarcinoma",
        "High-grade IN",
        "Low-grade IN",
        "Normal",
        "Polyp",
        "Serrated adenoma",
    ]
    assert data.report.counts["Low-grade IN"] == 192
    assert dropped(data) == {
        "Low-grade IN/image/GT2012149-2-400-001.png": "no label",
        "Low-grade IN/image/GTGT2012149-2-400-001.png": "no label",
    }
    assert set(np.unique(data.masks)) == {0, 1}
    assert 0.55 < data.masks.mean() < 0.75  # the README's ~64% foreground
    assert len(set(data.names)) == 671
