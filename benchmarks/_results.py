"""One way for every benchmark to write its results JSON, with the provenance a reader needs.

Every script in ``benchmarks/`` starts a :class:`Results` when it starts (after parsing its
arguments) and calls :meth:`Results.write` with its rows; the file gets, besides the rows and the
script's own sections, the fields of ``../shared/BENCHMARKS.md``:

- ``benchmark``, ``command`` (``python`` + the argv as run), ``argv``, ``quick``;
- ``git_commit`` (40 hex digits) and ``git_dirty`` (tracked files changed at the start);
- ``environment``: torch threads, ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, Python and the
  versions of torch, numpy, pandas, lightgbm, timm, scikit-learn and onnxruntime (those installed);
- ``device`` (what the script measured on) and ``machine`` (the CPU, from /proc/cpuinfo);
- ``date``, ``started_utc``, ``finished_utc``, ``wall_seconds``, ``load_average`` at start and end;
- ``crosskd_version``.

Rounding policy (one for every file): every float outside ``settings`` is written with 4
significant digits (:func:`round_floats`); scripts round nothing themselves except for display.

Only the standard library is imported at module level, so that a benchmark measuring memory
(``streaming.py``) is not charged for imports it did not ask for.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"

#: Significant digits of every float written (outside ``settings``).
SIGNIFICANT_DIGITS = 4

#: The fields every results file carries, in the order they are written.
PROVENANCE_FIELDS = (
    "benchmark",
    "command",
    "argv",
    "quick",
    "device",
    "machine",
    "date",
    "started_utc",
    "finished_utc",
    "wall_seconds",
    "load_average",
    "crosskd_version",
    "git_commit",
    "git_dirty",
    "environment",
    "rounding",
)

#: Row roles of ../shared/BENCHMARKS.md; a benchmark may add its own words (explained in its
#: markdown).
ROLES = ("teacher", "baseline", "distilled", "reference")

#: Distributions whose versions are recorded when installed (metadata only: nothing is imported).
LIBRARIES = (
    "torch",
    "numpy",
    "pandas",
    "lightgbm",
    "timm",
    "scikit-learn",
    "onnxruntime",
    "pyarrow",
)


def round_floats(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """``value`` with every float (in nested dicts, lists and tuples) at ``digits`` significant
    digits; ints, strings, bools and None unchanged; NaN and infinities become None (JSON has
    neither).

    Args:
        value: a JSON-able structure.
        digits: significant digits kept.

    Returns:
        The same structure, tuples as lists.
    """
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float) or type(value).__name__ in ("float32", "float64", "float16"):
        x = float(value)
        if not math.isfinite(x):
            return None
        if x == 0.0:
            return 0.0
        return round(x, digits - 1 - math.floor(math.log10(abs(x))))
    if type(value).__name__ in ("int64", "int32", "int16", "int8", "uint8"):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(v, digits) for v in value]
    raise TypeError(
        f"cannot write {type(value).__name__} {value!r} to a results file; expected numbers, "
        "strings, bools, None, lists and dicts (convert arrays with .tolist())"
    )


def mean_std(values: Sequence[float]) -> list[float]:
    """``[mean, std]`` (population std) of ``values``, the form of a metric over folds or seeds."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std got no values; expected one per fold or seed")
    mean = sum(float(v) for v in values) / n
    std = math.sqrt(sum((float(v) - mean) ** 2 for v in values) / n)
    return [mean, std]


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_description() -> str:
    """``cpu: N cores (model name)``, as :func:`crosskd.profiling.device_description` writes it
    (:mod:`crosskd._machine` imports neither torch nor numpy)."""
    from crosskd._machine import cpu_description as describe

    return describe()


def git_state(repo: Path = REPO) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of ``repo``: the 40-hex HEAD commit and whether tracked files differ
    from it (untracked files and the results folder, which benchmarks write, do not count);
    ``(None, None)`` outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        status = subprocess.run(
            [
                "git",
                "-C",
                str(repo),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)benchmarks/results",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES` (absent ones left out), read from package metadata."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def environment() -> dict[str, Any]:
    """Threads (torch's, when torch is imported; the OpenMP / MKL variables), Python and library
    versions."""
    torch = sys.modules.get("torch")
    return {
        "threads": torch.get_num_threads() if torch is not None else None,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        "python": platform.python_version(),
        **library_versions(),
    }


def _crosskd_version() -> str | None:
    crosskd = sys.modules.get("crosskd")
    if crosskd is not None:
        return crosskd.__version__
    try:
        return metadata.version("crosskd")
    except metadata.PackageNotFoundError:
        return None


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError unless every row has a ``model`` and a ``role`` (strings) and ``chosen``,
    where present, is a bool."""
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"row {i} is a {type(row).__name__}; expected a dict")
        for key in ("model", "role"):
            if not isinstance(row.get(key), str):
                raise ValueError(
                    f"row {i} ({row.get('model')!r}) has {key}={row.get(key)!r}; expected a "
                    f"string (see ../shared/BENCHMARKS.md)"
                )
        if "chosen" in row and not isinstance(row["chosen"], bool):
            raise ValueError(
                f"row {i} ({row['model']!r}) has chosen={row['chosen']!r}; expected true or false"
            )


class Results:
    """The provenance of one benchmark run, started when the run starts.

    Args:
        benchmark: the benchmark's name (the JSON file's stem unless :meth:`write` gets ``name``).
        argv: the script's arguments as parsed (``None``: ``sys.argv[1:]``); recorded after the
            script's path, as run.
        quick: whether this is the small version the tests run.
        script: the script's path (default ``benchmarks/<benchmark>.py``).

    Example::

        results = Results("throughput", argv, quick=False)
        ...
        results.write(rows, out_dir, name="throughput-cpu", device="cpu: ...", setup={...})
    """

    def __init__(
        self,
        benchmark: str,
        argv: Sequence[str] | None = None,
        *,
        quick: bool,
        script: str | Path | None = None,
    ) -> None:
        self.benchmark = benchmark
        self.quick = bool(quick)
        path = Path(script) if script is not None else REPO / "benchmarks" / f"{benchmark}.py"
        try:
            shown = str(path.resolve().relative_to(REPO))
        except ValueError:
            shown = str(path)
        args = list(sys.argv[1:] if argv is None else argv)
        self.argv = [shown, *(str(a) for a in args)]
        self.started = time.perf_counter()
        self.started_utc = _utc_now()
        self.load_start = load_average()
        self.git_commit, self.git_dirty = git_state()

    @property
    def command(self) -> str:
        """``python <script> <args>``, shell-quoted, with the thread variables that were set."""
        env = " ".join(
            f"{k}={os.environ[k]}"
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
            if k in os.environ
        )
        return (env + " " if env else "") + "python " + shlex.join(self.argv)

    def seconds(self) -> float:
        """Wall seconds since the run started."""
        return time.perf_counter() - self.started

    def payload(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        device: str | None = None,
        **sections: Any,
    ) -> dict[str, Any]:
        """The results dict: provenance fields, the script's ``sections``, then ``rows``.

        Args:
            rows: one dict per model (``model``, ``role``, ``metrics``, ... and ``chosen`` on the
                rows the benchmark stands behind).
            device: what the measurements ran on (default: the CPU description).
            **sections: the benchmark's own keys (``settings`` is written unrounded).

        Returns:
            A JSON-able dict, floats rounded by :func:`round_floats`.

        Raises:
            ValueError: a row without a model or role, or a non-bool ``chosen``; a section named
                like a provenance field.
        """
        check_rows(rows)
        clash = sorted(set(sections) & set(PROVENANCE_FIELDS + ("rows",)))
        if clash:
            raise ValueError(
                f"sections {clash} are written by the results helper itself; rename them"
            )
        machine = cpu_description()
        head = {
            "benchmark": self.benchmark,
            "command": self.command,
            "argv": self.argv,
            "quick": self.quick,
            "device": device or machine,
            "machine": machine,
            "date": self.started_utc[:10],
            "started_utc": self.started_utc,
            "finished_utc": _utc_now(),
            "wall_seconds": self.seconds(),
            "load_average": {"start": self.load_start, "end": load_average()},
            "crosskd_version": _crosskd_version(),
            "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
            "environment": environment(),
            "rounding": f"floats at {SIGNIFICANT_DIGITS} significant digits (settings as given)",
        }
        out = round_floats(head)
        for key, value in sections.items():
            out[key] = value if key == "settings" else round_floats(value)
        out["rows"] = round_floats(list(rows))
        return out

    def write(
        self,
        rows: Sequence[Mapping[str, Any]],
        out_dir: str | Path,
        *,
        name: str | None = None,
        device: str | None = None,
        **sections: Any,
    ) -> dict[str, Any]:
        """Write ``<out_dir>/<name or benchmark>.json`` (see :meth:`payload`) and return it."""
        payload = self.payload(rows, device=device, **sections)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name or self.benchmark}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, path)
        return payload


def provenance_line(payload: Mapping[str, Any]) -> str:
    """One markdown line with the run's command, commit, machine, load and wall time."""
    commit = payload.get("git_commit") or "unknown"
    dirty = " (with uncommitted changes)" if payload.get("git_dirty") else ""
    load = payload.get("load_average") or {}
    env = payload.get("environment") or {}
    return (
        f"`{payload['command']}` at commit `{commit[:12]}`{dirty} on {payload['device']}; "
        f"crosskd {payload['crosskd_version']}, torch {env.get('torch', '?')}"
        + (f", {env['threads']} torch thread(s)" if env.get("threads") is not None else "")
        + f"; {payload['date']}; wall time "
        f"{payload['wall_seconds'] / 60:.1f} min; load average {load.get('start')} at the start, "
        f"{load.get('end')} at the end."
        + (" **Quick run: not a result.**" if payload.get("quick") else "")
    )
