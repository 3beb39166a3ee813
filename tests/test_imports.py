"""The data and state layers stay UI-free (panel's own tests/test_imports.py does the same)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["dashapp", "dashapp.data", "dashapp.state", "dashapp.demo"])
def test_layer_imports_no_ui_library(module):
    code = (
        f"import sys, {module}\n"
        "ui = sorted(m for m in ('panel', 'bokeh', 'holoviews') if m in sys.modules)\n"
        "print(','.join(ui))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()}"
