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

from ..data import DashappError, resolve, warm_up
from ..data.fsguard import bounded
from ..data.paths import check_regular_file
from ..state import BrowserState, SliceState, apply_query, to_query
from .browser import FileBrowser
from .series import ConvergencePlot
from .session import on_session, release_links
from .slicer import Slicer
from .text import TextAlert, as_markdown, escape

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

_warmed = threading.Event()


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


def _warm_up_once() -> None:
    """Once per process, in the background: remove what crashed overview builds left in the
    cache, and compile datashader's kernels so the first zoom is not slow."""
    if _warmed.is_set():
        return
    _warmed.set()
    from ..data import PYRAMIDS

    PYRAMIDS.client_provider = _cluster_client

    def start_up() -> None:
        try:
            PYRAMIDS.clean()  # (off the event loop: the cache may sit on a slow filesystem)
        except OSError as exc:  # an unwritable cache: the builds will say so
            log.warning("could not clean the overview cache: %s", exc)
        warm_up()

    threading.Thread(target=start_up, name="dashapp-warm-up", daemon=True).start()


_ENV_RECORDED: set[str] = set()
_FILES_RECORDED: set[tuple[str, str, int, int]] = set()


def _record_environment_once(record: Any) -> None:
    """The software environment, once per workspace and server process (in the background)."""
    key = str(record.workspace)
    if key in _ENV_RECORDED:
        return
    _ENV_RECORDED.add(key)
    threading.Thread(target=record.environment, name="dashapp-environment", daemon=True).start()


def _cluster_client() -> Any:
    """The Dask pane's cluster client when a cluster runs (pyramids are built there)."""
    from ..cluster import MANAGER

    if MANAGER.info().get("status") != "running":
        return None
    return MANAGER.client


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder to show: ``root``, else ``$DASHAPP_ROOT``, else the demo workspace."""
    chosen = root or os.environ.get("DASHAPP_ROOT")
    if chosen:
        path = Path(chosen).expanduser().resolve()
        if not path.is_dir():
            raise SystemExit(f"dashapp: root folder {chosen!r} does not exist or is not a folder")
        return path
    from ..demo import ensure_demo_workspace

    return ensure_demo_workspace()


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
        slice_state = SliceState(root=root)
        problems = apply_query(slice_state, query or {})
        browser_state = BrowserState(root=root)
        super().__init__(slice_state=slice_state, browser_state=browser_state, **params)
        if slice_state.file:
            folder_file = slice_state.file
            try:
                browser_state.open(folder_file)
            except Exception as exc:  # the slicer shows the same problem in its alert
                browser_state.error = str(exc)
        self.browser = FileBrowser(browser_state, on_pick=self.pick)
        self.slicer = Slicer(state=slice_state)
        self.convergence = ConvergencePlot(slice_state)
        self.slicer.add_panel(self.convergence)
        self._launch = pn.widgets.Button(
            label="▶ Run a live SimPEG inversion",
            color="primary",
            sizing_mode="stretch_width",
            css_classes=["dashapp-run-inversion"],
            description="Start a 3-D gravity inversion (about a minute) writing each iteration "
            "to HDF5, and follow it here as it converges.",
        )
        self._launch.on_click(self._run_inversion)
        self._launch.visible = self._is_demo(root)
        self._message = TextAlert(
            "",
            alert_type="info",
            visible=False,
            sizing_mode="stretch_width",
            css_classes=["dashapp-message"],
        )
        self._hint()
        if problems:  # each value of the link that was left out, and what is shown instead
            self._say("Parts of the link could not be used:", "warning", problems)
        if browser_state.error and not slice_state.error:
            self._say(browser_state.error, "danger")
        slice_state.param.watch(
            self._sync_url,
            [
                "file",
                "dataset",
                "info",
                "axis",
                "index",
                "display",
                "indices",
                "cmap",
                "reverse",
                "clim",
                "vmin",
                "vmax",
                "scale",
                "agg",
                "part",
                "x_range",
                "y_range",
                "follow",
            ],
        )
        browser_state.param.watch(self._browser_problem, ["error"])
        self._tabs: pn.Tabs | None = None
        self._setup_provenance(record, read_only)
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda ctx: self.close())
        _warm_up_once()

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
            label="📷 Snapshot of this view", sizing_mode="stretch_width",
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
        except Exception as exc:  # recording must never break the app
            log.warning("could not record the file %s: %s", st.file, exc)

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
        self._say("Snapshot saved to the timeline.", "success")
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

    def _run_inversion(self, event: Any = None) -> None:
        """Start the demo inversion (a separate writer process) and follow its file."""
        from ..data import relative_to_root
        from ..demo.launcher import start_inversion

        self._launch.loading = True
        try:
            path = start_inversion(self.slice_state.root)
        finally:
            self._launch.loading = False
        rel = relative_to_root(self.slice_state.root, path)
        self.browser_state.open(rel)
        self.slice_state.param.update(file=rel, dataset="/model")
        self.slice_state.follow = True
        self._say(
            f"Inversion running: {rel}. The view follows each iteration as it lands "
            "(switch 'Follow latest' off to stay on one).",
            "success",
        )

    def pick(self, file: str, dataset: str) -> None:
        """Show ``dataset`` of ``file`` (called by the browser)."""
        self._message.visible = False
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
        elif not st.file:
            self._say("Pick an HDF5 file on the left; then a dataset in its tree.", "info")

    def _say(self, text: str, kind: str, details: Sequence[str] = ()) -> None:
        """Show ``text`` (and ``details`` as a list) in the message box above the slicer."""
        body = as_markdown(text)
        if details:
            body += "\n\n" + "\n".join(f"- {as_markdown(d)}" for d in details)
        self._message.param.update(object=body, alert_type=kind, visible=True)

    def _browser_problem(self, event: param.parameterized.Event) -> None:
        if event.new:
            self._say(event.new, "danger")
        else:
            self._message.visible = False

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
        return pn.Column(self._message, self.slicer, sizing_mode="stretch_both")

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
        """Show a sweep's stitched model in the slicer, following it as it fills in."""
        self.browser_state.open(rel)
        self.slice_state.param.update(file=rel, dataset="/model")
        self.slice_state.param.update(follow=True)
        if self._tabs is not None:
            self._tabs.active = 0
        self._say(f"Sweep running: {rel} fills in station by station.", "success")

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
            sidebar=[self._launch, self.browser],
            main=[self._tabs],
            sidebar_width=380,
            header_background="#1f5d8c",
        )
        return tmpl
