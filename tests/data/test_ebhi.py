"""The EBHI-Seg reader on real PNG files: pairing, mask encodings, limits, every drop reason."""

from __future__ import annotations

import json
import os
import struct
import warnings

import numpy as np
import pytest
from PIL import Image

from ablate.data import ebhi as ebhi_module
from ablate.data.ebhi import MAX_IMAGE_PIXELS, load_ebhi
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


def test_file_names_with_control_characters_or_not_utf8_are_dropped_escaped(ebhi):
    """Such a pair is kept out (a name no report, Parquet file or terminal can carry), and
    its path is stored escaped, so every report that prints or writes it is safe."""
    root = ebhi.good()
    not_utf8 = os.fsdecode(b"x\xfe.png")
    ebhi.pair("Normal", "clear\x1b[2J.png")
    ebhi.pair("Normal", not_utf8)
    (root / "Polyp" / "image" / "bell\x07.txt").write_text("notes")
    data = load_ebhi(root)
    control = "file name contains a control character; rename it"
    assert dropped(data) == {
        "Normal/image/clear\\x1b[2J.png": control,
        "Normal/label/clear\\x1b[2J.png": control,
        "Normal/image/x\\xfe.png": "file name is not valid UTF-8; rename it",
        "Normal/label/x\\xfe.png": "file name is not valid UTF-8; rename it",
        "Polyp/image/bell\\x07.txt": control,
    }
    assert len(data) == 6 and all(name.isprintable() for name in data.names)
    text = data.report.format() + json.dumps(data.report.to_dict(), ensure_ascii=False)
    assert all(line.isprintable() for line in text.splitlines())
    text.encode("utf-8")  # no surrogate left to fail a write


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
    # Every gray level occurs and some masks peak at 253: still recognised as 0/255.
    assert data.report.encoding == "gray levels 0/255, foreground > 127"
    assert data.report.empty_masks == []
    assert data.report.foreground["Adenocarcinoma"] == pytest.approx(0.682, abs=0.001)
    assert data.report.total_foreground == pytest.approx(data.masks.mean(), abs=1e-9)


# --- Mask encodings: each recognised for the whole dataset, or refused ------------------------


def test_masks_0_1_are_read_as_foreground(ebhi):
    for category in ("Normal", "Polyp"):
        for index in range(2):
            ebhi.pair(category, f"p{index}.png", mask=ebhi.mask(value=1))
    data = load_ebhi(ebhi.root)
    np.testing.assert_array_equal(data.masks[0], ebhi.mask(value=1))
    assert data.report.encoding == "values 0/1, foreground 1"
    assert data.report.foreground == {"Normal": 0.5, "Polyp": 0.5}


def test_palette_with_dark_foreground_colour_is_read_by_index(ebhi):
    """A dark red foreground is gray 27 (< 127): by colour it would all be background."""
    for category in ("Normal", "Polyp"):
        for index in range(2):
            ebhi.png(f"{category}/image/p{index}.png", ebhi.rgb(index))
            ebhi.palette_png(
                f"{category}/label/p{index}.png", ebhi.mask(value=1), [(0, 0, 0), (90, 0, 0)]
            )
    data = load_ebhi(ebhi.root)
    np.testing.assert_array_equal(data.masks[0], ebhi.mask(value=1))
    assert data.report.encoding == "palette indices, foreground any index but 0"


def test_gray_palette_is_read_by_colour(ebhi):
    """White at index 0 and black at index 1: the white pixels are the foreground."""
    for category in ("Normal", "Polyp"):
        for index in range(2):
            ebhi.png(f"{category}/image/p{index}.png", ebhi.rgb(index))
            ebhi.palette_png(
                f"{category}/label/p{index}.png", ebhi.mask(value=1), [(255,) * 3, (0,) * 3]
            )
    data = load_ebhi(ebhi.root)
    np.testing.assert_array_equal(data.masks[0], 1 - ebhi.mask(value=1))
    assert data.report.encoding == "gray levels 0/255, foreground > 127"


def test_coloured_rgb_masks_count_their_brightest_channel(ebhi):
    root = ebhi.good(("Normal",), pairs=2)
    red = np.zeros((ebhi.side, ebhi.side, 3), np.uint8)
    red[..., 0] = ebhi.mask()  # pure red foreground: gray 76, brightest channel 255
    ebhi.pair("Polyp", "a.png", mask=red)
    ebhi.pair("Polyp", "b.png", mask=red)
    data = load_ebhi(root)
    np.testing.assert_array_equal(data.masks[data.names.index("Polyp/a.png")], ebhi.mask(value=1))


def test_bilevel_masks_are_0_255(ebhi):
    root = ebhi.good(("Normal",), pairs=2)
    path = ebhi.png("Polyp/label/a.png", ebhi.mask())
    Image.open(path).convert("1").save(path)
    ebhi.png("Polyp/image/a.png", ebhi.rgb(1))
    ebhi.pair("Polyp", "b.png")
    data = load_ebhi(root)
    np.testing.assert_array_equal(data.masks[data.names.index("Polyp/a.png")], ebhi.mask(value=1))


def test_empty_masks_are_named_where_their_category_has_foreground(ebhi):
    root = ebhi.good(("Normal", "Polyp"), pairs=2)
    ebhi.pair("Normal", "blank.png", mask=ebhi.mask(value=0))
    for index in range(2):  # a whole category without foreground is shown, not listed
        ebhi.pair("Serrated adenoma", f"s{index}.png", mask=ebhi.mask(value=0))
    data = load_ebhi(root)
    report = data.report
    assert report.empty_masks == ["Normal/label/blank.png"]
    assert report.foreground["Normal"] == pytest.approx(1 / 3)
    assert report.foreground["Serrated adenoma"] == 0.0
    text = report.format()
    assert "1 empty mask(s) where the rest of their category has foreground" in text
    assert "  Normal/label/blank.png" in text
    assert "warning: no mask of Serrated adenoma has any foreground" in text
    stored = json.loads(json.dumps(report.to_dict()))
    assert stored["mask_encoding"] == "gray levels 0/255, foreground > 127"
    assert stored["empty_masks"] == ["Normal/label/blank.png"]
    assert stored["foreground"]["Polyp"] == 0.5


def test_noise_of_ones_in_a_0_255_mask_is_not_taken_for_a_0_1_mask(ebhi):
    """Compression noise: a nearly black mask with a few 1s stays empty, and is named."""
    root = ebhi.good(("Normal", "Polyp"), pairs=2)
    noise = ebhi.mask(value=0)
    noise[0, :3] = 1  # 3 pixels of 1024, under MIXED_ENCODING_SHARE
    ebhi.pair("Polyp", "noise.png", mask=noise)
    data = load_ebhi(root)
    assert data.masks[data.names.index("Polyp/noise.png")].max() == 0
    assert data.report.empty_masks == ["Polyp/label/noise.png"]


# --- Limits: sizes read from the headers before anything is decoded --------------------------


def test_oversized_image_is_dropped_from_its_header_without_a_warning(ebhi):
    root = ebhi.good()
    ebhi.huge("Normal/image/big.png")
    ebhi.png("Normal/label/big.png", ebhi.mask())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_ebhi(root)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert len(data) == 6
    assert dropped(data)["Normal/image/big.png"] == (
        f"too large: 10000x10000 = 100,000,000 pixels, over the limit of "
        f"{MAX_IMAGE_PIXELS:,} (MAX_IMAGE_PIXELS); not decoded"
    )


def _bmp_header(width: int, height: int) -> bytes:
    """A BMP file header declaring `width` x `height` (no pixel data): PIL parses it."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40, 0, 0, 14 + 40) + info


def test_oversized_non_png_content_is_refused_by_pil_header_without_a_warning(ebhi):
    """A .png that is really a BMP goes through PIL's header parsing: Pillow's bomb warning
    (it fires on open) stays off the terminal and our limit refuses the file."""
    root = ebhi.good()
    (root / "Polyp" / "image" / "fake.png").write_bytes(_bmp_header(10_000, 10_000))
    ebhi.png("Polyp/label/fake.png", ebhi.mask())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_ebhi(root)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert dropped(data)["Polyp/image/fake.png"].startswith("too large: 10000x10000")


def test_dataset_over_the_pixel_limit_is_refused_before_decoding(ebhi, monkeypatch):
    root = ebhi.good()  # 6 pairs of 32x32 = 6144 pixels
    monkeypatch.setattr(ebhi_module, "MAX_DATASET_PIXELS", 6000)
    with pytest.raises(DatasetError, match=r"6 pairs hold 6,144 image pixels.*MAX_DATASET_PIXELS"):
        load_ebhi(root)


def test_reserved_names_are_the_rows_the_reports_add():
    """Kept in step with the summaries: a category may never share a name with their rows."""
    from ablate.prune.summary import MACRO as PRUNING_MACRO
    from ablate.report.stats import MACRO

    assert {MACRO, PRUNING_MACRO, "total"} <= set(ebhi_module.RESERVED_CATEGORIES)


def test_reserved_category_names_are_refused(ebhi):
    root = ebhi.good(("Normal", "Macro"))
    with pytest.raises(DatasetError, match=r"Macro: category folder name 'Macro' is reserved"):
        load_ebhi(root)
