"""The slice feed: the pictures of a :class:`~dashapp.state.SliceState`, read and kept current.

A :class:`SliceFeed` owns the policies a slice view used to run by hand, and publishes their
results as params a view draws (or a test asserts on):

- **latest-wins reads**: every change of the view asks for a read; at most one runs at a time
  and only the newest waiting request is kept (:class:`~dashapp.state.latest.LatestOnly`), so a
  fast drag never builds a queue; a result older than one already shown is dropped.
- **following a live file**: the file is watched (``data.watch.WATCHES``); a change reloads the
  dataset's metadata (:meth:`SliceState.reload`); a file that does not read (being written, cut
  short, deleted) keeps the last good picture and is tried again after 0.5 s, 1 s, 2 s, ...
  up to 10 s.
- **overview levels**: a large dataset's pyramid build is started and its progress polled.
- **colour limits**: resolved from the picture's statistics, the dataset's (estimated) range,
  kept per slice while zoomed (robust limits do not move on zoom), or the user's own.
- **status**: the line under the plot, in words.

Where results land is injected: ``schedule(fn, delay)`` runs ``fn`` on the thread that owns
the document (a Bokeh session's ``add_next_tick_callback``, a notebook kernel's loop), and
``threaded`` says whether reads run in worker threads. Without a ``schedule`` everything runs
at once in the caller's thread (scripts, tests). Nothing here imports a UI library.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any

import param

from ..data import (
    PYRAMIDS,
    DashappError,
    SliceImage,
    SliceRequest,
    SliceStats,
    ValueRange,
    estimate_range,
    read_slice,
    reading_for,
    release_reads,
)
from ..data.fsguard import bounded
from ..data.reader import wait_for_warm_up
from .latest import EXECUTOR, LatestOnly
from .slice import SliceState, resolve_limits, suggest_scale

__all__ = ["BUILD_STATES", "FRAME_PARAMS", "Schedule", "SliceFeed"]

log = logging.getLogger(__name__)

#: ``schedule(fn, delay)``: run ``fn()`` on the document's thread, after ``delay`` seconds.
Schedule = Callable[[Callable[[], Any], float], Any]
#: State parameters whose change needs a new read.
FRAME_PARAMS = ("info", "axis", "index", "display", "indices", "agg", "part", "x_range", "y_range")
#: State parameters whose change moves the colour limits.
LIMIT_PARAMS = ("clim", "scale", "vmin", "vmax")
#: What an overview-level (pyramid) build can be doing ("" when the dataset needs none).
BUILD_STATES = ("", "queued", "building", "ready", "failed", "declined")
#: Back-off of a live file that does not read: first and longest wait, in seconds.
RETRY_FIRST, RETRY_MAX = 0.5, 10.0
#: Statistics of whole slices kept for colour limits while zoomed (one entry per slice seen).
SLICE_STATS_KEPT = 256


class SliceFeed(param.Parameterized):
    """Reads, live-file following, overview builds, colour limits and status of one view.

    Parameters
    ----------
    state
        The view to feed.
    schedule
        ``schedule(fn, delay)`` runs ``fn`` on the thread that owns the document; None runs
        everything at once (and retries and polls only when called, e.g. :meth:`poll_build`).
    threaded
        Read in worker threads (default: when there is a ``schedule``).
    prepare
        ``prepare(image, limits, scale)`` makes what the plot sends for a picture, run in the
        read's thread; its result is :attr:`prepared`.
    pixels
        ``pixels()`` gives how many screen pixels (height, width) the visible plane covers.
    executor
        Where read jobs run (the process-wide read pool by default).
    """

    state = param.ClassSelector(class_=SliceState, doc="The view this feed reads for.")
    image = param.ClassSelector(
        class_=SliceImage, allow_None=True, doc="The picture to show (the last good one)."
    )
    limits = param.NumericTuple(
        default=(0.0, 1.0), length=2, doc="Colour limits (low, high) of the picture shown."
    )
    limits_note = param.String(
        default="", doc="Where the limits come from when not from the picture itself, in words."
    )
    status = param.String(
        default="", doc="What is shown, in words: position, cells read, time, colour limits."
    )
    error = param.String(
        default="", doc="Why the last read failed (the last good picture stays); empty if fine."
    )
    read_ms = param.Number(default=0.0, doc="How long the last read took, in milliseconds.")
    estimating = param.Boolean(
        default=False, doc="The dataset's value range is being estimated (global limits)."
    )
    watching = param.String(default="", doc="How the open file is watched, e.g. 'inotify'.")
    problem = param.String(
        default="", doc="Why the live file does not read now (tried again soon); empty if fine."
    )
    retry_in = param.Number(default=0.0, doc="Seconds until the live file is tried again.")
    build_state = param.Selector(
        default="", objects=list(BUILD_STATES), doc="What the overview-level build is doing."
    )
    build_progress = param.Number(
        default=0.0, bounds=(0, 1), doc="Fraction of the overview-level build done."
    )
    build_message = param.String(default="", doc="The overview-level build's state, in words.")

    def __init__(
        self,
        state: SliceState,
        *,
        schedule: Schedule | None = None,
        threaded: bool | None = None,
        prepare: Callable[[SliceImage, tuple[float, float], str], Any] | None = None,
        pixels: Callable[[], tuple[int, int]] | None = None,
        executor: Executor | None = None,
    ) -> None:
        super().__init__(state=state)
        self._schedule = schedule
        self._threaded = schedule is not None if threaded is None else threaded
        self._prepare = prepare
        self._pixels = pixels or (lambda: (600, 800))
        self.runner = LatestOnly(self._read_done, executor or EXECUTOR)
        #: What :attr:`prepare` made for :attr:`image`, and the plane it belongs to:
        #: (file, dataset, id(info), display).
        self.prepared: Any = None
        self.plane: tuple | None = None
        self.reads = object()  # whose reads these are, for the chunk cache (reading_for)
        self._shown = 0
        self._read_ms = 0.0
        self._zoomed = False
        self._slice_key: tuple = ()
        self._last_position: tuple[int, int] | None = None
        self._global: dict[tuple, tuple[Any, ValueRange]] = {}  # key: (info, range)
        self._slices: OrderedDict[tuple, SliceStats] = OrderedDict()
        self._watch_id: int | None = None
        self._retry_pending = False
        self._polling = False
        self._closed = False
        state.param.watch(self._on_dataset, ["info", "error"])  # (before the read of new info)
        state.param.watch(self._on_frame, list(FRAME_PARAMS))
        state.param.watch(self._on_limits, list(LIMIT_PARAMS))
        state.param.watch(self._on_file, ["root", "file"])
        self._on_file()
        self._on_dataset()
        self.refresh()

    # ------------------------------------------------------------------ running things
    def _soon(self, fn: Callable[[], Any], delay: float = 0.0) -> None:
        if self._closed:
            return
        if self._schedule is not None:
            self._schedule(fn, delay)
        elif not delay:
            fn()

    def wait(self, timeout: float = 30) -> bool:
        """Block until no read is running or waiting (scripts and tests)."""
        return self.runner.wait(timeout)

    def close(self) -> None:
        """Stop watching the file and polling the build; let go of this view's chunk claims."""
        from ..data.watch import WATCHES

        self._closed = True
        WATCHES.unsubscribe(self._watch_id)
        self._watch_id = None
        release_reads(self.reads)
        self._schedule = None

    # ------------------------------------------------------------------ reads
    def _on_frame(self, *events: param.parameterized.Event) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Read the current view again (the latest request wins) and publish the picture."""
        st = self.state
        if st.info is None or self._closed:
            return
        args = self.read_args()
        if not self._threaded:
            seq = self.runner.latest = self.runner.latest + 1
            self.show(seq, *self._read_job(*args))
            return
        self.runner.submit(self._read_job, *args)

    def read_args(self) -> tuple:
        """What a read of the view of now needs (as :meth:`_read_job` takes it)."""
        st = self.state
        request = st.request(self._pixels())
        plane = (st.file, st.dataset, id(st.info), tuple(st.display))
        motion = (st.axis, st.index)
        direction = 0
        if self._last_position is not None and self._last_position[0] == motion[0]:
            direction = (motion[1] > self._last_position[1]) - (motion[1] < self._last_position[1])
        self._last_position = motion
        slice_key = (st.file, st.dataset, st.part, *request.display, request.indices)
        return st.info, request, st.root, plane, slice_key, direction

    def _read(self, info, request: SliceRequest, root: str, direction: int = 0) -> SliceImage:
        """Read the slice, timed into ``self._read_ms`` (from overview levels if it has them)."""
        wait_for_warm_up()  # (a first read behind the kernels' compilation: not a filesystem wait)
        t0 = time.perf_counter()
        pyramid = PYRAMIDS.get(info) if PYRAMIDS.wanted(info) else None
        with reading_for(self.reads):
            # Bounded: a hung mount shows "the filesystem did not answer" in this view's
            # alert, and its reads go on (the read thread is not stuck forever).
            read = partial(read_slice, info, request, root, pyramid=pyramid, prefetch=direction)
            image = bounded(read, key=info.file, what="reading the slice")
        self._read_ms = (time.perf_counter() - t0) * 1000
        return image

    def _read_job(self, info, request, root, plane, slice_key, direction) -> tuple:
        """Read (in a worker thread when threaded); errors travel back with the result."""
        try:
            image = self._read(info, request, root, direction)
        except Exception as exc:
            return None, exc, plane, slice_key, bool(request.x_range), None
        zoomed = bool(request.x_range and request.y_range)
        prepared = None
        if self._prepare is not None:
            try:  # the picture's data under the colour settings of now, off the event loop
                stats = self._slice_stats(slice_key, image, zoomed)
                prepared = self._prepare(image, self._limits_for(stats)[0], self.state.scale)
            except Exception:  # made on the event loop then
                log.debug("preparing a picture failed", exc_info=True)
        return image, None, plane, slice_key, zoomed, prepared

    def _read_done(self, seq: int, result: Any, error: BaseException | None) -> None:
        if error is not None or result is None:  # only a bug in _read_job itself lands here
            log.error("slice read job failed", exc_info=error)
            return
        self._soon(partial(self.show, seq, *result))

    def show(
        self,
        seq: int,
        image: SliceImage | None,
        error: BaseException | None,
        plane: tuple | None,
        slice_key: tuple = (),
        zoomed: bool = False,
        prepared: Any = None,
    ) -> bool:
        """Publish read number ``seq``'s result; False if a newer one was already shown."""
        if seq < self._shown:  # an older read finished after a newer one was shown
            return False
        self._shown = seq
        if error is not None:
            if not isinstance(error, DashappError):
                log.error("slice read failed", exc_info=error)
                message = f"Unexpected error while reading: {type(error).__name__}: {error}"
            else:
                message = str(error)
            self.error = message
            return True
        new_dataset = self.plane is None or plane[:3] != self.plane[:3]
        self._zoomed, self._slice_key = zoomed, slice_key
        self._slice_stats(slice_key, image, zoomed)
        self.prepared, self.plane = prepared, plane
        if new_dataset and self.state.auto_scale:
            with param.parameterized.discard_events(self):
                self.image = image  # (the scale's limits are those of this picture)
            self.state.scale = suggest_scale(image.stats)
        limits, note = self._limits_for(self._stats_for_limits(image))
        self.param.update(
            image=image,
            limits=limits,
            limits_note=note,
            error="",
            read_ms=self._read_ms,
            status=self._status(image, limits, note),
        )
        return True

    # ------------------------------------------------------------------ colour limits
    def _slice_stats(self, key: tuple, image: SliceImage, zoomed: bool) -> SliceStats | None:
        """Keep the statistics of a whole slice; give those of ``key``'s whole slice."""
        if not zoomed:
            self._slices[key] = image.stats
            self._slices.move_to_end(key)
            while len(self._slices) > SLICE_STATS_KEPT:
                self._slices.popitem(last=False)
            return image.stats
        return self._slices.get(key)

    def _stats_for_limits(self, image: SliceImage) -> SliceStats | None:
        if self._zoomed:
            whole = self._slices.get(self._slice_key)
            return whole if whole is not None else image.stats
        return image.stats

    def _limits_for(
        self, stats: SliceStats | None, image: SliceImage | None = None
    ) -> tuple[tuple[float, float], str]:
        """Colour limits under the state's settings, and where they come from in words."""
        st = self.state
        if stats is None:
            image = image or self.image
            if image is None:
                return (0.0, 1.0), ""
            stats = image.stats
        rng = self._global_range() if st.clim == "global" else None
        limits = resolve_limits(st.clim, st.scale, stats, rng, st.vmin, st.vmax)
        note = ""
        if st.clim in ("auto", "robust") and self._zoomed:
            whole = self._slices.get(self._slice_key)
            note = "of the whole slice" if stats is whole else "of the zoomed region"
        elif st.clim == "global" and rng is not None and not rng.exact:
            note = f"estimated from {rng.sampled:,} of {rng.total:,} values"
        return limits, note

    def current_limits(self, image: SliceImage | None = None) -> tuple[float, float]:
        """The colour limits for ``image`` (default: the one shown) under the settings of now."""
        if image is None:
            image = self.image
            return self._limits_for(self._stats_for_limits(image) if image else None)[0]
        return self._limits_for(image.stats)[0]

    def _on_limits(self, *events: param.parameterized.Event) -> None:
        st = self.state
        if any(e.name == "clim" for e in events):
            if st.clim == "manual" and (st.vmin is None or st.vmax is None) and self.image:
                lo, hi = self.current_limits()
                st.param.update(vmin=float(f"{lo:.6g}"), vmax=float(f"{hi:.6g}"))
            if st.clim == "global":
                self.ensure_global()
        self._publish_limits()

    def _publish_limits(self) -> None:
        if self.image is None:
            return
        limits, note = self._limits_for(self._stats_for_limits(self.image))
        self.param.update(
            limits=limits, limits_note=note, status=self._status(self.image, limits, note)
        )

    def _global_key(self) -> tuple:
        st = self.state
        return (st.file, st.dataset, st.part)

    def _global_range(self) -> ValueRange | None:
        """The range estimated for the dataset as it is now (not as it was before a reload)."""
        kept = self._global.get(self._global_key())
        return kept[1] if kept is not None and kept[0] is self.state.info else None

    def ensure_global(self) -> None:
        """Estimate the dataset's value range once per dataset (off the loop when threaded)."""
        st = self.state
        key = self._global_key()
        if st.info is None or self._global_range() is not None:
            return
        info, root, part = st.info, st.root, st.part

        def done(rng: ValueRange) -> None:
            self._global[key] = (info, rng)
            self.estimating = False
            self._publish_limits()

        if not self._threaded:
            done(estimate_range(info, part, root=root))
            return
        self.estimating = True
        if self.image is not None:
            self.status = self._status(self.image, tuple(self.limits), self.limits_note)

        def job() -> None:
            try:
                rng = estimate_range(info, part, root=root)
            except Exception as exc:
                log.warning("range estimate failed: %s", exc)
                self._soon(lambda: setattr(self, "estimating", False))
                return
            self._soon(partial(done, rng))

        EXECUTOR.submit(job)

    # ------------------------------------------------------------------ status
    def _status(self, image: SliceImage, limits: tuple[float, float], note: str) -> str:
        """The status line: one numbering for positions, the slider's index (0-based)."""
        st = self.state
        if st.info is None:
            return ""
        lo, hi = limits
        rows = (image.rows[1] - image.rows[0] + image.step - 1) // image.step
        cols = (image.cols[1] - image.cols[0] + image.step - 1) // image.step
        parts = []
        if st.position_label():
            parts.append(st.position_label())
        for dim in st.other_dims:
            parts.append(st.position_of(dim, int(st.indices.get(dim, 0))))
        read = f"read {rows:,} × {cols:,} cells"
        if image.level:
            h, w = image.read_shape
            read = f"read {h:,} × {w:,} cells of overview level {image.level} (1:{2**image.level})"
            if image.source != "pyramid":
                read += ", averaged from the file's chunks"
        if image.downsampled:
            h, w = image.values.shape
            read += f" → {h} × {w} px ({st.agg})"
        parts.append(f"{read} in {self._read_ms:.0f} ms")
        colour = f"colour {st.clim}: {lo:.4g} … {hi:.4g}"
        if note:
            colour += f" ({note})"
        if self.estimating:
            colour += " · estimating the dataset's range…"
        parts.append(colour)
        text = " · ".join(parts)
        if image.notes:
            text += "\nNote: " + "; ".join(image.notes)
        return text

    # ------------------------------------------------------------------ dataset
    def _on_dataset(self, *events: param.parameterized.Event) -> None:
        st = self.state
        self._slices.clear()  # (statistics of the dataset as it was: a live file changed)
        if st.info is not None and st.clim == "global":
            self.ensure_global()
        if st.info is None:
            if st.error:
                self.prepared = self.plane = None
                self.param.update(image=None, error="", status="")
            self._show_build(None)
            return
        self._watch_pyramid()

    # ------------------------------------------------------------------ overview levels
    def _watch_pyramid(self) -> None:
        """Start (or look up) the dataset's pyramid build and publish its progress."""
        info = self.state.info
        if info is None or not PYRAMIDS.wanted(info):
            self._show_build(None)
            return
        try:  # looks for levels on disk (stats the file): bounded, as it runs on the loop
            status = bounded(PYRAMIDS.ensure, info, key=info.file, what="finding overviews")
        except DashappError:
            self._show_build(None)
            return
        self._show_build(status)
        if status.state in ("queued", "building") and not self._polling:
            self._polling = self._schedule is not None
            self._soon(self._poll, 0.5)

    def _poll(self) -> None:
        self._polling = False
        if self.poll_build():
            self._polling = True
            self._soon(self._poll, 0.5)

    def poll_build(self) -> bool:
        """Check the overview-level build (redraw once ready); True while it goes on."""
        info = self.state.info
        try:
            status = (
                bounded(PYRAMIDS.status, info, key=info.file, what="finding overviews")
                if info is not None
                else None
            )
        except DashappError:
            return True  # asked again at the next poll
        self._show_build(status)
        if status is not None and status.state in ("queued", "building"):
            return True
        if status is not None and status.state == "ready":
            self.refresh()
        return False

    def _show_build(self, status: Any) -> None:
        if status is None:
            self.param.update(build_state="", build_progress=0.0, build_message="")
            return
        self.param.update(
            build_state=status.state,
            build_progress=min(1.0, max(0.0, float(status.progress))),
            build_message=status.message,
        )

    # ------------------------------------------------------------------ live files
    def _on_file(self, *events: param.parameterized.Event) -> None:
        """Watch the open file (through its folder) for a writer's changes."""
        from ..data.watch import WATCHES

        WATCHES.unsubscribe(self._watch_id)
        self._watch_id = None
        self.param.update(problem="", retry_in=0.0, watching="")
        st = self.state
        if not st.file or self._closed:
            return
        try:
            path = st.path
            self._watch_id = WATCHES.subscribe([path], self._file_changed)
        except DashappError:  # the filesystem did not answer: the load's alert says so
            return
        mode = WATCHES.mode_of(self._watch_id)
        self.watching = mode.label if mode else ""

    def _file_changed(self, paths: set) -> None:
        """In the watcher thread: hand over to the document's thread."""
        self._soon(self.reload)

    def reload(self) -> None:
        """The file changed: read its metadata again (the state redraws), keeping the view.

        A file being written, cut short, damaged or deleted keeps the last good picture with
        :attr:`problem` saying why, and is tried again after 0.5 s, 1 s, 2 s, ... up to 10 s
        (and at the next change seen on disk) until it reads well again.
        """
        st = self.state
        if not st.file or not st.dataset or self._closed:
            return
        try:
            st.reload()
        except DashappError as exc:
            delay = min(RETRY_MAX, max(RETRY_FIRST, self.retry_in * 2))
            self.param.update(problem=str(exc), retry_in=delay)
            if not self._retry_pending:
                self._retry_pending = True

                def retry() -> None:
                    self._retry_pending = False
                    self.reload()

                self._soon(retry, delay)
            return
        self.param.update(problem="", retry_in=0.0)
