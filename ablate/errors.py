"""Errors that the command line turns into one clear message: exit 2 for bad input, exit 1
when the machine (not the input) stopped the command."""

from __future__ import annotations

import errno

OUT_OF_SPACE = "No space left on device"
"""strerror of ENOSPC, also in the message of pyarrow's OSError (which carries no errno)."""


class UserError(Exception):
    """Bad input from the user: a grid, a dataset, an argument.

    The CLI prints ``str(error)`` (no traceback) and exits with code 2. The message must name
    the culprit (file, YAML key path, category folder) and say what is wrong.

    Example:
        >>> raise UserError("grids/x.yaml: baseline.train.lr: must be > 0, got -1")
    """


class GridError(UserError):
    """A grid that does not validate; carries every problem found, each on its own line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in grid\n{lines}")


class DatasetError(UserError):
    """A dataset folder that is missing, empty, not in the EBHI layout, or has no usable pair."""


class MachineError(Exception):
    """The machine stopped the command (a full disk): no traceback, exit code 1.

    The message says what ran out, that finished runs are kept and how to continue.
    """


class StudyIncomplete(Exception):
    """`ablate run` ended with runs unfinished (a trial failed beyond its retries) or without
    its summary: exit code 1, after the command listed what failed. The finished runs are
    stored; running the same command again continues the study.

    Attributes:
        study_uri: the study directory.
    """

    def __init__(self, message: str, study_uri: str) -> None:
        super().__init__(message)
        self.study_uri = study_uri


def printable(text: str) -> str:
    r"""`text` safe to print: each character a terminal could act on (ESC, a line break, any
    non-printable one) escaped as Python writes it, and each byte of a name that is not UTF-8
    (which the file system's surrogate escape kept) as that byte; the rest is unchanged.

    Example:
        >>> printable("only\x1b[2J.png"), printable("Pol\udcffyp")
        ('only\\x1b[2J.png', 'Pol\\xffyp')
    """
    return "".join(
        character if character.isprintable() else _escaped(character) for character in text
    )


def _escaped(character: str) -> str:
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for the undecodable byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return repr(character)[1:-1]


def out_of_space(error: BaseException) -> bool:
    """Whether `error` is a write that failed for lack of room (ENOSPC or a quota).

    pyarrow's writers raise a plain OSError without `errno`, so its message is read too.
    """
    if not isinstance(error, OSError):
        return False
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return OUT_OF_SPACE in str(error) or "Disk quota exceeded" in str(error)
