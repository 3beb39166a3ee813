"""Every file of the real-file corpus opens without a crash.

Each numeric dataset of 2 or more dimensions shows a slice; every other dataset, and every file
that is not HDF5 (HDF4, empty placeholders), gives a clear message.
"""

from __future__ import annotations

import pytest

from dashapp.data import (
    DashappError,
    NotHDF5,
    SliceRequest,
    Unsupported,
    check_viewable,
    default_axis,
    default_display_dims,
    describe,
    read_slice,
    read_tree,
)
from dashapp.data.paths import HDF5_EXTENSIONS, list_folder

from ..conftest import _find_corpus

CORPUS = _find_corpus()
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() in HDF5_EXTENSIONS)


def test_the_corpus_is_there():
    assert len(FILES) >= 50


def test_every_corpus_folder_lists(corpus):
    for folder in [p for p in corpus.rglob("*") if p.is_dir()]:
        rel = folder.relative_to(corpus).as_posix()
        listed = {e.name for e in list_folder(corpus, rel)}
        expected = {
            p.name for p in folder.iterdir() if p.is_dir() or p.suffix.lower() in HDF5_EXTENSIONS
        }
        assert expected <= listed, rel


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(CORPUS).as_posix() for p in FILES])
def test_corpus_file(path):
    try:
        tree = read_tree(path, root=CORPUS)
    except NotHDF5 as exc:
        message = str(exc)
        assert path.name in message
        assert any(w in message for w in ("HDF4", "empty", "not an HDF5", "truncated"))
        return
    shown = refused = 0
    for node in tree.walk():
        if node.kind != "dataset":
            continue
        try:
            info = describe(path, node.path, root=CORPUS)
            check_viewable(info)
        except Unsupported as exc:
            assert not node.viewable
            assert node.path in str(exc)
            refused += 1
            continue
        except DashappError as exc:  # broken links inside real files: a message, not a crash
            assert str(exc)
            refused += 1
            continue
        assert node.viewable
        axis = default_axis(info.ndim)
        display = default_display_dims(info.ndim, axis)
        indices = [0] * info.ndim
        indices[axis] = info.shape[axis] // 2 if info.ndim > 2 else 0
        image = read_slice(info, SliceRequest(node.path, display, tuple(indices)), root=CORPUS)
        assert image.values.ndim == 2
        assert image.values.size > 0
        shown += 1
    assert shown + refused > 0
