"""Colour maps by name: colorcet's perceptually uniform maps and matplotlib's viridis family,
the colour that marks missing values (NaN) beside each, and the two colours of true/false data."""

from __future__ import annotations

from functools import cache

__all__ = ["NAN_CANDIDATES", "bool_colours", "nan_colour", "palette"]

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


#: Colours NaN may be drawn in, in order of preference: mid grey (the usual "no data" colour),
#: else magenta or green where the colour map itself comes near grey (``gray``, ``cividis``).
NAN_CANDIDATES = ("#808080", "#ff00ff", "#00c000")
#: How far (in RGB, 0-441) the NaN colour stays from every colour of the map.
NAN_DISTANCE = 64


def _rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


@cache
def nan_colour(name: str) -> str:
    """The colour NaN cells are drawn in with the colour map ``name``: one that is not in the
    map (so a missing value never looks like a value) nor the plot's near-white background."""
    colours = [_rgb(c) for c in palette(name)]

    def distance(candidate: str) -> float:
        r, g, b = _rgb(candidate)
        return min(((r - c[0]) ** 2 + (g - c[1]) ** 2 + (b - c[2]) ** 2) ** 0.5 for c in colours)

    for candidate in NAN_CANDIDATES:
        if distance(candidate) >= NAN_DISTANCE:
            return candidate
    return max(NAN_CANDIDATES, key=distance)


def bool_colours(name: str, reverse: bool = False) -> tuple[str, str]:
    """The colours of ``False`` and ``True`` under the colour map ``name``: two well-apart
    colours of the map (a fifth of the way in from each end, so neither is the background's
    white or black)."""
    colours = palette(name, reverse)
    return colours[51], colours[204]
