"""The slicer as a ``panel serve`` script inside the package (see :mod:`dashapp.app`).

Its file name is its route: ``/slicer``, as for the repository's ``apps/slicer.py``.
"""

from dashapp.app import serve_slicer_page

serve_slicer_page()
