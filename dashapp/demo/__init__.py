"""Demo data for dashapp: a synthetic subsurface model written on first start, and a real
SimPEG inversion that writes its iterations as it runs (:mod:`dashapp.demo.inversion`)."""

from __future__ import annotations

from .workspace import DEMO_VIEW, default_demo_dir, ensure_demo_workspace, write_model, write_survey

__all__ = ["DEMO_VIEW", "default_demo_dir", "ensure_demo_workspace", "write_model", "write_survey"]
