"""`ablate data check` and `ablate data synth` through the real CLI entry point."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ablate.cli import main


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with a digest of its bytes (folders map to "")."""
    if not root.exists():
        return {}
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else ""
        for path in root.rglob("*")
    }


def test_check_real_sample(sample_root, capsys):
    assert main(["data", "check", str(sample_root)]) == 0
    out = capsys.readouterr().out
    assert "671" in out
    assert "Low-grade IN/image/GT2012149-2-400-001.png: no label" in out
    assert "Low-grade IN/image/GTGT2012149-2-400-001.png: no label" in out


def test_check_states_encoding_foreground_and_empty_masks(ebhi, capsys):
    for category in ("Normal", "Polyp"):
        for index in range(2):
            ebhi.pair(category, f"p{index}.png", mask=ebhi.mask(value=1))
    ebhi.pair("Polyp", "blank.png", mask=ebhi.mask(value=0))
    assert main(["data", "check", str(ebhi.root)]) == 0
    out = capsys.readouterr().out
    assert "masks: values 0/1, foreground 1" in out
    assert "  Normal        2       50.0%" in out
    assert "  Polyp         3       33.3%" in out
    assert "  Polyp/label/blank.png" in out


def test_check_huge_images_quickly_and_quietly(ebhi, capsys):
    root = ebhi.good()
    ebhi.huge("Normal/image/big.png")
    ebhi.huge("Normal/label/big.png", channels=1)
    assert main(["data", "check", str(root)]) == 0
    captured = capsys.readouterr()
    assert "Normal/image/big.png: too large: 10000x10000" in captured.out
    assert captured.err == ""  # no DecompressionBombWarning


def test_check_reports_drops_but_succeeds(ebhi, capsys):
    root = ebhi.good()
    ebhi.pair("Polyp", "bad.png", mask=ebhi.mask(side=16))
    assert main(["data", "check", str(root)]) == 0
    assert "Polyp/label/bad.png: wrong size 16x16 (expected 32x32)" in capsys.readouterr().out


def test_check_prints_file_names_escaped(ebhi, capsys):
    """A live ESC in a file name would act on the terminal (`\\x1b[2J` clears it)."""
    root = ebhi.good()
    ebhi.png("Normal/image/only\x1b[2J.png", ebhi.rgb(5))
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "Normal/image/only\\x1b[2J.png: file name contains a control character" in out


def test_check_bad_dataset_exits_2_naming_the_culprit(ebhi, bad_dataset, capsys):
    root = bad_dataset.build(ebhi)
    before = snapshot(root)
    assert main(["data", "check", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert bad_dataset.culprit in lines[0] and bad_dataset.says in lines[0]
    assert "Traceback" not in captured.err
    assert snapshot(root) == before  # nothing existing modified


def test_synth_writes_a_dataset_that_checks(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", str(out), "--per-class", "2", "--size", "32", "--seed", "3"]) == 0
    assert str(out) in capsys.readouterr().out
    assert len(list(out.glob("*/image/*.png"))) == 12
    assert main(["data", "check", str(out)]) == 0
    assert "total                12" in capsys.readouterr().out


def test_synth_refuses_a_non_empty_folder(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["data", "synth", str(out), "--per-class", "2", "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "not empty" in err
    assert [path.name for path in out.iterdir()] == ["keep.txt"]


def test_synth_rejects_out_of_range_arguments(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "x"), "--size", "8"]) == 2
    assert "--size" in capsys.readouterr().err
    assert main(["data", "synth", str(tmp_path / "x"), "--per-class", "0"]) == 2
    assert "--per-class" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
