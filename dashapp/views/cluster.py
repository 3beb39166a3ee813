"""The Dask cluster pane: a form to start a cluster, live tables of its workers and batch jobs.

A view on :data:`dashapp.cluster.MANAGER` (one cluster per server process, shared by every
session and surviving browser reloads). The form is a :class:`~dashapp.state.ClusterForm`;
the buttons call the manager's coroutines; a periodic callback redraws the tables from
``MANAGER.info()``. Errors (a refused ``sbatch``, workers that never arrive, lost jobs) appear
here, in words.

The dashboard link goes through the app's own server (``dask/status``, relative to the page:
:mod:`dashapp.cluster.proxy`) when that route is registered, so it opens wherever the page
does: through an SSH tunnel, behind JupyterLab's proxy. Empty tables say so; the batch jobs
table shows only for batch-queue clusters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn
import param

from ..errors import DashappError
from ..state.cluster import ClusterForm
from ..state.sweep import SweepRun
from .notebook import ensure_notebook_extension
from .session import on_session, poll
from .text import TextAlert, as_markdown, escape

__all__ = ["ClusterPane", "SweepPane", "dashboard_href"]

log = logging.getLogger(__name__)

#: The workers table: what a person watches, compact enough to fit beside the form (memory
#: is "used / limit"; a worker's status shows only when it is not "running").
_WORKER_COLUMNS = ["name", "host", "threads", "memory", "cpu", "running", "stored"]
_JOB_COLUMNS = ["job_id", "state", "name", "time_left", "workers", "reason"]
#: Short column titles: the tables fit the pane's width instead of being cut off.
_TITLES = {"job_id": "job", "time_left": "time left"}
#: Kinds without batch jobs (no "Batch jobs" table).
_NO_JOBS = ("local", "connect")


def dashboard_href(link: str | None) -> str:
    """Where the pane's "Dask dashboard" link points, for the browser showing the app.

    Through the app's own server (``dask/<path>``, relative to the page) when
    :mod:`dashapp.cluster.proxy` is registered; else through jupyter-server-proxy when under
    Jupyter; else the scheduler's own address (reachable only on this machine).
    """
    if not link:
        return ""
    from ..cluster import proxy

    if proxy.served():
        from urllib.parse import urlsplit

        return f"{proxy.PATH}{urlsplit(link).path or '/status'}"
    from ..jupyter import proxied_url

    return proxied_url(link)


def _mb(value: Any) -> str:
    try:
        mib = float(value) / 2**20
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    return f"{mib / 1024:,.1f} GiB" if mib >= 10 * 1024 else f"{mib:,.0f} MiB"


def workers_frame(info: dict[str, Any]) -> pd.DataFrame:
    """The workers table from ``MANAGER.info()`` (pure, for tests)."""
    rows = []
    for w in info.get("workers") or []:
        name = str(w.get("name", ""))
        if w.get("status") not in (None, "running"):
            name += f" ({w['status']})"
        used, limit = _mb(w.get("memory")), _mb(w.get("memory_limit"))
        cpu = w.get("cpu")
        rows.append(
            {
                "name": name,
                "host": w.get("host"),
                "threads": w.get("nthreads"),
                "memory": f"{used} / {limit}" if limit else used,
                "cpu": f"{cpu:.0f} %" if isinstance(cpu, (int, float)) else cpu,
                "running": w.get("executing"),
                "stored": w.get("in_memory"),
            }
        )
    return pd.DataFrame(rows, columns=_WORKER_COLUMNS)


def jobs_frame(info: dict[str, Any]) -> pd.DataFrame:
    """The batch jobs table from ``MANAGER.info()`` (pure, for tests)."""
    rows = []
    for j in info.get("jobs") or []:
        row = {k: j.get(k) for k in _JOB_COLUMNS}
        row["workers"] = ", ".join(row["workers"] or [])
        rows.append(row)
    return pd.DataFrame(rows, columns=_JOB_COLUMNS)


class ClusterPane(pn.viewable.Viewer):
    """Start, scale, adapt and stop the server's Dask cluster; watch its workers and jobs."""

    form = param.ClassSelector(class_=ClusterForm, doc="The cluster form's fields.")

    def __init__(
        self,
        form: ClusterForm | None = None,
        manager: Any = None,
        record: Any = None,
        **params: Any,
    ) -> None:
        from ..auth import OWNER, session_access

        # Decided here, on the server, from the request that made this session (its token),
        # never from anything the browser sends later; the manager refuses viewers too.
        self._owner = session_access() == OWNER
        if form is not None and form.owner and not self._owner:
            raise ValueError("a viewer's cluster pane needs a ClusterForm(owner=False)")
        super().__init__(form=form or ClusterForm(owner=self._owner), **params)
        from ..cluster import MANAGER

        self.manager = manager or MANAGER
        self.record = record
        self._recorded_errors: set[str] = set()
        self._widgets = {
            name: self._widget(name) for name in self.form.param if name not in ("name", "owner")
        }
        self._viewer_note = pn.pane.Markdown(
            "Job directives, prologue, interface and folders are the site's settings: only "
            "the person who started this server (with its access token) can change them.",
            visible=not self._owner,
            css_classes=["dashapp-cluster-viewer"],
        )
        self._preview = pn.widgets.Button(label="Preview job script", sizing_mode="stretch_width")
        self._start = pn.widgets.Button(
            label="Start",
            color="primary",
            sizing_mode="stretch_width",
            css_classes=["dashapp-cluster-start"],
        )
        self._scale = pn.widgets.Button(
            label="Scale / adapt",
            sizing_mode="stretch_width",
            css_classes=["dashapp-cluster-scale"],
        )
        self._stop = pn.widgets.Button(
            label="Stop",
            color="danger",
            sizing_mode="stretch_width",
            css_classes=["dashapp-cluster-stop"],
        )
        self._script = pn.pane.Markdown(
            "", sizing_mode="stretch_width", visible=False, css_classes=["dashapp-job-script"]
        )
        self._message = TextAlert(
            "",
            alert_type="danger",
            visible=False,
            sizing_mode="stretch_width",
            css_classes=["dashapp-cluster-error"],
        )
        self._summary = pn.pane.HTML(
            "", sizing_mode="stretch_width", css_classes=["dashapp-cluster-summary"]
        )
        # Columns as wide as their content, the table scrolling sideways when they are wider
        # than the pane (none cut off); the height follows the rows (_fit), up to ten.
        self._workers = pn.widgets.Tabulator(
            workers_frame({}),
            show_index=False,
            disabled=True,
            layout="fit_data_stretch",
            titles=_TITLES,
            configuration={"columnDefaults": {"headerSort": False}},  # no arrows: room
            sizing_mode="stretch_width",
            visible=False,
            css_classes=["dashapp-workers"],
        )
        self._jobs = pn.widgets.Tabulator(
            jobs_frame({}),
            show_index=False,
            disabled=True,
            layout="fit_data_stretch",
            titles=_TITLES,
            configuration={"columnDefaults": {"headerSort": False}},  # no arrows: room
            sizing_mode="stretch_width",
            visible=False,
            css_classes=["dashapp-jobs"],
        )
        self._no_workers = pn.pane.HTML(
            "<i>No workers yet: start a cluster, or wait for its workers to connect.</i>",
            css_classes=["dashapp-workers-empty"],
        )
        self._no_jobs = pn.pane.HTML("<i>No batch jobs.</i>", css_classes=["dashapp-jobs-empty"])
        self._jobs_title = pn.pane.Markdown("#### Batch jobs", margin=(0, 10))
        self._events = pn.pane.HTML(
            "",
            sizing_mode="stretch_width",
            max_height=200,
            styles={"overflow-y": "auto", "font-size": "12px"},
        )
        self._preview.on_click(self._on_preview)
        self._start.on_click(self._on_start)
        self._scale.on_click(self._on_scale)
        self._stop.on_click(self._on_stop)
        self.form.param.watch(self._show_fields, ["kind", "adaptive"])
        self._show_fields()
        self._last_info: str = ""
        self._poll = None
        self.update()
        self.form.param.watch(self._kind_changed, "kind")
        self._layout = pn.Row(
            pn.Column(
                "### Start a cluster",
                self._viewer_note,
                *self._widgets.values(),
                pn.Row(self._preview, self._start),
                pn.Row(self._scale, self._stop),
                width=330,
            ),
            pn.Column(
                self._message,
                self._summary,
                "#### Workers",
                self._workers,
                self._no_workers,
                self._jobs_title,
                self._jobs,
                self._no_jobs,
                "#### Events",
                self._events,
                self._script,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    def _widget(self, name: str) -> pn.widgets.Widget:
        p = self.form.param[name]
        label = (p.doc or name).split(".")[0]
        if name in ClusterForm.SHELL_FIELDS and not self._owner:  # shown, not editable
            return pn.widgets.TextAreaInput.from_param(
                p, label=label, height=70, sizing_mode="stretch_width", disabled=True
            )
        if name in ("job_directives", "prologue"):
            return pn.widgets.TextAreaInput.from_param(
                p, label=label, height=70, sizing_mode="stretch_width"
            )
        if name == "kind":
            return pn.widgets.Select.from_param(
                p, label="Cluster kind", sizing_mode="stretch_width"
            )
        if isinstance(p, param.Boolean):
            return pn.widgets.Checkbox.from_param(p, label=label)
        if isinstance(p, param.Integer):
            return pn.widgets.IntInput.from_param(p, label=label, sizing_mode="stretch_width")
        return pn.widgets.TextInput.from_param(p, label=label, sizing_mode="stretch_width")

    def _repr_mimebundle_(self, include=None, exclude=None):
        ensure_notebook_extension("tabulator")  # offline-safe, and the tables' JS
        return super()._repr_mimebundle_(include, exclude)

    def __panel__(self) -> pn.viewable.Viewable:
        if self._poll is None:
            try:
                self._poll = poll(self.update, 1000)
            except RuntimeError:  # no event loop (a script): update() can be called by hand
                self._poll = None
        return self._layout

    def _show_fields(self, *events: Any) -> None:
        shown = set(self.form.visible_fields()) | {"kind"}
        for name, widget in self._widgets.items():
            visible = name in shown
            if name in ("minimum", "maximum"):
                visible = visible and self.form.adaptive
            if name == "workers":
                visible = visible and not self.form.adaptive
            widget.visible = visible
        self._preview.visible = self.form.is_batch

    def _kind_changed(self, *events: Any) -> None:
        self._last_info = ""  # the batch jobs table shows with batch kinds: redraw
        self.update()

    def _say(self, text: str, kind: str = "danger") -> None:
        self._message.param.update(object=as_markdown(text), alert_type=kind, visible=bool(text))

    # ------------------------------------------------------------------ actions
    def _on_preview(self, event: Any = None) -> None:
        try:
            script = self.manager.job_script(self.form.spec(), privileged=self._owner)
        except DashappError as exc:
            self._say(f"The job script cannot be made: {exc}")
            return
        self._say("")
        self._script.object = f"#### Job script\n```bash\n{script}\n```"
        self._script.visible = True

    async def _on_start(self, event: Any = None) -> None:
        spec = self.form.spec()
        self._say("")
        self._start.loading = True
        try:
            problems = await self.manager.validate(spec, privileged=self._owner)
            if problems:
                self._say("Nothing was submitted: " + " ".join(problems))
                return
            info = await self.manager.start(spec, replace=True, privileged=self._owner)
            script = None
            if self.form.is_batch:
                with contextlib.suppress(DashappError):
                    script = self.manager.job_script(spec, privileged=self._owner)
            self._record(
                "start", spec=spec, job_script=script, scheduler=info.get("scheduler_address")
            )
        except DashappError as exc:
            self._say(str(exc))
            self._record("start failed", spec=spec, error=str(exc))
        except Exception as exc:  # last line of defence in a click handler: said, logged
            log.exception("starting a cluster failed unexpectedly")
            self._say(f"The cluster did not start: {exc}")
            self._record("start failed", spec=spec, error=str(exc))
        finally:
            self._start.loading = False
            self.update()

    async def _on_scale(self, event: Any = None) -> None:
        self._say("")
        try:
            if self.form.adaptive:
                await self.manager.adapt(self.form.minimum, self.form.maximum)
                self._record("adapt", minimum=self.form.minimum, maximum=self.form.maximum)
            else:
                await self.manager.scale(self.form.workers)
                self._record("scale", workers=self.form.workers)
        except DashappError as exc:
            self._say(str(exc))
        except Exception as exc:  # last line of defence in a click handler: said, logged
            log.exception("scaling the cluster failed unexpectedly")
            self._say(f"The cluster was not scaled: {exc}")
        self.update()

    async def _on_stop(self, event: Any = None) -> None:
        self._stop.loading = True
        try:
            await self.manager.stop()
            self._record("stop")
        except DashappError as exc:
            self._say(str(exc))
        except Exception as exc:  # last line of defence in a click handler: said, logged
            log.exception("stopping the cluster failed unexpectedly")
            self._say(f"The cluster did not stop cleanly: {exc}")
        finally:
            self._stop.loading = False
            self.update()

    def _record(self, action: str, **data: Any) -> None:
        if self.record is None:
            return
        try:
            info = self.manager.info()
            jobs = [j.get("job_id") for j in info.get("jobs") or []]
            self.record.cluster(action, kind=self.form.kind, jobs=jobs, **data)
        except Exception:  # recording must never break the pane (a full disk, a bad value)
            log.warning("could not record the cluster action %r", action, exc_info=True)

    # ------------------------------------------------------------------ display
    def update(self) -> None:
        """Redraw from the manager's ``info()`` (cheap; skipped when nothing changed)."""
        info = self.manager.info()
        key = json.dumps(info, sort_keys=True, default=str)
        if key == self._last_info:
            return
        self._last_info = key
        status = info.get("status", "none")
        link = dashboard_href(info.get("dashboard_link"))
        parts = [f"<b>Status:</b> {escape(str(status))}"]
        if info.get("kind"):
            parts.append(f"<b>Kind:</b> {escape(str(info['kind']))}")
        if info.get("scheduler_address"):
            parts.append(f"<b>Scheduler:</b> <code>{escape(info['scheduler_address'])}</code>")
        parts.append(
            f"<b>Workers:</b> {len(info.get('workers') or [])}"
            + (f" of {info['requested_workers']}" if info.get("requested_workers") else "")
        )
        if info.get("owner_pid"):  # started from a page of another process of this server
            parts.append(f"<b>Runs in:</b> server process {int(info['owner_pid'])}")
        if info.get("adapt"):
            a = info["adapt"]
            parts.append(f"<b>Adaptive:</b> {a.get('minimum')}–{a.get('maximum')}")
        if info.get("walltime_left_s") is not None:
            left = int(info["walltime_left_s"])
            parts.append(
                f"<b>Walltime left:</b> {left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}"
            )
        if link:
            parts.append(
                f'<a href="{escape(link)}" target="_blank" class="dashapp-dashboard-link">'
                "Dask dashboard</a>"
            )
        self._summary.object = " · ".join(parts)
        workers, jobs = workers_frame(info), jobs_frame(info)
        kind = info.get("kind") or self.form.kind
        batch = kind not in _NO_JOBS or not jobs.empty
        self._fit(self._workers, self._no_workers, workers, True)
        self._fit(self._jobs, self._no_jobs, jobs, batch)
        self._jobs_title.visible = batch
        errors = info.get("errors") or []
        if errors:
            self._say(" ".join(errors))
            for text in errors:  # workers lost, refused jobs: into the record, once each
                if text not in self._recorded_errors:
                    self._recorded_errors.add(text)
                    self._record("problem", text=text)
        events = list(info.get("events") or [])[-15:]
        esc = lambda v: escape(str(v))  # noqa: E731
        self._events.object = "<br>".join(
            f"<code>{esc(e.get('time', ''))}</code> {esc(e.get('text', ''))}"
            for e in reversed(events)
        )
        running = status == "running"
        self._scale.disabled = not running
        self._stop.disabled = status in ("none", "stopping")

    @staticmethod
    def _fit(table: Any, empty: Any, frame: pd.DataFrame, shown: bool) -> None:
        """Show ``frame`` in ``table`` sized to its rows (up to ten), or the placeholder."""
        rows = len(frame)
        table.param.update(
            value=frame, visible=shown and rows > 0, height=44 + 35 * min(max(rows, 1), 10)
        )
        empty.visible = shown and rows == 0


class SweepPane(pn.viewable.Viewer):
    """Run the stitched 1-D SimPEG inversion sweep on the cluster, with progress and cancel."""

    run = param.ClassSelector(class_=SweepRun, doc="The sweep's settings and progress.")

    def __init__(
        self,
        run: SweepRun | None = None,
        root: str = ".",
        on_output: Any = None,
        manager: Any = None,
        record: Any = None,
        **params: Any,
    ) -> None:
        super().__init__(run=run or SweepRun(), **params)
        from ..cluster import MANAGER

        self.manager = manager or MANAGER
        self.record = record
        self._started = 0.0
        self.root = root
        self._on_output = on_output
        r = self.run
        self._fields = pn.Column(
            pn.widgets.IntInput.from_param(r.param.ny, label="Stations along y"),
            pn.widgets.IntInput.from_param(r.param.nx, label="Stations along x"),
            _labelled("Soundings", r.param.kind, "dashapp-sweep-kind"),
            _labelled("Inversion size per station", r.param.preset, "dashapp-sweep-preset"),
        )
        self._go = pn.widgets.Button(
            label="Run the sweep on the cluster",
            color="primary",
            css_classes=["dashapp-sweep-start"],
        )
        self._cancel = pn.widgets.Button(
            label="Cancel", color="danger", disabled=True, css_classes=["dashapp-sweep-cancel"]
        )
        self._bar = pn.indicators.Progress(
            value=0, max=100, sizing_mode="stretch_width", css_classes=["dashapp-sweep-progress"]
        )
        self._text = pn.pane.HTML(
            "", css_classes=["dashapp-sweep-text"], sizing_mode="stretch_width"
        )
        # Beside the button: what stops the sweep from starting (no cluster) is read where
        # the person is looking, not below the fold.
        self._hint = pn.pane.HTML(
            "", visible=False, css_classes=["dashapp-sweep-hint"], width=240, margin=(5, 10)
        )
        self._go.on_click(self._on_go)
        self._cancel.on_click(lambda e: self.run.cancel())
        r.param.watch(self._show, ["done", "failed", "total", "status", "message", "failures"])
        self._doc = None
        self._show()
        self._layout = pn.Column(
            "### Stitched 1-D inversion sweep",
            pn.pane.Markdown(
                "One independent SimPEG 1-D layered-earth inversion per station of a grid over "
                "the demo's 3-D model, run as Dask tasks on the current cluster; each result is "
                "written into a stitched 3-D model as it completes, and the slicer follows it."
            ),
            self._fields,
            pn.Row(self._go, self._cancel, self._hint),
            self._bar,
            self._text,
            width=560,
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def _on_go(self, event: Any = None) -> None:
        try:
            client = self.manager.client
        except DashappError as exc:
            text = str(exc)
            if self.manager.info().get("status") != "running":
                text = "No cluster is running: start one above (Start), then run the sweep."
            self._hint.param.update(
                object=f'<span class="dashapp-problem">{escape(text)}</span>', visible=True
            )
            return
        self._hint.visible = False
        doc = pn.state.curdoc
        self._doc = doc if doc is not None and doc.session_context is not None else None
        self._started = time.time()
        try:
            out = self.run.start(client, self.root, on_update=self._from_thread)
        except (DashappError, OSError, ValueError) as exc:  # the sweeps folder, the plan
            self._hint.param.update(
                object=f'<span class="dashapp-problem">{escape(str(exc))}</span>', visible=True
            )
            return
        self._show()
        if self._on_output and self.run.status == "running":
            if self._doc is not None:
                # Panel runs this click handler without the document lock; what the output
                # callback changes (the slicer, the convergence plot's Bokeh source) needs it.
                on_session(self._doc, lambda: self._on_output(out))
            else:
                self._on_output(out)

    def _from_thread(self) -> None:
        doc = self._doc
        if doc is not None:
            on_session(doc, self._show)

    def _show(self, *events: Any) -> None:
        r = self.run
        self._bar.value = int(100 * (r.done + r.failed) / r.total) if r.total else 0
        failures = "".join(
            f"<li>station ({iy}, {ix}): {escape(str(msg))}</li>" for iy, ix, msg in r.failures
        )
        follows = (
            f"<br>The slicer follows <code>{escape(r.out)}</code> (Slicer tab)."
            if r.out and r.status != "idle" and self._on_output
            else ""
        )
        self._text.object = (
            escape(r.message) + follows + (f"<ul>{failures}</ul>" if failures else "")
        )
        running = r.status == "running"
        self._go.disabled = running
        self._cancel.disabled = not running
        if self.record is not None and self._started and not running and r.status != "idle":
            started, self._started = self._started, 0.0
            try:
                self.record.computation(
                    "1-D inversion sweep",
                    parameters={"ny": r.ny, "nx": r.nx, "kind": r.kind, "preset": r.preset},
                    inputs=[],
                    outputs=[str(Path(self.root) / r.out)] if r.out else [],
                    seconds=round(time.time() - started, 1),
                    status=r.status,
                    error=r.message if r.status in ("error", "failed-partially") else None,
                    root=self.root,
                )
            except Exception:  # recording must never break the pane (a full disk, ...)
                log.warning("could not record the sweep", exc_info=True)


def _labelled(label: str, p: param.Parameter, css: str) -> pn.viewable.Viewable:
    """A toggle group with its label above it (Panel's button groups show none)."""
    return pn.Column(
        pn.pane.HTML(f"<label>{escape(label)}</label>", margin=(5, 10, 0, 10)),
        pn.widgets.RadioButtonGroup.from_param(p, variant="outline", name=label),
        css_classes=[css],
    )
