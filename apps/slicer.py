"""The HDF5 slicer app.

panel serve apps/slicer.py                      # the built-in demo
panel serve apps/slicer.py --args --root DIR    # your own data (or DASHAPP_ROOT=DIR)
"""

from dashapp.app import serve_slicer_page

serve_slicer_page()
