"""Datasets that come as a numbered series: ``/iter_0007/model``, ``/run3/frame_012``.

Simulation codes that cannot append to one dataset write each step as a new object. To follow
such a run, the viewer needs the series a dataset belongs to and its newest member.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

import h5py

from .errors import DashappError
from .files import h5_errors, open_file
from .resolve import resolve_object

__all__ = ["SeriesMember", "series_members"]

_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


@dataclass(frozen=True)
class SeriesMember:
    """One member of a series: its number and the path of the dataset in it."""

    number: int
    path: str
    label: str


def _exists(f: h5py.File, path: str, root: str | os.PathLike[str] | None) -> bool:
    try:
        # hop by hop (resolve.py): a member reached through a link out of the root is not one
        with contextlib.ExitStack() as stack:
            return isinstance(resolve_object(f, path, root, stack, check_data=False), h5py.Dataset)
    except Exception:  # a broken member: not part of the series
        return False


def series_members(
    file: str | os.PathLike[str], dataset: str, root: str | os.PathLike[str] | None = None
) -> list[SeriesMember]:
    """Members of the numbered series ``dataset`` belongs to, oldest first ([] if none).

    The last numbered component of the path decides: for ``/iter_0007/model`` the series is
    every ``/iter_NNNN/model`` that exists; for ``/frames/frame_012`` every ``frame_NNN``.
    Members reached through links leading out of ``root`` are left out.
    """
    parts = [p for p in dataset.split("/") if p]
    with open_file(file) as f, h5_errors(file, dataset):
        for i in range(len(parts) - 1, -1, -1):
            m = _NUMBERED.match(parts[i])
            if not m:
                continue
            parent = "/" + "/".join(parts[:i])
            rest = parts[i + 1 :]
            try:
                group = resolve_object(f, parent, root, None, check_data=False)
            except DashappError:  # missing, outside the root, or through another file
                return []
            if not isinstance(group, h5py.Group):
                return []
            members = []
            for name in group:
                mm = _NUMBERED.match(name)
                if not mm or mm.group(1) != m.group(1) or mm.group(3) != m.group(3):
                    continue
                path = "/" + "/".join([*parts[:i], name, *rest])
                if _exists(f, path, root):
                    members.append(SeriesMember(int(mm.group(2)), path, name))
            return sorted(members, key=lambda s: s.number)
    return []
