"""Asking Slurm about jobs: squeue for their state, ``sbatch --test-only`` to check a script.

Async (the commands run as subprocesses, never blocking the event loop) and UI-free; the
cluster manager calls them every few seconds. Messages are Slurm's own words, trimmed.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import SlurmError  # (a ClusterError: the project's error family)
from .config import parse_walltime

__all__ = [
    "ENDED_STATES",
    "SQUEUE_FORMAT",
    "SlurmError",
    "SlurmJob",
    "run",
    "sbatch_error",
    "sbatch_test_only",
    "squeue",
]

#: squeue fields: id, state, name, time left, time used, reason (why pending).
SQUEUE_FORMAT = "%i|%T|%j|%L|%M|%r"

#: States of a job that has ended but that squeue still shows for a while (MinJobAge).
ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)


@dataclass
class SlurmJob:
    """One line of squeue."""

    job_id: str
    state: str
    name: str
    time_left: str
    time_left_s: int | None
    elapsed_s: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the fields."""
        return asdict(self)


async def run(*cmd: str, timeout: float = 30, stdin: str | None = None) -> tuple[int, str, str]:
    """Run a command without blocking the loop; return (exit code, stdout, stderr).

    Raises
    ------
    SlurmError
        The command is not installed or did not finish within ``timeout`` seconds.
    """
    if shutil.which(cmd[0]) is None:
        raise SlurmError(f"{cmd[0]} not found: is Slurm installed on this machine?")
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout
        )
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise SlurmError(f"{cmd[0]} did not answer within {timeout:g} s") from None
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def _seconds(text: str) -> int | None:
    """squeue's %L/%M ("9:58", "1:02:03", "1-00:00:00") in seconds; None if not a time."""
    try:
        return parse_walltime(text, "slurm")
    except ValueError:  # UNLIMITED, NOT_SET, INVALID
        return None


async def squeue(job_ids: set[str] | None = None, user: str | None = None) -> dict[str, SlurmJob]:
    """This user's jobs, including those ended in the last minutes (``-t all``), by job id.

    Parameters
    ----------
    job_ids : set of str, optional
        Keep only these jobs.
    user : str, optional
        Whose jobs (default: the user running this process).

    Raises
    ------
    SlurmError
        squeue failed (its message) or is missing.
    """
    code, out, err = await run(
        "squeue", "-h", "-t", "all", "-u", user or getpass.getuser(), "-o", SQUEUE_FORMAT
    )
    if code != 0:
        raise SlurmError(f"squeue failed: {err.strip() or out.strip()}")
    jobs: dict[str, SlurmJob] = {}
    for line in out.splitlines():
        parts = line.split("|", 5)
        if len(parts) != 6 or (job_ids is not None and parts[0] not in job_ids):
            continue
        job_id, state, name, left, used, reason = (p.strip() for p in parts)
        jobs[job_id] = SlurmJob(job_id, state, name, left, _seconds(left), _seconds(used), reason)
    return jobs


def sbatch_error(text: str) -> str:
    """The ``sbatch: error: ...`` lines of sbatch's output, joined (else the whole, trimmed).

    dask-jobqueue reports a failed submission as a long RuntimeError with the command, exit
    code, stdout and stderr; the scientist needs the last part.
    """
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^s\w+: (error|fatal)", ln)]
    return "; ".join(errors or lines) or "no message"


async def sbatch_test_only(script: str, timeout: float = 30) -> str | None:
    """Check a batch script with ``sbatch --test-only`` (nothing is submitted).

    Returns
    -------
    str or None
        None when Slurm would accept the job, else sbatch's error message, e.g. "sbatch
        --test-only: allocation failure: Requested node configuration is not available".
    """
    fd, path = tempfile.mkstemp(prefix="dashapp-", suffix=".sh")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(script)
        code, out, err = await run("sbatch", "--test-only", path, timeout=timeout)
    finally:
        os.unlink(path)
    if code == 0:
        return None
    message = sbatch_error(err or out)
    # --test-only words it differently from a real submission ("allocation failure: ...").
    return message if message.startswith("sbatch") else f"sbatch --test-only: {message}"
