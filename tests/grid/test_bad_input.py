"""Issue 9's bad-input catalogue, grid entries: each bad grid is answered by the CLI with exit
2, one message naming the file and the YAML key, no traceback, and nothing on disk changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.cli import main

MINIMAL = """\
study: tiny
data:
  root: ${ABLATE_TEST_ROOT:-/data/ebhi}
baseline:
  model:
    widths: [8, 16, 32]
  train:
    lr: 0.001
"""

# (id, files to write (the first is checked), words the single message must contain)
CATALOGUE = [
    (
        "unknown key",
        {"g.yaml": MINIMAL + "    epoch: 3\n"},
        ["g.yaml", "baseline.train.epoch (line 9)", "did you mean 'epochs'"],
    ),
    (
        "wrong type",
        {"g.yaml": MINIMAL.replace("lr: 0.001", "lr: fast")},
        ["g.yaml", "baseline.train.lr (line 8)", "valid number"],
    ),
    (
        "out of range",
        {"g.yaml": MINIMAL + "protocol:\n  test_fraction: 1.2\n"},
        ["g.yaml", "protocol.test_fraction (line 10)", "less than 1"],
    ),
    (
        "unknown component",
        {"g.yaml": MINIMAL + "ablations:\n  remove: [batchnorm]\n"},
        [
            "g.yaml",
            "ablations.remove[0] (line 10)",
            "unknown component 'batchnorm'",
            "valid: skip-1",
        ],
    ),
    (
        "duplicate variant",
        {"g.yaml": MINIMAL + "ablations:\n  swap:\n    norm: [none, none]\n"},
        ["g.yaml", "ablations.swap.norm[1] (line 11)", "duplicate variant name 'norm=none'"],
    ),
    (
        "YAML syntax error",
        {"g.yaml": MINIMAL + "ablations:\n  remove: [norm\n"},
        ["g.yaml", "YAML syntax error", "started at line 10"],
    ),
    (
        "unset variable",
        {"g.yaml": MINIMAL.replace("${ABLATE_TEST_ROOT:-/data/ebhi}", "${ABLATE_TEST_ROOT}")},
        ["g.yaml", "data.root (line 3)", "environment variable ABLATE_TEST_ROOT is not set"],
    ),
    (
        "missing extends",
        {"g.yaml": "extends: base.yaml\n" + MINIMAL},
        ["g.yaml", "extends (line 1)", "'base.yaml' not found"],
    ),
    (
        "extends cycle",
        {"g.yaml": "extends: g.yaml\n" + MINIMAL},
        ["g.yaml", "extends (line 1)", "extends cycle"],
    ),
    ("empty file", {"g.yaml": ""}, ["g.yaml", "empty"]),
    ("missing file", {}, ["g.yaml", "not found"]),
    (
        "variant equal to baseline",
        {"g.yaml": MINIMAL + "ablations:\n  swap:\n    lr: [0.001]\n"},
        ["g.yaml", "ablations.swap.lr[0] (line 11)", "identical to the baseline"],
    ),
]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("command", ["check", "show"])
@pytest.mark.parametrize(
    ("files", "words"), [case[1:] for case in CATALOGUE], ids=[case[0] for case in CATALOGUE]
)
def test_bad_grid_is_answered_with_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    files: dict[str, str],
    words: list[str],
) -> None:
    monkeypatch.delenv("ABLATE_TEST_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)  # a command that wrote a study directory would write here
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = _snapshot(tmp_path)
    code = main(["grid", command, str(tmp_path / "g.yaml")])
    captured = capsys.readouterr()
    assert code == 2
    assert [line for line in captured.err.splitlines() if line.startswith("error:")] == [
        captured.err.splitlines()[0]
    ]
    for word in words:
        assert word in captured.err, captured.err
    assert "Traceback" not in captured.err
    assert _snapshot(tmp_path) == before
