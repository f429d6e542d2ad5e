"""The `ablate` command line: subcommands mapped to plain functions.

Exit codes: 0 success, 2 bad input (one message, no traceback), 1 anything else. Command
modules are imported only when their subcommand runs, so `ablate --help` stays fast and a
data check does not pay for importing Ray. An unexpected failure prints one line saying
what failed and where its traceback was saved (a crash log in the user's cache).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from ablate import __version__
from ablate.cache import cache_dir
from ablate.errors import MachineError, StudyIncomplete, UserError, out_of_space
from ablate.plugins import load_plugins

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exit 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message}\n")


def _command(target: str) -> Callable[..., None]:
    """Resolve 'module:function' lazily."""
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _floats(text: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from error


class _FlatNumbers(argparse.Action):
    """Numbers given as `0.1,0.25`, `0.1 0.25` or both, stored as one flat list."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, [number for numbers in values for number in numbers])


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    """`--set KEY=VALUE`, repeatable: keys of the grid changed without editing its file."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a grid key (repeatable), e.g. --set protocol.seeds=1 "
        "--set baseline.train.epochs=2; values are YAML",
    )


def _add_data(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect or generate datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    check = data_sub.add_parser("check", help="scan a dataset folder and print the cleaning report")
    check.add_argument("root", help="folder in the EBHI-Seg layout")
    check.set_defaults(target="ablate.data.commands:data_check", keys=("root",))
    synth = data_sub.add_parser("synth", help="write a synthetic EBHI-like dataset")
    synth.add_argument("out", help="output folder (created)")
    synth.add_argument("--per-class", type=int, default=24, help="pairs per category")
    synth.add_argument("--size", type=int, default=224, help="tile side in pixels")
    synth.add_argument("--seed", type=int, default=0, help="generator seed")
    synth.set_defaults(
        target="ablate.data.commands:data_synth", keys=("out", "per_class", "size", "seed")
    )


def _add_grid(subparsers: argparse._SubParsersAction) -> None:
    grid = subparsers.add_parser("grid", help="validate and inspect ablation grids")
    grid_sub = grid.add_subparsers(dest="grid_command", required=True, parser_class=_Parser)
    check = grid_sub.add_parser("check", help="validate grids; print variants and run counts")
    check.add_argument("grids", nargs="+", help="grid YAML files")
    _add_overrides(check)
    check.set_defaults(target="ablate.grid.commands:grid_check", keys=("grids", "overrides"))
    show = grid_sub.add_parser("show", help="table of variants and what each changes")
    show.add_argument("grid", help="grid YAML file")
    _add_overrides(show)
    show.set_defaults(target="ablate.grid.commands:grid_show", keys=("grid", "overrides"))
    components = grid_sub.add_parser("components", help="every removable and swappable component")
    components.set_defaults(target="ablate.grid.commands:grid_components", keys=())


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="one run in-process, no Ray (debugging)")
    train.add_argument("grid", help="grid or config YAML file")
    train.add_argument("--seed", type=int, required=True, help="seed: split, weights, augmentation")
    train.add_argument("--variant", default="baseline", help="variant name (default baseline)")
    train.add_argument(
        "--out", default=None, help="output folder (default runs/train/<study>/<variant>/seed=<s>)"
    )
    _add_overrides(train)
    train.set_defaults(
        target="ablate.train.commands:train_command",
        keys=("grid", "seed", "variant", "out", "overrides"),
    )


def _add_run(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run a whole grid as Ray Tune trials")
    run.add_argument("grid", help="grid YAML file")
    run.add_argument("--out", default=None, help="study directory or URI (default runs/<study>)")
    run.add_argument(
        "--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else local)"
    )
    # Running again resumes with or without --resume; the flag only says so when there is
    # nothing to resume yet, so the help must not suggest it is needed to continue.
    run.add_argument(
        "--resume",
        action="store_true",
        help="expect an existing study: print a note when there is none yet (running again "
        "always continues a study, with or without --resume)",
    )
    run.add_argument("--max-concurrent", type=int, default=None, help="trials running at once")
    _add_overrides(run)
    run.set_defaults(
        target="ablate.engine.commands:run_command",
        keys=("grid", "out", "address", "resume", "max_concurrent", "overrides"),
    )


def _add_status(subparsers: argparse._SubParsersAction) -> None:
    status = subparsers.add_parser(
        "status", help="where a study stands (read-only; also while `ablate run` runs)"
    )
    status.add_argument("study_dir", help="study directory or URI")
    status.add_argument("--json", action="store_true", dest="as_json", help="print JSON")
    status.set_defaults(
        target="ablate.engine.commands:status_command", keys=("study_dir", "as_json")
    )


def _add_summarize(subparsers: argparse._SubParsersAction) -> None:
    summarize = subparsers.add_parser("summarize", help="delta tables, plots and report.html")
    summarize.add_argument("study_dir", help="study directory")
    summarize.add_argument(
        "--metric",
        default=None,
        choices=["dice", "iou", "precision", "recall", "accuracy"],
        help="headline metric of the verdicts, plots and ranking (default: analysis.metric)",
    )
    summarize.set_defaults(
        target="ablate.report.commands:summarize_command", keys=("study_dir", "metric")
    )


def _add_prune(subparsers: argparse._SubParsersAction) -> None:
    prune = subparsers.add_parser("prune", help="pruning sensitivity of a study's trained runs")
    prune.add_argument("study_dir", help="study directory")
    prune.add_argument("--variants", nargs="+", default=None, help="variants (default all)")
    prune.add_argument("--methods", nargs="+", default=None, help="pruning methods")
    prune.add_argument("--scope", nargs="+", default=None, dest="scopes", help="scopes")
    prune.add_argument(
        "--amounts",
        nargs="+",
        type=_floats,
        action=_FlatNumbers,
        default=None,
        help="shares of weights to prune, e.g. 0.1,0.25,0.5 or 0.1 0.25 0.5",
    )
    prune.add_argument("--address", default=None, help="Ray cluster address")
    prune.set_defaults(
        target="ablate.prune.commands:prune_command",
        keys=("study_dir", "variants", "methods", "scopes", "amounts", "address"),
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="ablate", description="Ray-distributed ablation studies for U-Net segmentation"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (
        _add_data,
        _add_grid,
        _add_train,
        _add_run,
        _add_status,
        _add_summarize,
        _add_prune,
    ):
        add(subparsers)
    return parser


def _disk_full_message(error: OSError) -> str:
    """One sentence for a write that a full disk stopped, outside a study's own checks."""
    where = f" writing {error.filename}" if error.filename else ""
    return (
        f"the disk is full{where} (No space left on device). Stored results are kept: free "
        "some space and run the same command again"
    )


def _crash_report(error: BaseException, argv: list[str], command: str) -> str:
    """The crash log's text: what ran, versions and the traceback; never the environment
    (it may hold credentials), and no local variables."""
    lines = [
        f"ablate {command} failed unexpectedly at {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
        f"command: ablate {' '.join(argv)}",
        f"ablate {__version__}, Python {platform.python_version()}, {platform.platform()}",
        "",
        *traceback.format_exception(type(error), error, error.__traceback__),
    ]
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


def _save_crash(error: BaseException, argv: list[str], command: str) -> Path:
    """Write the crash log under <cache>/crash/ (a new file each time); returns its path."""
    folder = cache_dir() / "crash"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}-{os.getpid()}-{command.replace(' ', '-')}.log"
    with path.open("x", encoding="utf-8") as handle:
        handle.write(_crash_report(error, argv, command))
    return path


def _report_crash(error: Exception, argv: list[str], command: str) -> None:
    """One line on stderr: what failed and where the traceback is (printed here instead
    only when the log cannot be written)."""
    summary = (str(error).strip().splitlines() or [""])[0][:200]
    what = f"{type(error).__name__}: {summary}" if summary else type(error).__name__
    try:
        path = _save_crash(error, argv, command)
    except OSError as reason:
        print(
            f"error: 'ablate {command}' failed unexpectedly ({what}); the crash log could not "
            f"be saved ({reason.strerror or reason}), so the traceback follows",
            file=sys.stderr,
        )
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        return
    print(
        f"error: 'ablate {command}' failed unexpectedly ({what}); full traceback in {path}",
        file=sys.stderr,
    )


def _reader_gone() -> int:
    """The program reading our output stopped (`ablate status | head`): not a crash. Point
    stdout at /dev/null so that Python's own flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a pipe's writer


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ablate` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    name = " ".join(
        part for part in (args.command, getattr(args, f"{args.command}_command", None)) if part
    )
    try:
        load_plugins()  # before any grid is read: a grid may name a plug-in's component
        command = _command(args.target)
        command(**{key: getattr(args, key) for key in args.keys})
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MachineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except StudyIncomplete:
        return 1  # the command has printed what failed
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_gone()
    except Exception as error:
        if out_of_space(error):
            print(f"error: {_disk_full_message(error)}", file=sys.stderr)
        else:
            _report_crash(error, argv, name)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
