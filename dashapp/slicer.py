"""The slicer as a ``panel serve`` script inside the package (see :mod:`dashapp.app`)."""

from dashapp.app import serve_slicer_page

serve_slicer_page()
