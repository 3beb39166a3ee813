"""The whole slicer app: file browser, slicer, and a URL that follows the view."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import panel as pn
import param

from .. import settings
from ..data import DashappError, resolve
from ..data.fsguard import bounded
from ..data.paths import check_regular_file
from ..state import VIEW_PARAMS, BrowserState, SliceState, apply_query, to_query
from .browser import FileBrowser
from .icons import CAMERA, PLAY
from .series import ConvergencePlot
from .session import on_session, poll, release_links
from .slicer import Slicer
from .text import TextAlert, as_markdown, escape, problem_text

__all__ = ["SlicerApp", "resolve_root"]

log = logging.getLogger(__name__)

_CSS = """
.dashapp-status-text { font-size: 12.5px; color: #444; }
.dashapp-title { font-size: 14px; }
.dashapp-problem { color: #a33; }
table.dashapp-attrs { font-size: 12px; border-collapse: collapse; margin-top: 4px; }
table.dashapp-attrs td { border-top: 1px solid #ddd; padding: 1px 4px; vertical-align: top;
  max-width: 220px; overflow-wrap: anywhere; }
"""

#: What the slicer's place shows while no file is open (a root of the user's own data).
_EMPTY_HTML = """
<div style="max-width: 640px; margin: 40px auto; font-size: 15px; color: #333;">
<h3 style="margin-top: 0">No dataset open yet</h3>
<ol style="line-height: 1.6">
<li>Pick an HDF5 file under <b>Files</b> on the left (click a folder to open it).</li>
<li>Its largest image-like dataset opens here; pick any other in the file's tree, which
appears below the files.</li>
<li>Slide through it along any axis; the address bar is a link to exactly that view.</li>
</ol>
</div>
"""


#: Below this window width (px) the page opens with the file browser folded away, and below
#: :data:`NARROW_CONTROLS` the slicer's controls too: in a JupyterLab tab of ~800 px the plot
#: was ~140 px wide between the two fixed columns. Both unfold with a click.
NARROW_SIDEBAR = 1200
NARROW_CONTROLS = 1000

#: The "Copy link" button's script: the address bar holds the view (the server writes it), so
#: the link is that address without any token, whether the page is served standalone or in a
#: JupyterLab tab through jupyter-server-proxy (the iframe's address is the proxied one). It
#: goes to the clipboard where the browser allows, and always into a box to select and copy.
_COPY_LINK_JS = """
let link = window.location.href;  // as the server wrote it: '/' and ',' left readable
const url = new URL(link);
if (url.searchParams.has('token')) {
  url.searchParams.delete('token');
  link = url.toString();
}
box.value = link;
box.visible = true;
const said = (ok) => {
  note.text = ok ? 'Link copied to the clipboard.'
                 : 'Copy the link from the box: this browser gave no clipboard access.';
  note.visible = true;
};
const fallback = () => {
  let ok = false;
  try {
    const area = document.createElement('textarea');
    area.value = link;
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    ok = document.execCommand('copy');
    area.remove();
  } catch (e) { ok = false; }
  said(ok);
};
if (navigator.clipboard && window.isSecureContext) {
  navigator.clipboard.writeText(link).then(() => said(true), fallback);
} else {
  fallback();
}
"""

#: On opening the page: fold the sidebar (when the link opened a file: else the first page needs
#: it to pick one) and the controls away in a narrow window (a JupyterLab tab).
#: And whenever the sidebar folds or unfolds, the page lays itself out again: Bokeh sizes the
#: main area on window resizes only, so an unfolded sidebar pushed the plot off the right edge.
_NARROW_JS = f"""
const width = window.innerWidth;
const relayout = () => window.dispatchEvent(new Event('resize'));
const panel = document.getElementById('sidebar');
if (panel) {{
  panel.addEventListener('shown.bs.collapse', relayout);
  panel.addEventListener('hidden.bs.collapse', relayout);
}}
if (width < {NARROW_SIDEBAR} && FOLD_FILES) {{
  const sidebar = document.getElementById('sidebar');
  if (sidebar && sidebar.classList.contains('show')) {{
    sidebar.classList.remove('show');
    const toggle = document.getElementById('sidebar-toggle');
    if (toggle) {{ toggle.setAttribute('aria-expanded', 'false'); }}
    relayout();
  }}
}}
if (width < {NARROW_CONTROLS}) {{  // the toggle's model: the server hides the controls
  for (const doc of (window.Bokeh ? window.Bokeh.documents : [])) {{
    for (const model of doc.all_models) {{
      if ((model.css_classes || []).includes('dashapp-controls-toggle')) {{ model.active = false; }}
    }}
  }}
}}
"""


def _scrolling(content: Any) -> pn.viewable.Viewable:
    """``content`` in a box that fills its tab and scrolls, whatever the content's height."""
    return pn.Column(content, scroll=True, sizing_mode="stretch_both", min_height=0)


_ENV_RECORDED: set[str] = set()
_FILES_RECORDED: set[tuple[str, str, int, int]] = set()


def _record_environment_once(record: Any) -> None:
    """The software environment, once per workspace and server process (in the background)."""
    key = str(record.workspace)
    if key in _ENV_RECORDED:
        return
    _ENV_RECORDED.add(key)
    threading.Thread(target=record.environment, name="dashapp-environment", daemon=True).start()


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder to show: ``root``, else ``$DASHAPP_ROOT``, else the demo workspace."""
    chosen = root or settings.current().root
    if chosen:
        path = Path(chosen).expanduser().resolve()
        if not path.is_dir():
            raise SystemExit(f"dashapp: root folder {chosen!r} does not exist or is not a folder")
        return path
    from ..demo import ensure_demo_workspace

    return ensure_demo_workspace()


def _session_doc() -> Any:
    """The Bokeh document of the current server session, or None (a notebook, a script)."""
    doc = pn.state.curdoc
    return doc if doc is not None and doc.session_context is not None else None


class _Banner:
    """A message box whose text belongs to one thing and goes when that thing ends.

    :meth:`say` replaces what the box said; ``fade`` (seconds) hides a transient confirmation
    ("Snapshot saved") after a while, unless something newer was said meanwhile. Each saying
    gets a number (:attr:`said`): whoever said it can take it back with :meth:`clear` (``said``
    given) without hiding what someone else said since.
    """

    def __init__(self, css_class: str) -> None:
        self.alert = TextAlert(
            "",
            alert_type="info",
            visible=False,
            sizing_mode="stretch_width",
            css_classes=[css_class],
        )
        self.said = 0

    def say(self, text: str, kind: str, details: Sequence[str] = (), fade: float = 0.0) -> int:
        """Show ``text`` (and ``details`` as a list) as ``kind`` (info, success, warning,
        danger); returns the saying's number."""
        body = as_markdown(text)
        if details:
            body += "\n\n" + "\n".join(f"- {as_markdown(d)}" for d in details)
        self.said += 1
        self.alert.param.update(object=body, alert_type=kind, visible=True)
        doc = _session_doc()
        if fade and doc is not None:
            on_session(doc, partial(self.clear, self.said), fade)
        return self.said

    def clear(self, said: int | None = None) -> None:
        """Hide the box (only if it still shows saying ``said``, when given)."""
        if said is None or said == self.said:
            self.alert.visible = False


class _Page(pn.template.BootstrapTemplate):
    """The page template. Panel escapes the title in the browser tab's ``<title>`` but not in
    the page header it also writes it into; a title naming a file (a capsule's) is text."""

    def _update_vars(self, *args: Any) -> None:
        super()._update_vars(*args)
        self._render_variables["app_title"] = escape(self.title)
        self._render_variables["meta_name"] = escape(self.title)


class SlicerApp(pn.viewable.Viewer):
    """File browser + slicer sharing one :class:`SliceState`, with the view in the URL.

    Parameters
    ----------
    root
        Folder to browse.
    query
        Deep-link arguments (``pn.state.session_args`` in a server session).
    """

    slice_state = param.ClassSelector(class_=SliceState, doc="The view shown (and in the URL).")
    browser_state = param.ClassSelector(class_=BrowserState, doc="The folder and file browsed.")

    def __init__(
        self,
        root: str | os.PathLike[str],
        query: Mapping[str, Any] | None = None,
        record: Any = None,
        read_only: bool = False,
        **params: Any,
    ) -> None:
        root = str(root)
        query = dict(query or {})
        if self._is_demo(root) and "file" not in query:
            # The demo's first page shows data (the README's screenshot), not an empty plot.
            from ..demo import DEMO_VIEW

            query = {**DEMO_VIEW, **query}
        slice_state = SliceState(root=root)
        problems = apply_query(slice_state, query)
        browser_state = BrowserState(root=root)
        super().__init__(slice_state=slice_state, browser_state=browser_state, **params)
        if slice_state.file:
            folder_file = slice_state.file
            try:
                browser_state.open(folder_file)
            except DashappError as exc:  # the slicer shows the same problem in its alert
                browser_state.error = str(exc)
            except Exception as exc:  # last line: a link must not break the page (logged)
                browser_state.error = problem_text(exc, f"Opening {folder_file}")
        self.browser = FileBrowser(browser_state, on_pick=self.pick)
        self.slicer = Slicer(state=slice_state)
        self.convergence = ConvergencePlot(slice_state)
        self.slicer.add_panel(self.convergence)
        self._launch = pn.widgets.Button(
            label="Run a live SimPEG inversion",
            icon=PLAY,
            color="primary",
            sizing_mode="stretch_width",
            css_classes=["dashapp-run-inversion"],
            description="Start a 3-D gravity inversion (about a minute) writing each iteration "
            "to HDF5, and follow it here as it converges.",
        )
        self._launch.on_click(self._run_inversion)
        self._launch.visible = self._is_demo(root)
        # The run's status lives under its button, apart from the messages about the view.
        self._run = _Banner("dashapp-run-status")
        self._run_path: Path | None = None
        self._run_opened = False
        self._run_poll: Any = None
        self._banner = _Banner("dashapp-message")
        self._message = self._banner.alert
        self._empty = pn.pane.HTML(
            _EMPTY_HTML, sizing_mode="stretch_width", margin=(10, 10), css_classes=["dashapp-empty"]
        )
        self._view = pn.Column(self.slicer, sizing_mode="stretch_both")
        self._show_view()
        slice_state.param.watch(self._show_view, ["file", "dataset"])
        self._hint()
        if problems:  # each value of the link that was left out, and what is shown instead
            self._say("Parts of the link could not be used:", "warning", problems)
        if browser_state.error and not slice_state.error:
            self._say(browser_state.error, "danger")
        # the link follows the file, the dataset and every view setting (one list: VIEW_PARAMS)
        slice_state.param.watch(self._sync_url, ["file", "dataset", "info", *VIEW_PARAMS])
        browser_state.param.watch(self._browser_problem, ["error"])
        self._tabs: pn.Tabs | None = None
        self._setup_provenance(record, read_only)
        if _session_doc() is not None:
            pn.state.on_session_destroyed(lambda ctx: self.close())
            if slice_state.dataset:  # the address bar names what the link (or the demo) opened
                pn.state.onload(self._sync_url)  # (once the browser has sent its own address)
        if self._launch.visible:  # a page opened while the demo inversion runs: its status
            from ..demo.launcher import running_inversion

            running = running_inversion()
            if running is not None:
                self._follow_run(running, open_it=False)
        # (the process-wide services, warm-up included, are started by dashapp.app.services())

    # ------------------------------------------------------------------ provenance
    def _setup_provenance(self, record: Any, read_only: bool) -> None:
        """Record what happens in this session (files, views, cluster actions, computations)."""
        from ..provenance import ViewRecorder, open_record, record_server_start

        root = self.slice_state.root
        self.read_only = read_only
        # the served root's own timeline (unless $DASHAPP_WORKSPACE names one for all)
        self.record = record if record is not None else open_record(root=root)
        self._views = None if read_only else ViewRecorder(self.record, delay=2.0, root=root)
        self._snapshot = pn.widgets.Button(
            label="Snapshot of this view", icon=CAMERA, sizing_mode="stretch_width",
            css_classes=["dashapp-snapshot"],
            description="Save a PNG of the plot and its link to the timeline.",
        )  # fmt: skip
        self._snapshot.on_click(self.snapshot)
        self._snapshot.visible = not read_only
        self.slicer.add_panel(self._snapshot)
        if read_only:
            return
        _record_environment_once(self.record)
        # once per server start, not per page load (each reload added a "Session start")
        record_server_start(self.record, root)
        self.slice_state.param.watch(self._record_file, ["file"])
        if self.slice_state.file:
            self._record_file()

    def close(self) -> None:
        """The session ended: save the last view and let go of the process-wide watchers, or
        every page ever opened stays in the server's memory (~8 MB each, measured)."""
        self._stop_run_poll()
        self.browser.close()
        self.slicer.close()
        release_links(self.browser, self._launch, self._tabs)
        if self._views is not None:
            self._views.close()

    def _record_file(self, *events: Any) -> None:
        st = self.slice_state
        if not st.file:
            return
        try:
            # Off the event loop, and never for a pipe or device (hashing it would wait forever).
            path = bounded(resolve, st.root, st.file, key=os.path.join(st.root, st.file))
            key = os.path.join(st.root, st.file)
            bounded(check_regular_file, path, key=key)
            # each version of a file once per server and workspace: a page reload showing the
            # same unchanged file added an "Opened" line each time
            info = bounded(os.stat, path, key=key)
            version = (str(self.record.workspace), str(path), info.st_size, info.st_mtime_ns)
            if version in _FILES_RECORDED:
                return
            _FILES_RECORDED.add(version)
            self.record.file_opened(path, root=st.root)
        except DashappError:
            return  # the slicer's alert says why the file does not open
        except Exception as exc:  # last line: recording must never break the app (logged)
            log.warning("could not record the file %s: %s", st.file, exc, exc_info=True)

    def snapshot(self, event: Any = None) -> Any:
        """Add a PNG of the current view, with its link, to the timeline."""
        from .timeline import render_snapshot

        slicer, st = self.slicer, self.slice_state
        image = slicer.image
        if image is None or st.info is None:
            self._say("Nothing to snapshot yet: open a dataset first.", "warning")
            return None
        row, col = st.info.axes[int(st.display[0])], st.info.axes[int(st.display[1])]
        title = f"{st.file} : {st.dataset}  {st.position_label()}"
        png = render_snapshot(
            image,
            slicer._limits(),
            st.cmap,
            st.reverse,
            st.scale,
            title=title,
            xlabel=col.label,
            ylabel=row.label,
            clabel=st.info.title,
        )
        ev = self.record.snapshot(
            png, to_query(st), st.view(), title=f"Snapshot: {title}", root=st.root
        )
        self._say("Snapshot saved to the timeline.", "success", fade=self.CONFIRM_SECONDS)
        if getattr(self, "timeline", None) is not None:
            self.record.flush(5)
            self.timeline.refresh()
        return ev

    def restore(self, query: Mapping[str, Any]) -> None:
        """Show a view from the timeline (a deep link's query): what the link does not say
        goes back to its default (a link without ``cmap``: the default colour map)."""
        problems = apply_query(self.slice_state, query, reset=True)
        if self.slice_state.file:
            with contextlib.suppress(Exception):
                self.browser_state.open(self.slice_state.file)
        if problems:
            self._say("Parts of the view could not be restored:", "warning", problems)
        if self._tabs is not None:
            self._tabs.active = 0

    @staticmethod
    def _is_demo(root: str) -> bool:
        from ..demo import default_demo_dir

        return Path(root).resolve() == default_demo_dir().resolve()

    #: Seconds a confirmation ("Snapshot saved", "Inversion finished") stays on screen.
    CONFIRM_SECONDS = 6.0
    #: How often (ms) the page looks at the demo inversion's progress while it runs.
    RUN_POLL_MS = 500

    def _run_inversion(self, event: Any = None) -> None:
        """Start the demo inversion (a separate writer process) and follow its file."""
        from ..demo.launcher import start_inversion

        # Without waiting for the file: Python and SimPEG take seconds to start, and this
        # runs on the event loop that every page of the server shares.
        self._follow_run(start_inversion(self.slice_state.root, wait=False))

    def _follow_run(self, path: Path, open_it: bool = True) -> None:
        """Show the run writing ``path`` under its button until it ends; open its file in the
        slicer once its first iteration has landed (``open_it``)."""
        self._run_path, self._run_opened = Path(path), not open_it
        self._launch.disabled = True
        self._show_run()
        if self._run_poll is None and self._run_path is not None and _session_doc() is not None:
            self._run_poll = poll(self._show_run, self.RUN_POLL_MS)

    def _stop_run_poll(self) -> None:
        if self._run_poll is not None:
            self._run_poll.stop()
            self._run_poll = None

    def _show_run(self) -> None:
        """The run's status, from its progress: waiting for the first iteration (info, not an
        error: the file has no iteration yet because SimPEG is still setting up), running,
        then finished or failed when the writer process has exited."""
        from ..data import relative_to_root
        from ..demo.launcher import inversion_progress

        path = self._run_path
        if path is None:
            return
        try:
            progress = bounded(
                inversion_progress, path, key=path.with_suffix(".log"), what="reading its log"
            )
        except DashappError as exc:
            self._run.say(str(exc), "warning")
            return
        if progress is None:  # started by another server process: nothing to follow here
            self._stop_run_poll()
            self._run.clear()
            self._launch.disabled = False
            return
        rel = relative_to_root(self.slice_state.root, path)
        n = progress.iterations
        if n and not self._run_opened:
            self._run_opened = True
            with contextlib.suppress(DashappError):
                self.browser_state.open(rel)
            self._banner.clear()
            self.slice_state.param.update(file=rel, dataset="/model")
            self.slice_state.follow = True
        if progress.running:
            if not n:
                self._run.say(
                    f"Inversion started ({rel}): waiting for its first iteration. SimPEG sets "
                    "up the problem first (about 20 s); the view opens the file when the first "
                    "iteration lands.",
                    "info",
                )
            else:
                self._run.say(
                    # a count, not a position: the slider's iteration index is n - 1 (one
                    # numbering: positions are the slider's index everywhere)
                    f"Inversion running: {n} iteration{'s' * (n != 1)} written to {rel} "
                    f"(the latest is index {n - 1}). The view follows each iteration as it "
                    "lands (switch 'Follow latest' off to stay on one).",
                    "info",
                )
            return
        self._stop_run_poll()
        self._run_path = None
        self._launch.disabled = False
        if progress.problem:
            self._run.say(
                f"Inversion {progress.problem} (after {n} iteration{'s' * (n != 1)}; its log: "
                f"{rel.rsplit('.', 1)[0]}.log)",
                "danger",
            )
        else:
            self._run.say(
                f"Inversion finished: {n} iteration{'s' * (n != 1)} in {rel}.",
                "success",
                fade=self.CONFIRM_SECONDS,
            )

    def pick(self, file: str, dataset: str) -> None:
        """Show ``dataset`` of ``file`` (called by the browser)."""
        self._banner.clear()
        self.slice_state.param.update(file=file, dataset=dataset)
        self._hint()

    def _hint(self) -> None:
        st = self.slice_state
        if st.file and not st.dataset and not self.browser_state.error:
            self._say(
                f"{st.file} has no numeric dataset of 2 or more dimensions to show as an "
                "image. Its structure and attributes are listed on the left.",
                "info",
            )

    def _show_view(self, *events: Any) -> None:
        """The slicer while a dataset is open; before, a page that says what to do (its
        buttons did nothing, and its plot was an empty 0..1 square)."""
        st = self.slice_state
        self._view.visible = bool(st.dataset)
        self._empty.visible = not st.file

    def _say(self, text: str, kind: str, details: Sequence[str] = (), fade: float = 0.0) -> int:
        """Show ``text`` (and ``details`` as a list) in the message box above the slicer;
        ``fade``: hide it after that many seconds (a confirmation)."""
        return self._banner.say(text, kind, details, fade)

    def _browser_problem(self, event: param.parameterized.Event) -> None:
        if event.new:
            self._say(event.new, "danger")
        else:
            self._banner.clear()

    #: Seconds the address bar waits for the view to rest: a drag sends the browser image
    #: frames, not a location change (and its echo back) per step; the address is written
    #: once the view has not changed for this long.
    URL_DELAY = 0.25
    _url_pending = False
    _url_due = 0.0

    def _sync_url(self, *events: param.parameterized.Event) -> None:
        loc = pn.state.location
        if loc is None:
            if self._views is not None and self.slice_state.dataset:
                self._views.update(
                    to_query(self.slice_state), self.slice_state.view(), file=self.slice_state.file
                )
            return
        query = to_query(self.slice_state)
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None and self.URL_DELAY:
            self._url_due = time.monotonic() + self.URL_DELAY
            if not self._url_pending:
                rested = partial(self._url_rested, loc, doc)
                self._url_pending = on_session(doc, rested, self.URL_DELAY)
        else:
            self._write_url(loc)
        if self._views is not None and query.get("dataset"):
            self._views.update(query, self.slice_state.view(), file=self.slice_state.file)

    def _url_rested(self, loc: Any, doc: Any) -> None:
        wait = self._url_due - time.monotonic()
        if wait > 0.005:  # changed again meanwhile: wait for the rest of the pause
            self._url_pending = on_session(doc, partial(self._url_rested, loc, doc), wait)
            return
        self._write_url(loc)

    def _write_url(self, loc: Any) -> None:
        """Put the current view in the address bar (the link that reopens it)."""
        self._url_pending = False
        query = to_query(self.slice_state)
        search = "?" + urlencode(query, safe="/,") if query else ""
        if loc.search != search:
            loc.search = search

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self._message, self._empty, self._view, sizing_mode="stretch_both")

    def cluster_tab(self) -> pn.viewable.Viewable:
        """The Dask cluster pane and the inversion sweep that runs on it."""
        from .cluster import ClusterPane, SweepPane

        self.cluster = ClusterPane(record=None if self.read_only else self.record)
        self.sweep = SweepPane(
            root=self.slice_state.root,
            on_output=self._follow_sweep,
            record=None if self.read_only else self.record,
        )
        return pn.Column(self.cluster, pn.layout.Divider(), self.sweep, sizing_mode="stretch_width")

    def _follow_sweep(self, rel: str) -> None:
        """Show a sweep's stitched model in the slicer, following it as it fills in; the
        message says so while the sweep runs and ends with it."""
        self.browser_state.open(rel)
        self.slice_state.param.update(file=rel, dataset="/model")
        self.slice_state.param.update(follow=True)
        # The Dask tab stays shown: its progress bar is what the person is watching.
        said = self._say(f"Sweep running: {rel} fills in station by station.", "info")
        run, doc = getattr(getattr(self, "sweep", None), "run", None), _session_doc()
        if run is None or "status" not in run.param:
            return

        def ended() -> None:
            if self._banner.said != said:  # something else was said since: leave it
                return
            status, message = run.status, getattr(run, "message", "")
            kind = "success" if status == "finished" else "warning"
            self._say(f"Sweep {status}: {message or rel}", kind, fade=self.CONFIRM_SECONDS)

        once = threading.Lock()

        def over() -> None:
            if not once.acquire(blocking=False):  # (the thread and this check can both see it)
                return
            run.param.unwatch(watcher)
            if doc is not None:  # (the sweep reports from its own thread)
                on_session(doc, ended)
            else:
                ended()

        watcher = run.param.watch(lambda e: e.new != "running" and over(), "status")
        if run.status != "running":  # it ended before the watcher was set
            over()

    def _toolbar(self) -> pn.viewable.Viewable:
        """Above the slicer: fold the controls away, and copy the link of the view."""
        # (the file browser folds with the template's button at the top left)
        self._controls_shown = pn.widgets.Toggle(
            name="Hide controls", value=True, width=130, css_classes=["dashapp-controls-toggle"]
        )
        self._controls_shown.param.watch(self._show_controls, "value")
        self._copy = pn.widgets.Button(
            name="Copy link", width=110, css_classes=["dashapp-copy-link"],
            description="Copy a link that opens this view (file, dataset, slice, colours): "
            "in another tab, for a colleague, or outside JupyterLab.",
        )  # fmt: skip
        self._link = pn.widgets.TextInput(
            value="", visible=False, sizing_mode="stretch_width", css_classes=["dashapp-link"]
        )
        self._link_note = pn.pane.HTML(
            "", visible=False, margin=(12, 5, 0, 5), css_classes=["dashapp-link-note"]
        )
        link = {"box": self._link, "note": self._link_note}
        self._copy.js_on_click(args=link, code=_COPY_LINK_JS)
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            from bokeh.models import CustomJS

            fold = "true" if self.slice_state.file else "false"
            code = f"const FOLD_FILES = {fold};\n" + _NARROW_JS
            doc.js_on_event("document_ready", CustomJS(code=code))
        return pn.Row(
            self._controls_shown,
            self._copy,
            self._link_note,
            self._link,
            sizing_mode="stretch_width",
            margin=0,
            css_classes=["dashapp-toolbar"],
        )

    def _show_controls(self, event: param.parameterized.Event) -> None:
        self._controls_shown.name = "Hide controls" if event.new else "Show controls"
        for controls in self.slicer.__panel__().select(
            lambda obj: "dashapp-controls" in (getattr(obj, "css_classes", None) or [])
        ):
            controls.visible = bool(event.new)

    def template(self, title: str = "dashapp · HDF5 slicer") -> pn.template.BaseTemplate:
        """The app in a page template: browser in the sidebar, slicer in the main area."""
        pn.extension("tabulator", raw_css=[_CSS])
        from .timeline import TimelinePane

        self.timeline = TimelinePane(
            self.record,
            on_restore=self.restore,
            read_only=self.read_only,
            root=None if self.read_only else self.slice_state.root,
        )
        # The tabs share one box, as tall as the tallest tab's content: the cluster form and
        # a long timeline scroll inside their tab instead of stretching the slice plot (the
        # plot was once 5,600 px tall behind a long timeline). Dynamic: a hidden tab's models
        # join the page when it is opened. Bokeh's serializer indexes every model of the page
        # for each message it sends, so the cluster pane and the timeline behind their tabs
        # cost every slider step (666 models with them; nine dragging sessions got ~17 % more
        # pictures per second without them, docs/performance.md).
        self._tabs = pn.Tabs(
            ("Slicer", pn.Column(self._toolbar(), self.__panel__(), sizing_mode="stretch_both")),
            ("Dask cluster", _scrolling(self.cluster_tab())),
            ("Timeline", _scrolling(self.timeline)),
            dynamic=True,
            sizing_mode="stretch_both",
        )
        # The timeline redraws only while its tab is shown (it catches up when opened).
        self.timeline.show(self._tabs.active == 2)
        self._tabs.param.watch(lambda e: self.timeline.show(e.new == 2), "active")
        # No header busy indicator: Panel keeps every session's indicator in one process-wide
        # list and flips all of them on any session's callback, so with ten users each key
        # press re-rendered ten pages twice (and the idle sessions' periodic refreshes kept
        # every page busy). Slow work here runs in threads with its own status and progress.
        tmpl = _Page(
            busy_indicator=None,
            title=title,
            sidebar=[self._launch, self._run.alert, self.browser],
            main=[self._tabs],
            sidebar_width=380,
            header_background="#1f5d8c",
        )
        return tmpl
