"""A file whose every string is hostile: HTML, script, Markdown links and template fields.

Used by the view tests (the Bokeh models and panes hold the text escaped, or in sinks that show
text) and the browser test (Chromium runs no script and no element is injected).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

#: Counts in ``window.__xss`` when a browser runs it.
SCRIPT = "window.__xss=(window.__xss||0)+1"
#: HTML that runs :data:`SCRIPT` and injects an element with id ``injected`` if taken as HTML.
#: No ``/``: it must fit in HDF5 names and file names.
TAG = f'<img src=x onerror="{SCRIPT}"><b id=injected>'
#: Markdown that would make a script link, a picture from elsewhere, and TeX.
MARKDOWN = f"[click](javascript:{SCRIPT}) ![](x) $$x$$"
#: Bokeh tooltip template fields and a math delimiter.
TEMPLATE = "@image $x $$y"


def hostile(where: str) -> str:
    """A payload naming where it sits (so a test can find that text on the page)."""
    return f"{TAG}{where} {MARKDOWN} {TEMPLATE}"


#: Attribute values may hold what names cannot: closing tags and script elements.
ATTR = hostile("attr") + f'</b><script>{SCRIPT}</script><svg onload="{SCRIPT}"></svg>'

#: The file's name (a payload too).
FILE_NAME = f"{TAG}file.h5"
#: A folder with a payload name (listed in the browser).
FOLDER_NAME = f"{TAG}folder"
#: Names inside the file.
ENTRY = hostile("entry")
DATA = hostile("nxdata")
SIGNAL = hostile("signal")
SCALED = hostile("scaled")
TEXT = hostile("text")
COMPOUND = hostile("compound")


def write_hostile(root: Path) -> Path:
    """``root/FOLDER_NAME/`` and ``root/FILE_NAME``: names, attributes, units, ``long_name``,
    NeXus ``title``/``signal``/``axes``/``interpretation`` and a text dataset all carry HTML.

    ``/SCALED`` is a 4-D dataset with dimension scales whose ``long_name`` and ``units`` are
    hostile (the slider labels); ``/ENTRY/DATA/SIGNAL`` a 3-D NeXus signal whose axes are
    hostile datasets; ``/TEXT`` a string dataset whose value is hostile. Returns the file.
    """
    (root / FOLDER_NAME).mkdir(exist_ok=True)
    path = root / FILE_NAME
    shape = (3, 4, 12, 16)
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f.attrs["title"] = ATTR
        f.attrs[hostile("key")] = ATTR
        f.attrs["default"] = ENTRY
        ds = f.create_dataset(SCALED, data=rng.random(shape).astype("f4"))
        ds.attrs["units"] = hostile("units")
        ds.attrs["long_name"] = hostile("long_name")
        ds.attrs[hostile("dskey")] = ATTR
        for dim, size in enumerate(shape):
            name = hostile(f"scale{dim}")
            scale = f.create_dataset(name, data=np.arange(size) * 2.0 + 1.0)
            scale.attrs["long_name"] = hostile(f"long_name{dim}")
            scale.attrs["units"] = hostile(f"unit{dim}")
            scale.make_scale()
            ds.dims[dim].attach_scale(scale)
        entry = f.create_group(ENTRY)
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["title"] = ATTR
        entry.attrs["default"] = DATA
        data = entry.create_group(DATA)
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = SIGNAL
        axes = [hostile(f"nxaxis{d}") for d in range(3)]
        data.attrs["axes"] = np.array(axes, dtype=h5py.string_dtype())
        signal = data.create_dataset(SIGNAL, data=rng.random((5, 6, 7)).astype("f4"))
        signal.attrs["interpretation"] = ATTR
        signal.attrs["units"] = hostile("nxunits")
        for d, (name, size) in enumerate(zip(axes, (5, 6, 7), strict=True)):
            axis = data.create_dataset(name, data=np.linspace(0, 1, size))
            axis.attrs["units"] = hostile(f"nxunit{d}")
            data.attrs[f"{name}_indices"] = d
        f.create_dataset(TEXT, data=ATTR, dtype=h5py.string_dtype())
        fields = np.dtype([(hostile("field"), "f4"), ("b", "i4")])  # names in the dtype label
        f.create_dataset(COMPOUND, data=np.zeros(3, dtype=fields))
        f[hostile("soft")] = h5py.SoftLink("/" + hostile("nowhere"))
    return path
