"""A real Slurm for the cluster tests: the one in ``SLURM_CONF`` if it answers, else our own.

Our own is a single node started by ``.ci/slurm`` (munged + slurmctld + slurmd, no systemd)
and stopped at the end of the session. If it cannot start, the fixture fails: never skips.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dashapp.cluster import ClusterManager

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "slurm"


def _run(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _sinfo_answers() -> bool:
    try:
        return _run("sinfo", "-h", timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _default_partition() -> str:
    """The partition marked ``*`` by sinfo (``debug`` on our own Slurm)."""
    names = _run("sinfo", "-h", "-o", "%P").stdout.split()
    for name in names:
        if name.endswith("*"):
            return name.rstrip("*")
    return names[0] if names else "debug"


@dataclass
class Slurm:
    """The running Slurm: ``conf`` is its slurm.conf, ``partition`` the default partition."""

    conf: Path
    partition: str
    user: str

    def queue(self) -> list[tuple[str, str, str]]:
        """This user's jobs as (jobid, state, name), e.g. ("12", "RUNNING", "dask-worker")."""
        out = _run("squeue", "-h", "-u", self.user, "-o", "%i|%T|%j")
        if out.returncode != 0:
            raise RuntimeError(f"squeue failed: {out.stderr.strip()}")
        return [tuple(line.split("|", 2)) for line in out.stdout.splitlines() if line.strip()]

    def wait_empty(self, timeout: float = 60) -> float:
        """Wait until this user has no jobs (CG lasts a few seconds); return the seconds taken."""
        start = time.monotonic()
        while True:
            jobs = self.queue()
            if not jobs:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"Slurm queue not empty after {timeout} s: {jobs}")
            time.sleep(0.5)


@pytest.fixture(scope="session")
def slurm():
    """A real Slurm for this session; ``SLURM_CONF`` is exported while it runs."""
    user = getpass.getuser()
    with pytest.MonkeyPatch.context() as mp:
        if os.environ.get("SLURM_CONF") and _sinfo_answers():
            yield Slurm(Path(os.environ["SLURM_CONF"]), _default_partition(), user)
            return

        # A short path under /tmp: the munge and slurmstepd Unix sockets live in it.
        workdir = Path(tempfile.mkdtemp(prefix="dashapp-slurm-", dir="/tmp"))
        started = _run("bash", str(SCRIPT), "start", str(workdir), timeout=120)
        if started.returncode != 0:
            _run("bash", str(SCRIPT), "stop", str(workdir), timeout=60)
            raise RuntimeError(
                f"Slurm did not start (.ci/slurm start, exit {started.returncode}):\n"
                f"{started.stdout}\n{started.stderr}"
            )
        conf = workdir / "slurm.conf"
        mp.setenv("SLURM_CONF", str(conf))
        try:
            yield Slurm(conf, _default_partition(), user)
        finally:
            stopped = _run("bash", str(SCRIPT), "stop", str(workdir), timeout=120)
            if stopped.returncode == 0:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                print(f"Slurm stop failed, files kept in {workdir}:\n{stopped.stderr}")


@pytest.fixture
def manager():
    """A manager of its own (not the process-wide one), stopped after the test."""
    m = ClusterManager()
    try:
        yield m
    finally:
        m.close()
