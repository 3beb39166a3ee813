"""A session of a Bokeh/Panel app driven over Bokeh's websocket protocol, without a browser.

Ten Chromium pages on a 2-core machine spend the cores on rendering, so a benchmark of "ten
sessions on one server" measured with ten real pages measures the browser as much as the
server. Here a session is what the server sees of a page, and nothing more: the HTTP GET that
creates the session, the websocket with the session's token, ``PULL-DOC-REQ``, the plot's size
as the browser reports it, and, for a key press on the slice slider, the two ``PATCH-DOC``
messages a page sends (``value``, then ``value_throttled``, recorded from Chromium). The
reply is timed to the last byte of the patch that carries the new image; nothing is decoded
or drawn. Our users' browsers run on their own machines, so this is the load ten of them put
on the server.

All clients share one asyncio loop in a background thread (:class:`ClientLoop`); the calls on
:class:`ProtocolSession` block the caller until the loop has done the work.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = ["ClientLoop", "ProtocolSession"]

_TOKEN = re.compile(r'"token":\s*"([^"]+)"')


class ClientLoop:
    """An asyncio event loop in a daemon thread, for all protocol sessions of a run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _objects(node: Any) -> Iterator[dict]:
    """Every serialised Bokeh object (``{"type": "object", "id": ...}``) in a document's JSON."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "id" in node:
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _refs(node: Any) -> Iterator[str]:
    """Ids of every object inside ``node``, defined there or referenced (``{"id": ...}``)."""
    if isinstance(node, dict):
        if "id" in node and isinstance(node["id"], str):
            yield node["id"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _subtree(start: str, by_id: dict[str, dict]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        oid = todo.pop()
        if oid in seen or oid not in by_id:
            continue
        seen.add(oid)
        todo.extend(_refs(by_id[oid].get("attributes", {})))
    return seen


def find_slicer_models(doc: dict) -> dict[str, str]:
    """Ids of the slice slider (and its number box), the slice figure, the image's data source
    and the page's location (address bar) in a slicer page.

    The slider is the ``Slider`` inside the widget with the CSS class ``dashapp-index``; the
    figure is the one holding the image mapper named ``slice-image-mapper``; the source is the
    ``ColumnDataSource`` whose data has the ``image`` column.
    """
    by_id = {o["id"]: o for o in _objects(doc)}

    def named(ids: set[str], name: str) -> list[str]:
        return [i for i in ids if by_id[i].get("name") == name]

    index = [
        o["id"]
        for o in by_id.values()
        if "dashapp-index" in (o.get("attributes", {}).get("css_classes") or [])
    ]
    if not index:
        raise LookupError("no widget with the CSS class dashapp-index in the document")
    sliders = named(_subtree(index[0], by_id), "Slider")
    mapper = [
        i for i, o in by_id.items() if o.get("attributes", {}).get("name") == "slice-image-mapper"
    ]
    figures = [
        i for i in by_id if by_id[i].get("name") == "Figure" and mapper[0] in _subtree(i, by_id)
    ]
    sources = []
    for i in named(set(by_id), "ColumnDataSource"):
        data = by_id[i].get("attributes", {}).get("data", {})
        keys = [e[0] for e in data.get("entries", [])] if isinstance(data, dict) else []
        if "image" in keys:
            sources.append(i)
    if not (sliders and figures and sources):
        raise LookupError(f"slider {sliders}, figure {figures}, source {sources}")
    location = [i for i, o in by_id.items() if str(o.get("name", "")).endswith("Location")]
    boxes = named(_subtree(index[0], by_id), "Spinner")  # the slider's number box
    return {
        "slider": sliders[0],
        "box": boxes[0] if boxes else "",
        "figure": figures[0],
        "source": sources[0],
        "location": location[0] if location else "",
    }


def _changes(content: dict) -> list[tuple[str, str, Any]]:
    out = []
    for event in content.get("events", []):
        new = event.get("new")
        small = new if isinstance(new, (str, int, float, bool)) or new is None else "..."
        out.append((event.get("model", {}).get("id", ""), event.get("attr", event["kind"]), small))
    return out


class ProtocolSession:
    """One slicer session over the websocket: open, step the slice slider, time the frame.

    ``frame`` is the plot's inner ``(height, width)`` in pixels as a page reports it (the
    server reads each slice at that many pixels).
    """

    def __init__(
        self,
        loop: ClientLoop,
        url: str,
        frame: tuple[int, int],
        name: str = "",
        record: bool = False,
    ) -> None:
        self.loop, self.url, self.frame, self.name = loop, url, frame, name
        self.ids: dict[str, str] = {}
        #: With ``record``: every ``PATCH-DOC`` the server sent after the page opened, as
        #: ``(arrival time, [(model id, attribute or event kind, new value if small), ...])``.
        self.patches: list[tuple[float, list[tuple[str, str, Any]]]] | None = [] if record else None
        self.value: int | None = None
        self.ws: Any = None
        self._frames: asyncio.Queue | None = None
        self._reader: asyncio.Task | None = None

    # ------------------------------------------------------------------ wire
    async def _send(self, msgtype: str, content: dict) -> None:
        header = {"msgid": uuid.uuid4().hex.upper(), "msgtype": msgtype}
        for part in (header, {}, content):
            await self.ws.write_message(json.dumps(part))

    async def _receive(self) -> tuple[dict, dict, list[bytes]]:
        """One message: header, content, buffers."""
        header = json.loads(await self._read())
        await self._read()  # metadata
        content = json.loads(await self._read())
        buffers = []
        for _ in range(header.get("num_buffers", 0)):
            await self._read()  # the buffer's id
            buffers.append(await self._read())
        return header, content, buffers

    async def _read(self) -> str | bytes:
        frame = await self.ws.read_message()
        if frame is None:
            raise ConnectionError(f"{self.name}: the server closed the websocket")
        return frame

    # ------------------------------------------------------------------ session
    async def _open(self, timeout: float) -> None:
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest
        from tornado.websocket import websocket_connect

        page = await AsyncHTTPClient().fetch(self.url, request_timeout=timeout)
        token = _TOKEN.search(page.body.decode()).group(1)
        parts = urllib.parse.urlsplit(self.url)
        ws_url = urllib.parse.urlunsplit(
            ("ws", parts.netloc, parts.path.rstrip("/") + "/ws", parts.query, "")
        )
        request = HTTPRequest(ws_url, headers={"Origin": f"http://{parts.netloc}"})
        self.ws = await websocket_connect(
            request, subprotocols=["bokeh", token], max_message_size=1 << 30
        )
        # As Chromium does: each frame is sent at once, not held back for the ACK of the last
        # one (Nagle). Without this, the second frame of each message waited ~40 ms here.
        self.ws.protocol.set_nodelay(True)
        header, _, _ = await self._receive()
        if header["msgtype"] != "ACK":
            raise ConnectionError(f"{self.name}: expected ACK, got {header['msgtype']}")
        await self._send("PULL-DOC-REQ", {})
        while True:
            header, content, _ = await self._receive()
            if header["msgtype"] == "PULL-DOC-REPLY":
                break
        self.ids = find_slicer_models(content["doc"])
        slider = next(o for o in _objects(content["doc"]) if o["id"] == self.ids["slider"])
        self.value = int(slider["attributes"]["value"])
        h, w = self.frame
        await self._patch(
            {"model": {"id": self.ids["figure"]}, "attr": "inner_width", "new": w},
            {"model": {"id": self.ids["figure"]}, "attr": "inner_height", "new": h},
        )
        await self._send(
            "PATCH-DOC",
            {
                "events": [
                    {
                        "kind": "MessageSent",
                        "msg_type": "bokeh_event",
                        "msg_data": {
                            "type": "event",
                            "name": "document_ready",
                            "values": {"type": "map"},
                        },
                    }
                ]
            },
        )
        self._frames = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read_loop())

    async def _patch(self, *changes: dict) -> None:
        await self._send("PATCH-DOC", {"events": [{"kind": "ModelChanged", **c} for c in changes]})

    async def _read_loop(self) -> None:
        source = self.ids["source"]
        try:
            while True:
                header, content, buffers = await self._receive()
                if header["msgtype"] != "PATCH-DOC":
                    continue
                if self.patches is not None:
                    self.patches.append((time.perf_counter(), _changes(content)))
                for event in content.get("events", []):
                    if event.get("model", {}).get("id") == source and event.get("attr") == "data":
                        nbytes = sum(len(b) for b in buffers)
                        self._frames.put_nowait((time.perf_counter(), nbytes))
                        break
        except Exception as exc:  # the websocket closed: wake a waiting step
            self._frames.put_nowait(exc)

    async def _step(self, value: int, timeout: float) -> tuple[float | None, int]:
        while not self._frames.empty():  # frames nobody waited for (a refresh, a resize)
            self._frames.get_nowait()
        t0 = time.perf_counter()
        slider = {"id": self.ids["slider"]}
        await self._patch({"model": slider, "attr": "value", "new": value})
        await self._patch({"model": slider, "attr": "value_throttled", "new": value})
        self.value = value  # where the slider is now, whether or not its picture comes
        try:
            got = await asyncio.wait_for(self._frames.get(), timeout)
        except asyncio.TimeoutError:
            return None, 0
        if isinstance(got, Exception):
            raise got
        t1, nbytes = got
        return (t1 - t0) * 1000, nbytes

    async def _close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            self.ws.close()

    # ------------------------------------------------------------------ blocking API
    def open(self, timeout: float = 120) -> ProtocolSession:
        self.loop.run(self._open(timeout), timeout + 5)
        return self

    def step_async(self, delta: int = 1, timeout: float = 30) -> Any:
        """Start a step of the slider by ``delta``; returns a future of
        ``(milliseconds to the new frame's last byte or None on timeout, frame bytes)``."""
        return asyncio.run_coroutine_threadsafe(
            self._step(self.value + delta, timeout), self.loop.loop
        )

    def jump_async(self, value: int, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(self._step(value, timeout), self.loop.loop)

    def step(self, delta: int = 1, timeout: float = 30) -> tuple[float | None, int]:
        return self.step_async(delta, timeout).result(timeout + 5)

    def drag(
        self, timeout: float = 30, turn_every: int = 20
    ) -> Iterator[tuple[int, float | None, int]]:
        """Step without pause, the next step as soon as the last picture came (or timed out),
        turning back every ``turn_every`` steps: a hand dragging to and fro. Yields
        ``(slider value, milliseconds or None, picture bytes)`` per step, for as long as the
        caller takes them."""
        direction, n = 1, 0
        while True:
            ms, nbytes = self.step(direction, timeout)
            yield self.value, ms, nbytes
            n += 1
            if n % turn_every == 0:
                direction = -direction

    def close(self) -> None:
        self.loop.run(self._close(), 10)
