"""The example notebooks run, display the slicer, and reference no CDN (offline compute nodes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbclient
import nbformat
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "examples"
NOTEBOOKS = sorted(DOCS.glob("*.ipynb"))
CDN_HOSTS = ("cdn.bokeh.org", "cdn.holoviz.org", "unpkg.com", "cdnjs.cloudflare.com", "esm.sh")
PANEL_MIME = "application/vnd.holoviews_exec.v0+json"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_offline(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    views = [o for o in outputs if PANEL_MIME in o.get("data", {})]
    assert len(views) >= 2  # the slicers were displayed as live Panel views
    blob = json.dumps([o for o in outputs])
    # (not `assert host not in blob`: pytest would diff the multi-megabyte blob for minutes)
    hits = [blob[max(0, i - 120) : i + 80] for host in CDN_HOSTS if (i := blob.find(host)) >= 0]
    assert not hits, f"{path.name} output loads from a CDN: {hits}"
    html = " ".join(o["data"].get("text/html", "") for o in outputs if "data" in o)
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']https?://", html)
    assert "BokehJS" in blob or "Bokeh" in blob  # the JS itself is inline


def test_cluster_pane_displays_in_a_notebook(tmp_path):
    """The cluster pane's tables (Tabulator) get their JS when the pane is shown in a cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from dashapp.views.cluster import ClusterPane\n"
            "from dashapp.cluster import ClusterManager\n"
            "pane = ClusterPane(manager=ClusterManager())\n"
            "pane"
        ),
        nbformat.v4.new_code_cell("print(type(pane.form).__name__, pane.form.kind)"),
    ]
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(PANEL_MIME in o.get("data", {}) for o in outputs)  # displayed as a live view
    blob = json.dumps(outputs)
    assert "tabulator-tables" in blob  # the Tabulator library itself came with the pane
    warnings = [o.text for o in outputs if o.output_type == "stream" and "pn.extension" in o.text]
    assert not warnings  # Panel did not complain about a missing extension
    assert "ClusterForm local" in blob
