"""Where the slicer is served: one route, ``/slicer``, whichever way it is served.

``panel serve apps/slicer.py``, ``dashapp serve``, ``dashapp capsule open --serve`` and the
JupyterLab tile all serve the slicer script at ``<prefix>/slicer`` (a Panel script's route is
its file's name: :data:`SLICER_SCRIPT` is ``dashapp/slicer.py``, like ``apps/slicer.py``), so a
link copied from one opens the same view in the others.

Links written before the route was unified (``dashapp serve`` and the tile served
``/slicer_app``) still work: this module is also a ``panel serve --plugins`` module whose
:data:`ROUTES` redirect ``<prefix>/slicer_app?query`` to ``<prefix>/slicer?query`` (Bokeh
prefixes plugin routes with ``--prefix``, so the redirect works behind the Jupyter proxy too).

It imports only tornado: :mod:`dashapp.cli` and :mod:`dashapp.jupyter` use it without the UI.
"""

from __future__ import annotations

from pathlib import Path

from tornado.web import RequestHandler

__all__ = ["OLD_ROUTE", "PLUGIN", "ROUTE", "ROUTES", "SLICER_SCRIPT", "OldSlicerLink"]

#: The slicer script inside the installed package (what ``dashapp serve`` and the JupyterLab
#: launcher tile hand to ``panel serve``; the repository's ``apps/slicer.py`` is the same).
SLICER_SCRIPT = Path(__file__).with_name("slicer.py")
#: The slicer's route (without the prefix), the same for every way of serving it.
ROUTE = SLICER_SCRIPT.stem
#: The route ``dashapp serve`` and the tile used before (redirected to :data:`ROUTE`).
OLD_ROUTE = "slicer_app"
#: What ``panel serve --plugins`` takes to add :data:`ROUTES`.
PLUGIN = __name__


class OldSlicerLink(RequestHandler):
    """Redirect ``<prefix>/slicer_app[/]?query`` to ``<prefix>/slicer?query`` (the same view)."""

    def get(self) -> None:
        path = self.request.path.rstrip("/")
        target = path[: -len(OLD_ROUTE)] + ROUTE
        query = self.request.query
        self.redirect(target + (f"?{query}" if query else ""), permanent=False)

    head = get


#: Tornado routes ``panel serve --plugins dashapp.routes`` adds to the server.
ROUTES = [(rf"/{OLD_ROUTE}/?", OldSlicerLink)]
