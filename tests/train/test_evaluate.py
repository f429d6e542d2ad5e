"""Evaluation upsamples logits to the native mask size and counts per image and class.

The networks here are fixed logit maps (a real nn.Module with no weights to learn), so the
expected counts can be worked out by hand.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from torch import nn

from ablate.config import TrainConfig
from ablate.train.device import plan_device
from ablate.train.evaluate import VAL_SCORES, evaluate_loss, predict_counts
from ablate.train.metrics import IMAGE_COLUMNS, class_metrics
from ablate.train.tensorboard import log_overlays, open_writer, overlays


class FixedLogits(nn.Module):
    """Returns the same (C, h, w) logits for every image of the batch."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(images.shape[0], -1, -1, -1)


def _half_plane(channels: int = 1, size: int = 8) -> torch.Tensor:
    """+1 on the left half, -1 on the right half: (channels, size, size)."""
    logits = -torch.ones(channels, size, size)
    logits[:, :, : size // 2] = 1.0
    return logits


def _batch(
    masks: torch.Tensor, categories: list[int], indices: list[int]
) -> dict[str, torch.Tensor]:
    return {
        "image": torch.zeros(len(categories), 3, 8, 8),  # training resolution
        "mask": masks.long(),  # native resolution
        "category": torch.tensor(categories),
        "index": torch.tensor(indices),
    }


def test_binary_counts_are_taken_at_native_resolution() -> None:
    left_half = torch.zeros(16, 16, dtype=torch.long)
    left_half[:, :8] = 1
    left_six = torch.zeros(16, 16, dtype=torch.long)
    left_six[:, :6] = 1
    loader = [_batch(torch.stack([left_half, left_six]), [0, 1], [5, 2])]
    rows = predict_counts(
        FixedLogits(_half_plane()), loader, "binary", ["A", "B"], "cpu", names=list("abcdef")
    )
    assert list(rows.columns) == IMAGE_COLUMNS
    # The 8 px logit edge upsampled bilinearly lands exactly at column 8 of 16.
    assert rows[["tp", "fp", "fn", "tn"]].values.tolist() == [[128, 0, 0, 128], [96, 32, 0, 128]]
    assert rows["image"].tolist() == ["f", "c"]
    assert rows["category"].tolist() == ["A", "B"]
    assert set(rows["class_name"]) == {"foreground"}


def test_multiclass_counts_one_row_per_image_and_class() -> None:
    logits = torch.zeros(3, 8, 8)  # background, A, B
    logits[2] = 5.0 * _half_plane()[0]  # class B on the left half, symmetric around 0
    tissue = torch.zeros(1, 16, 16, dtype=torch.long)
    tissue[0, :, :8] = 1
    loader = [_batch(tissue, [1], [0])]  # an image of category B
    rows = predict_counts(FixedLogits(logits), loader, "multiclass", ["A", "B"], "cpu").set_index(
        "class_name"
    )
    assert rows.loc["A", ["tp", "fp", "fn", "tn"]].tolist() == [0, 0, 0, 256]
    assert rows.loc["B", ["tp", "fp", "fn", "tn"]].tolist() == [128, 0, 0, 128]
    assert rows["image"].tolist() == ["0", "0"]  # no names given: the index as text


def test_evaluate_loss_returns_device_tensors_without_sync() -> None:
    left_half = torch.zeros(2, 16, 16, dtype=torch.long)
    left_half[:, :, :8] = 1

    def l1_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(logits) - target).abs().mean()

    loader = [_batch(left_half, [0, 1], [0, 1])]
    plan = plan_device(TrainConfig(), "cpu")
    loss, scores = evaluate_loss(
        FixedLogits(_half_plane() * 50), loader, l1_loss, "binary", 2, plan
    )
    assert loss.dim() == 0 and scores.shape == (len(VAL_SCORES),)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert scores.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_evaluate_loss_macro_scores_match_the_count_metrics() -> None:
    """Category 0: left half predicted, left six columns true; category 1: nothing true."""
    left_six = torch.zeros(16, 16, dtype=torch.long)
    left_six[:, :6] = 1
    empty = torch.zeros(16, 16, dtype=torch.long)
    loader = [_batch(torch.stack([left_six, empty]), [0, 1], [0, 1])]
    plan = plan_device(TrainConfig(), "cpu")
    model = FixedLogits(_half_plane())

    def zero_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.sum() * 0

    _, scores = evaluate_loss(model, loader, zero_loss, "binary", 2, plan)
    rows = predict_counts(model, loader, "binary", ["A", "B"], "cpu")
    expected = class_metrics(rows, ["A", "B"], "binary")[list(VAL_SCORES)].mean()
    assert scores.tolist() == pytest.approx(expected.tolist())
    # Category B predicts 128 px where nothing is true: precision 0 and, by the rule for an
    # empty truth with false positives, recall 0; A has recall 1 and precision 96/128.
    assert expected["recall"] == 0.5 and expected["precision"] == pytest.approx(0.375)


def test_overlays_mark_errors_at_native_resolution() -> None:
    left_six = torch.zeros(1, 16, 16, dtype=torch.long)
    left_six[0, :, :6] = 1
    loader = [_batch(left_six, [0], [0])]
    plan = plan_device(TrainConfig(), "cpu")
    panels = overlays(FixedLogits(_half_plane()), loader, "binary", plan)
    assert panels.shape == (1, 3, 16, 32)  # image | overlay, at the 16 px mask size
    assert panels.min() >= 0.0 and panels.max() <= 1.0
    overlay = panels[0, :, :, 16:]
    # Columns 0-5: correct tissue (green wins); 6-7: false alarm (red wins); 8+: untouched.
    assert overlay[1, 0, 2] > overlay[0, 0, 2]
    assert overlay[0, 0, 7] > overlay[1, 0, 7]
    assert torch.equal(overlay[:, :, 8:], panels[0, :, :, 8:16])


def _event_images(logdir: Path) -> dict[str, Summary.Image]:
    """tag -> image summary, read back from the event files (TFRecord framing: u64 length,
    u32 length CRC, the Event bytes, u32 data CRC)."""
    images = {}
    for path in logdir.glob("events.out.tfevents.*"):
        raw, offset = path.read_bytes(), 0
        while offset < len(raw):
            (length,) = struct.unpack("<Q", raw[offset : offset + 8])
            event = Event.FromString(raw[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            images.update({v.tag: v.image for v in event.summary.value if v.HasField("image")})
    return images


def test_logged_overlays_decode_with_their_error_colours(tmp_path: Path) -> None:
    masks = torch.zeros(2, 16, 16, dtype=torch.long)
    masks[:, :, :6] = 1
    loader = [_batch(masks, [0, 1], [0, 1])]
    writer = open_writer(tmp_path / "tb")
    log_overlays(
        writer,
        FixedLogits(_half_plane()),
        loader,
        "binary",
        plan_device(TrainConfig(), "cpu"),
        step=3,
    )
    writer.close()
    image = _event_images(tmp_path / "tb")["predictions"]
    pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    assert (image.height, image.width) == pixels.shape[:2] == (2 * 16, 2 * 16)  # 2 panels stacked
    overlay = pixels[:16, 16:].astype(int)
    # JPEG keeps the colours: green where tissue was found, red on the false alarm columns.
    assert overlay[8, 2, 1] > overlay[8, 2, 0] + 40
    assert overlay[8, 7, 0] > overlay[8, 7, 1] + 40
