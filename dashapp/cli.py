"""The ``dashapp`` command line.

dashapp serve [--root DIR] [panel serve options...]   serve the slicer
dashapp demo inversion OUT.h5 [...]                    run the SimPEG demo producer
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _serve(args: argparse.Namespace, rest: list[str]) -> int:
    from .app import SLICER_SCRIPT

    cmd = [sys.executable, "-m", "panel", "serve", str(SLICER_SCRIPT), *rest]
    if "--index" not in rest:  # the slicer at / rather than /slicer_app
        cmd[5:5] = ["--index", "slicer_app"]
    if args.root:
        cmd += ["--args", "--root", args.root]
    os.execvp(cmd[0], cmd)
    return 0  # pragma: no cover - execvp does not return


def main(argv: list[str] | None = None) -> int:
    """Run the ``dashapp`` command."""
    parser = argparse.ArgumentParser(prog="dashapp", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the slicer (extra options go to panel serve)")
    serve.add_argument("--root", help="folder to browse (default: $DASHAPP_ROOT or the demo)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        return _serve(args, rest)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
