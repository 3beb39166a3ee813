"""The HDF5 slicer app.

panel serve apps/slicer.py                      # the built-in demo
panel serve apps/slicer.py --args --root DIR    # your own data (or DASHAPP_ROOT=DIR)
"""

import argparse

import panel as pn

from dashapp.views.app import SlicerApp, resolve_root

parser = argparse.ArgumentParser(prog="apps/slicer.py")
parser.add_argument("--root", help="folder to browse (default: $DASHAPP_ROOT or the demo)")
args, _ = parser.parse_known_args()

pn.extension(notifications=True)
SlicerApp(resolve_root(args.root), query=pn.state.session_args).template().servable()
