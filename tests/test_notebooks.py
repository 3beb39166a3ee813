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
    for host in CDN_HOSTS:
        assert host not in blob, f"{path.name} output loads from {host}"
    html = " ".join(o["data"].get("text/html", "") for o in outputs if "data" in o)
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']https?://", html)
    assert "BokehJS" in blob or "Bokeh" in blob  # the JS itself is inline
