"""The cluster form: what a user sets to start a Dask cluster, as a param model.

:class:`ClusterForm` holds the fields of the cluster pane's form and turns them into the
request dict that :class:`dashapp.cluster.ClusterManager` takes (:meth:`ClusterForm.spec`).
Choosing a kind loads that kind's defaults from the Dask configuration (``jobqueue.<name>``
and ``dashapp.defaults.<kind>``), so a site's ``jobqueue.yaml`` pre-fills the form.
"""

from __future__ import annotations

from typing import Any

import param

__all__ = ["ClusterForm", "lines"]


def lines(text: str) -> list[str]:
    """Non-empty lines of a text box, stripped (job directives, prologue commands)."""
    return [ln.strip() for ln in (text or "").splitlines() if ln.strip()]


def _kinds() -> list[str]:
    from ..cluster.config import CONNECT, cluster_kinds

    return list(dict.fromkeys([*cluster_kinds(), CONNECT]))


class ClusterForm(param.Parameterized):
    """The fields of the cluster form; :meth:`spec` is what the manager starts."""

    kind = param.Selector(
        default="local", objects=["local"], doc="Cluster kind (from Dask config)."
    )
    # local
    n_workers = param.Integer(default=2, bounds=(0, None), doc="Local worker processes.")
    threads_per_worker = param.Integer(default=1, bounds=(1, None), doc="Threads per local worker.")
    memory_limit = param.String(default="auto", doc="Memory per local worker ('4GB', 'auto').")
    # batch queues
    cores = param.Integer(default=1, bounds=(1, None), doc="Cores per batch job.")
    memory = param.String(default="4GB", doc="Memory per batch job ('16GB').")
    processes = param.Integer(default=1, bounds=(1, None), doc="Worker processes per job.")
    queue = param.String(default="", doc="Queue or Slurm partition.")
    account = param.String(default="", doc="Account (project) charged for the jobs.")
    walltime = param.String(default="00:30:00", doc="Walltime per job ('HH:MM:SS').")
    job_directives = param.String(
        default="", doc="Extra batch directives, one per line (e.g. '--constraint=cpu')."
    )
    prologue = param.String(
        default="", doc="Shell commands run before the workers start, one per line."
    )
    interface = param.String(default="", doc="Network interface for workers ('ib0', 'hsn0').")
    workers_per_job = param.Integer(
        default=4, bounds=(1, None), doc="Bulk mode: workers started inside one batch job."
    )
    local_directory = param.String(default="", doc="Scratch folder for workers' spill files.")
    log_directory = param.String(default="", doc="Folder for the batch jobs' output files.")
    # connect
    address = param.String(default="", doc="Address of a running scheduler ('tcp://host:8786').")
    # scaling
    workers = param.Integer(default=2, bounds=(0, None), doc="Workers to start.")
    adaptive = param.Boolean(default=False, doc="Scale with the load between minimum and maximum.")
    minimum = param.Integer(default=0, bounds=(0, None), doc="Adaptive: fewest workers.")
    maximum = param.Integer(default=10, bounds=(1, None), doc="Adaptive: most workers.")

    owner = param.Boolean(
        default=True,
        constant=True,
        doc="True for the server's owner; others cannot set what reaches a shell (SHELL_FIELDS).",
    )

    #: Fields whose text ends up in a job script or a command line that a shell runs: only the
    #: server's owner sets them (others start with the site's settings from Dask config).
    SHELL_FIELDS = (
        "job_directives", "prologue", "interface", "local_directory", "log_directory", "address",
    )  # fmt: skip
    _LOCAL = ("threads_per_worker", "memory_limit")
    _BATCH = (
        "cores", "memory", "processes", "queue", "account", "walltime", "job_directives",
        "prologue", "interface", "local_directory", "log_directory",
    )  # fmt: skip

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        kinds = _kinds()
        if not self.owner:  # connecting to another scheduler is the owner's (see the manager)
            from ..cluster.config import CONNECT

            kinds = [k for k in kinds if k != CONNECT]
        self.param.kind.objects = kinds
        self._load_defaults()

    @property
    def is_batch(self) -> bool:
        """True for batch-queue kinds (Slurm, PBS, ...)."""
        return self.kind not in ("local", "connect")

    def visible_fields(self) -> list[str]:
        """The form fields that apply to the chosen kind."""
        if self.kind == "connect":
            return ["address"]
        scaling = ["workers", "adaptive", "minimum", "maximum"]
        if self.kind == "local":
            return [*self._LOCAL, *scaling]
        extra = ["workers_per_job"] if self.kind.endswith("-bulk") else []
        return [*self._BATCH, *extra, *scaling]

    @param.depends("kind", watch=True)
    def _load_defaults(self) -> None:
        """Fill the form from the Dask configuration of the chosen kind."""
        from ..cluster.config import defaults

        try:
            d = defaults(self.kind)
        except (KeyError, ImportError, ValueError):  # a kind whose class cannot be imported
            return
        updates: dict[str, Any] = {}
        for key in ("n_workers", "threads_per_worker", "cores", "processes", "workers_per_job"):
            if isinstance(d.get(key), int) and d[key] > 0:
                updates[key] = d[key]
        for key in ("memory_limit", "memory", "queue", "account", "walltime", "interface",
                    "local_directory", "log_directory", "address"):  # fmt: skip
            if isinstance(d.get(key), (str, int, float)) and d.get(key) is not None:
                updates[key] = str(d[key])
        if self.kind == "local" and isinstance(d.get("n_workers"), int):
            updates["workers"] = d["n_workers"]
        if isinstance(d.get("job_extra_directives"), list):
            updates["job_directives"] = "\n".join(d["job_extra_directives"])
        if isinstance(d.get("job_script_prologue"), list):
            updates["prologue"] = "\n".join(d["job_script_prologue"])
        self.param.update(**updates)

    def options(self) -> dict[str, Any]:
        """The cluster class's keyword options for the chosen kind."""
        if self.kind == "connect":
            return {"address": self.address.strip()}
        if self.kind == "local":
            opts: dict[str, Any] = {
                "n_workers": 0,  # the manager scales after start
                "threads_per_worker": self.threads_per_worker,
                "memory_limit": self.memory_limit or "auto",
            }
            return opts
        opts = {
            "cores": self.cores,
            "memory": self.memory,
            "processes": self.processes,
            "walltime": self.walltime,
            "job_extra_directives": lines(self.job_directives),
            "job_script_prologue": lines(self.prologue),
        }
        for key in ("queue", "account", "interface", "local_directory", "log_directory"):
            value = getattr(self, key).strip()
            if value:
                opts[key] = value
        if not self.owner:  # the site's settings (Dask config) apply; the manager checks too
            for key in ("job_extra_directives", "job_script_prologue", *self.SHELL_FIELDS):
                opts.pop(key, None)
        if self.kind.endswith("-bulk"):
            opts["workers_per_job"] = self.workers_per_job
        return opts

    def spec(self) -> dict[str, Any]:
        """The request :meth:`dashapp.cluster.ClusterManager.start` takes."""
        out: dict[str, Any] = {"kind": self.kind, "options": self.options()}
        if self.kind == "connect":
            return out
        if self.adaptive:
            out["adapt"] = {"minimum": self.minimum, "maximum": self.maximum}
        else:
            out["workers"] = self.workers
        return out
