"""The Binder image's spec (binder/): repo2docker accepts it, and it pins what the tests ran with.

``repo2docker --no-build --debug .`` prints the Dockerfile it would build and exits, without a
Docker daemon. The pins in binder/requirements.txt must be the versions installed here, where the
tests pass, so that the image runs what was tested.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """binder/requirements.txt as ``{canonical name: version}``."""
    out: dict[str, str] = {}
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, ver = line.partition("==")
        assert sep, f"binder/requirements.txt: {line!r} is not pinned with =="
        out[canonical(name)] = ver.strip()
    return out


def direct_dependencies() -> set[str]:
    """What dashapp needs to run, in the app and in JupyterLab (its ``jupyter`` extra)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["jupyter"]
    return {canonical(Requirement(spec).name) for spec in specs}


@pytest.mark.parametrize(
    "user",
    [[], ["--user-id", "1000", "--user-name", "jovyan"]],  # as root here; as on a BinderHub
    ids=["as-is", "binder-user"],
)
def test_repo2docker_accepts_the_spec(user, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"  # proves no daemon is contacted
    result = subprocess.run(
        [sys.executable, "-m", "repo2docker", "--no-build", "--debug", *user, "."],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Building conda environment for python=3.11" in out  # binder/runtime.txt
    dockerfile = out[out.index("FROM ") :]
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    assert "RUN ./binder/postBuild" in dockerfile
    assert 'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in dockerfile
    # requirements go into the environment that runs the Jupyter server (the tile needs that)
    assert "ENV KERNEL_PYTHON_PREFIX=${NB_PYTHON_PREFIX}" in dockerfile
    if user:
        assert "COPY --chown=1000:1000 src/ ${REPO_DIR}/" in dockerfile


def test_binder_files():
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    assert sys.version_info[:2] == (3, 11), "binder/runtime.txt names the Python of the tests"
    for script in ("postBuild", "start"):
        path = BINDER / script
        assert os.access(path, os.X_OK), f"binder/{script} is not executable"
        assert path.read_text().startswith("#!/bin/bash\n")
        subprocess.run(["bash", "-n", str(path)], check=True)
    post = (BINDER / "postBuild").read_text()
    assert "pip install --no-deps" in post
    lines = [ln for ln in (BINDER / "start").read_text().splitlines() if ln.strip()]
    assert lines[-1] == 'exec "$@"'


def test_start_points_the_slicer_at_the_demo(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DASHAPP_ROOT"}
    env.update(HOME=str(tmp_path), DASHAPP_CACHE=str(tmp_path / "cache"))
    script = str(BINDER / "start")
    cmd = [script, sys.executable, "-c", "import os; print(os.environ['DASHAPP_ROOT'])"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    root = Path(out.strip())
    assert (root / "inversion" / "model.h5").is_file()
    assert (root / "survey" / "data.h5").is_file()
    # a root chosen by the deployment is kept; the command's exit code comes through
    env["DASHAPP_ROOT"] = str(tmp_path)
    cmd = [script, sys.executable, "-c", "import os, sys; sys.exit(os.environ['DASHAPP_ROOT'])"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert (result.returncode, result.stderr.strip()) == (1, str(tmp_path))


def test_direct_dependencies_are_pinned_to_the_tested_versions():
    pinned = pins()
    direct = direct_dependencies()
    must = {"panel", "bokeh", "holoviews", "datashader", "h5py", "numpy", "dask", "distributed"}
    must |= {"dask-jobqueue", "param", "jupyterlab", "jupyter-server-proxy"}
    assert must <= direct
    wrong = {
        name: (pinned.get(name), version(name))
        for name in sorted(direct)
        if pinned.get(name) != version(name)
    }
    assert not wrong, f"binder/requirements.txt pin vs installed: {wrong}"
    # security advisories fixed in 4.2 (websocket and proxy authentication)
    assert Version(pinned["jupyter-server-proxy"]) >= Version("4.2")


def test_every_installed_pin_matches():
    """The rest of the lock: what is installed here is at the pinned version (CI installs the
    test extras with the lock as constraints, so packages outside them may be absent)."""
    wrong = {}
    for name, pinned in pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"binder/requirements.txt pin vs installed: {wrong}"
