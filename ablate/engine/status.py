"""Where a study stands, read without touching it: `ablate status` and `Study.status()`.

Reading only: study.lock is read, never taken, and nothing is written, so this works while
`ablate run` runs on the study (from another terminal or machine) and after it stopped, on a
local folder or a URI. What comes from where:

- finished runs (ok, failed, diverged), their errors and durations: the runs table;
- the runs expected: the stored grid's variants x `expected_seeds`, plus any stored run
  outside them (a study copied without its grid: the stored runs alone);
- whether a command runs the study: study.lock, whose process is checked when it is on this
  host (a lock left by a killed command is reported as such);
- which seeds run now: a trial runs its variant's seeds in order, so the candidate is each
  variant's first unfinished seed, and it runs when the seed's checkpoint or TensorBoard
  files were written since the lock was taken. Runs behind a URI upload those files only
  when they end, so there the running seeds are unknown (None);
- the time left: see `time_left`.
"""

from __future__ import annotations

import heapq
import json
import math
import shlex
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ablate.config import GridConfig, ProtocolConfig
from ablate.engine.lock import LockOwner
from ablate.engine.messages import format_duration, short_error
from ablate.errors import UserError
from ablate.grid import expand_variants
from ablate.store import StudyDir
from ablate.store.study import GRID_FILE

RUNNING, STOPPED, FINISHED = "running", "stopped", "finished"
FINISHED_STATUSES = ("ok", "failed", "diverged")


@dataclass(frozen=True)
class SeedPlan:
    """The seeds each variant of a study should run."""

    seeds: list[int]
    exact: bool
    """False when only a maximum is known: adaptive seeds decide round by round whether a
    variant needs more, so a variant may stop before it ran them all."""


def adaptive_seed_maximum(protocol: ProtocolConfig) -> int | None:
    """The maximum of adaptive seeds (`protocol.seeds: {min, max}`), None for a fixed list
    or count of seeds."""
    seeds = protocol.seeds
    if isinstance(seeds, int | list):
        return None
    maximum = seeds.get("max") if isinstance(seeds, dict) else getattr(seeds, "max", None)
    return int(maximum) if maximum is not None else None


def expected_seeds(protocol: ProtocolConfig) -> SeedPlan:
    """The seeds each variant runs: the protocol's list, or at most seeds 0..max-1 when the
    number of seeds is decided round by round."""
    maximum = adaptive_seed_maximum(protocol)
    if maximum is not None:
        return SeedPlan(list(range(maximum)), exact=False)
    return SeedPlan(protocol.seed_list(), exact=True)


@dataclass(frozen=True)
class LockState:
    """study.lock: the `ablate run` that holds the study."""

    pid: int | None
    host: str | None
    started_at: str | None
    """As the command wrote it (its local time)."""
    alive: bool | None
    """True: its process runs (checked on this host); False: gone (a killed command, whose
    lock the next `ablate run` takes over); None: cannot be checked from here."""
    since: float | None = field(default=None, repr=False)
    """When the lock file was written (POSIX seconds, the storage's clock)."""


@dataclass
class VariantStatus:
    """One variant's seeds."""

    variant: str
    expected: int
    """Seeds the variant should run (a maximum when `SeedPlan.exact` is False)."""
    ok: int = 0
    failed: int = 0
    diverged: int = 0
    running: list[int] | None = None
    """Seeds running now; None when that cannot be known (a study behind a URI)."""
    pending: int = 0
    """Expected seeds neither finished nor running (at most, when not exact)."""
    mean_seed_s: float | None = None
    """Mean duration of its finished seeds (ok, failed or diverged)."""
    last_error: str | None = None
    """The error of its last failed or diverged seed, on one line."""
    running_since: list[float] = field(default_factory=list, repr=False)
    """When each running seed started (POSIX seconds, the storage's clock)."""

    @property
    def finished(self) -> int:
        return self.ok + self.failed + self.diverged


GENERIC_RESUME_HINT = "`ablate run` with the grid it was made from continues the study"
"""How to continue a stopped study whose grid.yaml is missing."""


@dataclass
class StudyStatus:
    """Where a study stands; `format()` is what `ablate status` prints, `to_dict()` its JSON."""

    study: str
    uri: str
    state: str
    """running (a live `ablate run` holds the lock), finished (every expected run has a
    result, nobody runs it) or stopped (runs left, nobody runs it)."""
    lock: LockState | None
    variants: list[VariantStatus]
    exact: bool
    """False when the seeds per variant are a maximum (adaptive seeds)."""
    parallelism: int | None
    """Seeds running now (the trials running side by side); None when unknown."""
    time_left_s: float | None
    """Estimated wall time left at the current parallelism; None when not running or
    unknown."""
    seed_time_left_s: float | None
    """Seed time left, one seed after another (what a stopped study still needs)."""
    summary: str
    """current, stale (results newer than the report) or missing."""
    checked_at: str
    notes: list[str] = field(default_factory=list)
    resume_hint: str = GENERIC_RESUME_HINT
    """How to continue a stopped study (see `resume_hint`)."""

    def totals(self) -> dict[str, int | None]:
        """ok, failed, diverged, running and pending summed over the variants."""
        totals: dict[str, int | None] = {
            key: sum(getattr(item, key) for item in self.variants)
            for key in ("expected", "ok", "failed", "diverged", "pending")
        }
        running = [item.running for item in self.variants]
        totals["running"] = None if None in running else sum(len(r or []) for r in running)
        return totals

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what `ablate status --json` prints."""
        lock = None if self.lock is None else {**asdict(self.lock)}
        if lock is not None:
            lock.pop("since")
        variants = []
        for item in self.variants:
            entry = asdict(item)
            entry.pop("running_since")
            entry["mean_seed_s"] = _json_number(item.mean_seed_s)
            variants.append(entry)
        return {
            "study": self.study,
            "uri": self.uri,
            "state": self.state,
            "checked_at": self.checked_at,
            "lock": lock,
            "seeds_are_maximum": not self.exact,
            "variants": variants,
            "totals": self.totals(),
            "parallelism": self.parallelism,
            "time_left_s": _json_number(self.time_left_s),
            "seed_time_left_s": _json_number(self.seed_time_left_s),
            "summary": self.summary,
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self) -> str:
        """The text `ablate status` prints."""
        lines = [f"study {self.study}: {self.uri}", f"state: {self._state_line()}"]
        lines += _table(self.variants, self.totals(), self.exact)
        lines.append(self._time_line())
        lines.append(f"summary: {SUMMARY_LINES[self.summary]}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def _state_line(self) -> str:
        lock = self.lock
        holder = ""
        if lock is not None and lock.pid is not None:
            holder = f"`ablate run` pid {lock.pid} on {lock.host}, started {lock.started_at}"
        if self.state == RUNNING:
            unknown = " (its process cannot be checked from here)" if lock.alive is None else ""
            return f"running: {holder or 'an unreadable study.lock'}{unknown}"
        if lock is not None:
            return (
                f"stopped: {holder or 'an unreadable study.lock'} is gone; "
                f"{self.resume_hint} (it takes the lock over)"
            )
        if self.state == FINISHED:
            return "finished: every expected run has a result"
        return f"stopped: runs are left; {self.resume_hint}"

    def _time_line(self) -> str:
        bound = "at most " if not self.exact else "about "
        if self.state == RUNNING and self.time_left_s is not None:
            return (
                f"time left: {bound}{format_duration(self.time_left_s)} with "
                f"{self.parallelism} seed(s) running side by side"
            )
        if self.state == RUNNING:
            if self.parallelism is None:
                why = "the seeds running now cannot be seen"
            elif self.seed_time_left_s is None:
                why = "no seed has finished yet"
            else:
                why = "no seed is running this moment"
            return f"time left: unknown ({why})"
        if self.state == FINISHED:
            return "time left: none"
        if self.seed_time_left_s is None:
            return "time left: not running; unknown (no seed has finished yet)"
        return (
            f"time left: not running; {bound}{format_duration(self.seed_time_left_s)} of "
            "seed time left (one seed after another)"
        )


SUMMARY_LINES = {
    "current": "up to date with the runs",
    "stale": "out of date (runs finished after it was written): `ablate summarize` rebuilds it",
    "missing": "not written yet (`ablate summarize` writes it)",
}


def _seconds(value: float) -> str:
    """'2.4s' under ten seconds, else as progress lines show durations ('1m35s')."""
    return f"{value:.1f}s" if value < 10 else format_duration(value)


def _json_number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)


def _table(variants: list[VariantStatus], totals: dict[str, int | None], exact: bool) -> list[str]:
    """The per-variant table, aligned, with a total row."""
    prefix = "" if exact else "<="
    header = ["variant", "ok", "failed", "diverged", "running", "pending", "per seed", "last error"]
    rows = [
        [
            item.variant,
            str(item.ok),
            str(item.failed),
            str(item.diverged),
            "?" if item.running is None else str(len(item.running)),
            f"{prefix}{item.pending}" if item.pending else "0",
            "-" if item.mean_seed_s is None else _seconds(item.mean_seed_s),
            item.last_error or "",
        ]
        for item in variants
    ]
    total_running = totals["running"]
    rows.append(
        [
            "total",
            *(str(totals[key]) for key in ("ok", "failed", "diverged")),
            "?" if total_running is None else str(total_running),
            f"{prefix}{totals['pending']}" if totals["pending"] else "0",
            "",
            "",
        ]
    )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

    def line(row: list[str]) -> str:
        numbers = zip(row[1:-1], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in numbers)]
        return ("  ".join(cells) + "  " + row[-1]).rstrip()

    return [line(header), *(line(row) for row in rows)]


def read_lock(study: StudyDir) -> LockState | None:
    """study.lock as read now (never taken); None when no command holds the study."""
    text = study.read_lock()
    if text is None:
        return None
    since = study.lock_time()
    owner = LockOwner.from_json(text)
    if owner is None:
        return LockState(None, None, None, alive=None, since=since)
    alive = None if owner.host != socket.gethostname() else not owner.is_dead()
    return LockState(owner.pid, owner.host, owner.started_at, alive=alive, since=since)


def _variant_names(study: StudyDir, grid: GridConfig) -> list[str]:
    try:
        return [variant.name for variant in expand_variants(grid)]
    except UserError as error:
        raise UserError(f"{study.path(GRID_FILE)}: its ablations do not expand: {error}") from None


def _expected(
    study: StudyDir, grid: GridConfig | None, runs: pd.DataFrame
) -> tuple[list[str], dict[str, list[int]], bool]:
    """Variant names, each variant's expected seeds, and whether those are exact: from the
    stored grid, and the stored runs outside it; from the store alone without a grid."""
    stored = list(dict.fromkeys(runs["variant"])) if not runs.empty else []
    if grid is None:
        seeds = sorted({int(seed) for seed in runs["seed"]}) if not runs.empty else []
        return stored, {name: seeds for name in stored}, True
    plan = expected_seeds(grid.protocol)
    names = _variant_names(study, grid)
    extra = [name for name in stored if name not in names]
    seeds = {name: plan.seeds for name in names}
    for name in extra:  # a variant the grid no longer declares: its stored seeds
        seeds[name] = sorted(int(s) for s in runs.loc[runs["variant"] == name, "seed"])
    return [*names, *extra], seeds, plan.exact


def _last_error(rows: pd.DataFrame) -> str | None:
    """The error of the last failed or diverged run among `rows`, on one line."""
    bad = rows[rows["status"] != "ok"]
    if bad.empty or "error" not in bad:
        return None
    if "finished_at" in bad:
        bad = bad.sort_values("finished_at", kind="stable")
    error = bad["error"].iloc[-1]
    status = bad["status"].iloc[-1]
    text = short_error(str(error)) if isinstance(error, str) and error.strip() else "no message"
    return f"{status} seed {int(bad['seed'].iloc[-1])}: {text}"


def _mean_duration(rows: pd.DataFrame) -> float | None:
    if rows.empty or "duration_s" not in rows:
        return None
    values = pd.to_numeric(rows["duration_s"], errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def _running(
    study: StudyDir, variant: str, unfinished: list[int], since: float
) -> tuple[int, float] | None:
    """(seed, start) of the seed of `variant` that runs now: its first unfinished seed, when
    that seed's files were written since the lock was taken."""
    if not unfinished:
        return None
    seed = unfinished[0]
    times = [t for t in study.run_output_times(variant, seed) if t >= since]
    return (seed, min(times)) if times else None


def _variant_status(
    study: StudyDir,
    variant: str,
    seeds: list[int],
    rows: pd.DataFrame,
    watch_since: float | None,
) -> VariantStatus:
    """One variant's counts, running seed, pending seeds, mean duration and last error.

    Args:
        watch_since: when the live lock was taken (a seed with files since then runs);
            None when nothing runs; NaN when running seeds cannot be seen (a URI).
    """
    counts = rows["status"].value_counts() if not rows.empty else pd.Series(dtype=int)
    finished = {int(seed) for seed in rows["seed"]} if not rows.empty else set()
    unfinished = [seed for seed in seeds if seed not in finished]
    item = VariantStatus(
        variant=variant,
        expected=len(seeds),
        ok=int(counts.get("ok", 0)),
        failed=int(counts.get("failed", 0)),
        diverged=int(counts.get("diverged", 0)),
        mean_seed_s=_mean_duration(rows),
        last_error=_last_error(rows) if not rows.empty else None,
    )
    if watch_since is not None and math.isnan(watch_since):
        item.pending = len(unfinished)  # running seeds are unknown: counted as pending
        return item
    found = _running(study, variant, unfinished, watch_since) if watch_since else None
    item.running = [found[0]] if found else []
    item.running_since = [found[1]] if found else []
    item.pending = len(unfinished) - len(item.running)
    return item


def time_left(chains: list[tuple[float, bool]], slots: int) -> float:
    """Wall time to finish variant `chains` on `slots` trial slots running side by side.

    Each chain is (seconds left, running now): a variant's remaining seeds, run one after
    another as its trial runs them. Running chains hold a slot from now; the others start
    in grid order as slots free up (as Tune starts pending trials).
    """
    busy = [seconds for seconds, running in chains if running]
    queue = [seconds for seconds, running in chains if not running and seconds > 0]
    heapq.heapify(busy)
    while len(busy) < slots and queue:
        heapq.heappush(busy, queue.pop(0))
    for seconds in queue:
        heapq.heappush(busy, heapq.heappop(busy) + seconds)
    return max(busy, default=0.0)


def _estimates(
    variants: list[VariantStatus], now: float
) -> tuple[int | None, float | None, float | None]:
    """(parallelism, wall time left, seed time left) of the remaining seeds.

    A seed is expected to take its variant's mean seed time (the study's mean for a variant
    without a finished seed); a running seed, that minus the time it has run (at least 0).
    """
    durations = [v.mean_seed_s for v in variants for _ in range(v.finished) if v.mean_seed_s]
    if not durations:
        return _parallelism(variants), None, None
    study_mean = sum(durations) / len(durations)
    chains = []
    for item in variants:
        mean = item.mean_seed_s or study_mean
        running = sum(max(mean - (now - start), 0.0) for start in item.running_since)
        chains.append((running + item.pending * mean, bool(item.running)))
    seed_time = sum(seconds for seconds, _ in chains)
    parallelism = _parallelism(variants)
    wall = time_left(chains, parallelism) if parallelism else None
    return parallelism, wall, seed_time


def _parallelism(variants: list[VariantStatus]) -> int | None:
    if any(item.running is None for item in variants):
        return None
    return sum(len(item.running or []) for item in variants)


def resume_hint(study: StudyDir, has_grid: bool) -> str:
    """The command that continues `study`, for a stopped one.

    It runs the stored grid.yaml: that holds the `--set` overrides the study was run with,
    so it is the one grid never refused, whereas the original file without the same `--set`s
    is. A URI's grid.yaml is not a file `ablate run` reads, so there a local copy is run.
    """
    if not has_grid:
        return GENERIC_RESUME_HINT
    out = shlex.quote(study.uri)
    if study.location.local:
        grid = shlex.quote(str(study.location.local_path(GRID_FILE)))
        return f"`ablate run {grid} --out {out}` continues the study"
    return (
        f"`ablate run GRID --out {out}` continues the study, GRID a local copy of "
        f"{study.uri.rstrip('/')}/{GRID_FILE}"
    )


def study_status(study: StudyDir, now: float | None = None) -> StudyStatus:
    """Where `study` stands, read without taking its lock or writing anything.

    Args:
        study: the study directory (local folder or URI).
        now: the time to measure running seeds against (POSIX seconds; default: now).

    Raises:
        UserError: not a study directory, or a damaged grid.yaml or results file (named).

    Example:
        >>> print(study_status(StudyDir.open("runs/quickstart")).format())  # doctest: +SKIP
    """
    study.require_study()
    now = time.time() if now is None else now
    lock = read_lock(study)
    runs = study.results().read("runs")
    grid = study.read_grid()
    names, seeds, exact = _expected(study, grid, runs)
    live = lock is not None and lock.alive is not False
    watch = _watch_since(study, lock) if live else None
    variants = [
        _variant_status(study, name, seeds[name], _rows(runs, name), watch) for name in names
    ]
    parallelism, wall, seed_time = _estimates(variants, now)
    pending = any(item.pending or item.running for item in variants)
    state = RUNNING if live else (STOPPED if pending else FINISHED)
    notes = [] if grid is not None else ["grid.yaml not found: expected runs from the store"]
    if live and watch is not None and math.isnan(watch):
        notes.append("running seeds are unknown: runs behind a URI upload files when they end")
    return StudyStatus(
        study=grid.study if grid is not None else study.folder_name,
        uri=study.uri,
        state=state,
        lock=lock,
        variants=variants,
        exact=exact,
        parallelism=parallelism if live else 0,
        time_left_s=wall if live else None,
        seed_time_left_s=seed_time,
        summary=study.summary_state(),
        checked_at=pd.Timestamp(now, unit="s", tz="UTC").isoformat(timespec="seconds"),
        notes=notes,
        resume_hint=resume_hint(study, grid is not None),
    )


def _watch_since(study: StudyDir, lock: LockState) -> float | None:
    """When running seeds may have started (the lock's time); NaN when they cannot be seen
    (runs behind a URI write their files when they end); None when the lock just went."""
    if not study.location.local:
        return math.nan
    return lock.since


def _rows(runs: pd.DataFrame, variant: str) -> pd.DataFrame:
    if runs.empty:
        return runs
    rows = runs[runs["variant"] == variant]
    return rows[rows["status"].isin(FINISHED_STATUSES)]
