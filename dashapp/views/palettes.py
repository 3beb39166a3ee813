"""Colour maps by name: colorcet's perceptually uniform maps and matplotlib's viridis family."""

from __future__ import annotations

from functools import cache

__all__ = ["palette"]

_BOKEH = {
    "viridis": "Viridis256",
    "cividis": "Cividis256",
    "inferno": "Inferno256",
    "magma": "Magma256",
    "plasma": "Plasma256",
}


@cache
def palette(name: str, reverse: bool = False) -> tuple[str, ...]:
    """256 hex colours of the colour map ``name`` (see :data:`dashapp.state.CMAPS`)."""
    if name in _BOKEH:
        import bokeh.palettes

        colours = list(getattr(bokeh.palettes, _BOKEH[name]))
    else:
        import colorcet

        colours = list(colorcet.palette[name])
    if len(colours) != 256:  # a few colorcet maps are longer; resample to 256 entries
        step = (len(colours) - 1) / 255
        colours = [colours[round(i * step)] for i in range(256)]
    return tuple(reversed(colours)) if reverse else tuple(colours)
