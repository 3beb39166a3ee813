"""Work finished in a background thread after its browser tab closed is dropped quietly."""

from bokeh.document import Document

from dashapp.views.session import on_session


def test_a_closed_session_drops_the_callback():
    assert on_session(Document(), lambda: None)  # a live document takes it
    doc = Document()

    def session(event):  # stands for the ServerSession, which listens to its document
        pass

    doc.on_change(session)  # the server session watches its document ...
    doc.destroy(session)  # ... and destroys it when the tab's session ends
    assert on_session(doc, lambda: None) is False
    assert on_session(doc, lambda: None, delay=0.5) is False


def test_a_poll_runs_without_entering_panels_busy_count(monkeypatch):
    import asyncio
    import threading

    import panel as pn

    from dashapp.views.session import poll

    busy, calls = [], []
    add_busy = pn.state._add_busy_event
    monkeypatch.setattr(pn.state, "_add_busy_event", lambda eid: (busy.append(eid), add_busy(eid)))

    async def run(make):
        cb = make(lambda: calls.append(1), 20)
        try:
            for _ in range(100):
                await asyncio.sleep(0.02)
                if len(calls) >= 3:
                    break
        finally:
            cb.stop()

    def in_a_loop(make):  # its own thread: a test before may leave this thread's loop running
        worker = threading.Thread(target=lambda: asyncio.run(run(make)))
        worker.start()
        worker.join(30)

    in_a_loop(poll)
    assert len(calls) >= 3
    assert busy == []
    calls.clear()  # control: Panel's own periodic callback does enter the count
    in_a_loop(lambda fn, ms: pn.state.add_periodic_callback(fn, period=ms))
    assert len(calls) >= 3
    assert len(busy) >= 3
