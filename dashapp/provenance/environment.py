"""The software environment an analysis ran in: exact package versions, Python, machine, the
analysis repository's commit, the container image and the batch job.

:func:`capture_environment` returns a JSON-safe dict (recorded as an ``environment`` event and
packed into capsules); :func:`lock_text` turns it into a pip requirements file that
reinstalls the same versions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["capture_environment", "container_info", "git_info", "lock_text", "summary"]

#: Environment variables never recorded, whatever their prefix.
_SECRET = re.compile(r"TOKEN|SECRET|PASSW|KEY|CRED|AUTH", re.IGNORECASE)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _packages() -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Installed distributions: ``{name: version}`` and how non-index installs were made."""
    versions: dict[str, str] = {}
    direct: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        # the wheel folder name ("h5py-3.16.0.dist-info") carries name and version: parsing
        # every METADATA file instead would take ~0.5 s for a few hundred packages
        folder = getattr(dist, "_path", None)
        stem = folder.name[: -len(".dist-info")] if folder is not None else ""
        if folder is not None and folder.name.endswith(".dist-info") and "-" in stem:
            name, version = stem.rsplit("-", 1)
        else:
            name = dist.metadata["Name"] if dist.metadata else None
            version = dist.version
        if not name:
            continue
        key = _normalize(name)
        if key in seen:  # shadowed copies further down sys.path are not the ones imported
            continue
        seen.add(key)
        versions[name] = version
        try:
            text = dist.read_text("direct_url.json")
        except OSError:  # pragma: no cover - unreadable metadata
            text = None
        if text:
            with contextlib.suppress(ValueError):
                direct[name] = json.loads(text)
    ordered = dict(sorted(versions.items(), key=lambda kv: _normalize(kv[0])))
    return ordered, direct


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(repo: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Commit, branch and dirty state of the git repository containing ``repo`` (default: the
    current folder); None when it is not inside one or git is missing.

    ``dirty`` is True when ``git status --porcelain`` lists anything (changed, staged or
    untracked files): the commit alone does not reproduce the analysis then.
    """
    where = Path(repo) if repo is not None else Path.cwd()
    top = _git(where, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    commit = _git(where, "rev-parse", "HEAD")  # None in a repository with no commit yet
    branch = _git(where, "rev-parse", "--abbrev-ref", "HEAD")
    status = _git(where, "status", "--porcelain")
    info: dict[str, Any] = {
        "repo": top,
        "commit": commit,
        "branch": None if branch in (None, "HEAD") else branch,
        "dirty": bool(status) if status is not None else None,
    }
    if status:
        info["changed"] = status.splitlines()[:50]
    remote = _git(where, "config", "--get", "remote.origin.url")
    if remote and "@" not in remote.split("://")[-1].split("/")[0]:  # no credentials in URLs
        info["remote"] = remote
    describe = _git(where, "describe", "--tags", "--always", "--dirty")
    if describe:
        info["describe"] = describe
    return info


def container_info(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The container this process runs in, if any: Shifter, Apptainer/Singularity, Docker,
    Podman, or a Binder (repo2docker) image."""
    env = os.environ if environ is None else environ
    if env.get("SHIFTER_IMAGEREQUEST") or env.get("SHIFTER_RUNTIME"):
        return {"kind": "shifter", "image": env.get("SHIFTER_IMAGEREQUEST")}
    for var, kind in (
        ("APPTAINER_CONTAINER", "apptainer"),
        ("SINGULARITY_CONTAINER", "singularity"),
    ):
        if env.get(var):
            name = env.get(var.replace("CONTAINER", "NAME"))
            return {"kind": kind, "image": env[var], **({"name": name} if name else {})}
    binder = {
        k: v
        for k, v in env.items()
        if (k.startswith("BINDER_") or k.startswith("REPO2DOCKER")) and not _SECRET.search(k)
    }
    if binder:
        image = binder.get("BINDER_REPO_URL") or binder.get("BINDER_REQUEST")
        return {"kind": "binder", "image": image, "env": dict(sorted(binder.items()))}
    if environ is None and os.path.exists("/.dockerenv"):
        return {"kind": "docker", "image": None}
    if environ is None and os.path.exists("/run/.containerenv"):
        info: dict[str, Any] = {"kind": "podman", "image": None}
        try:
            for line in Path("/run/.containerenv").read_text().splitlines():
                if line.startswith("image="):
                    info["image"] = line.split("=", 1)[1].strip('"')
        except OSError:
            pass
        return info
    return None


def _slurm(env: Mapping[str, str]) -> dict[str, Any] | None:
    if not env.get("SLURM_JOB_ID"):
        return None
    keys = {
        "job_id": "SLURM_JOB_ID",
        "array_job_id": "SLURM_ARRAY_JOB_ID",
        "array_task_id": "SLURM_ARRAY_TASK_ID",
        "cluster": "SLURM_CLUSTER_NAME",
        "partition": "SLURM_JOB_PARTITION",
        "account": "SLURM_JOB_ACCOUNT",
        "nodelist": "SLURM_JOB_NODELIST",
    }
    return {k: env[v] for k, v in keys.items() if env.get(v)}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def capture_environment(repo: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Describe the software environment of this process.

    Parameters
    ----------
    repo
        The analysis repository (any folder inside it); default the current folder, if it is
        inside a git repository.

    Returns
    -------
    dict
        ``python`` (version, implementation, executable), ``platform``, ``hostname``, ``user``,
        ``dashapp`` (version), ``packages`` (``{name: version}`` of every installed
        distribution: the lock), ``direct`` (packages installed from a folder or a VCS, with
        pip's ``direct_url.json``), ``git`` (``repo``, ``commit``, ``branch``, ``dirty``...,
        or None), ``container`` (or None), ``slurm`` (job id... or None), ``captured`` (UTC).
    """
    from .._version import __version__

    packages, direct = _packages()
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "prefix": sys.prefix,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "hostname": socket.gethostname(),
        "user": _user(),
        "dashapp": __version__,
        "packages": packages,
        "direct": direct,
        "git": git_info(repo),
        "container": container_info(),
        "slurm": _slurm(os.environ),
        "captured": dt.datetime.now(dt.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
    }


def summary(env: dict[str, Any]) -> str:
    """One line about ``env`` for the timeline."""
    py = env.get("python", {}).get("version", "?")
    bits = [
        f"Python {py}",
        f"dashapp {env.get('dashapp', '?')}",
        f"{len(env.get('packages', {}))} packages",
    ]
    git = env.get("git") or {}
    if git.get("commit"):
        bits.append(f"git {git['commit'][:10]}" + (" (dirty)" if git.get("dirty") else ""))
    container = env.get("container") or {}
    if container:
        bits.append(f"{container.get('kind')} {container.get('image') or ''}".strip())
    slurm = env.get("slurm") or {}
    if slurm.get("job_id"):
        bits.append(f"Slurm job {slurm['job_id']}")
    host = env.get("hostname")
    return "Environment: " + ", ".join(bits) + (f" on {host}" if host else "")


def _requirement(name: str, version: str, direct: dict[str, Any] | None) -> str:
    if not direct:
        return f"{name}=={version}"
    url = direct.get("url", "")
    vcs = direct.get("vcs_info")
    if vcs:
        return f"{name} @ {vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}"
    if direct.get("dir_info") is not None or url.startswith("file:"):
        # a local folder (an editable install) cannot be reinstalled elsewhere from a URL
        editable = " editable" if (direct.get("dir_info") or {}).get("editable") else ""
        return f"# {name}=={version}  (installed{editable} from {url})"
    return f"{name} @ {url}"


def lock_text(env: dict[str, Any]) -> str:
    """The environment as a pip requirements file (``name==version`` lines, with a header).

    Packages installed from a VCS are pinned to their commit (``name @ git+URL@commit``);
    packages installed from a local folder are listed as comments, since that folder is not
    where the lock will be used.
    """
    header = [
        "# dashapp environment lock (pip requirements format):",
        "#   pip install -r environment.txt",
        f"# Python {env.get('python', {}).get('version', '?')}"
        f" ({env.get('python', {}).get('implementation', '?')})"
        f" on {env.get('platform', {}).get('platform', '?')}",
        f"# captured {env.get('captured', '?')} on {env.get('hostname', '?')}",
    ]
    git = env.get("git") or {}
    if git.get("commit"):
        state = "dirty: uncommitted changes" if git.get("dirty") else "clean"
        header.append(f"# analysis repository {git.get('repo')} at {git['commit']} ({state})")
    container = env.get("container") or {}
    if container:
        header.append(f"# container: {container.get('kind')} {container.get('image') or ''}")
    direct = env.get("direct") or {}
    lines = [
        _requirement(name, version, direct.get(name))
        for name, version in (env.get("packages") or {}).items()
    ]
    return "\n".join(header + lines) + "\n"
