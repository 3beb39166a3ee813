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
