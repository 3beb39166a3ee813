"""The ``dashapp`` command line.

dashapp serve [--root DIR] [--capsule C] [panel serve options...]
                                                       serve the slicer (a capsule: read-only)
dashapp capsule export [--workspace W] [--pack-inputs] [--root DIR] OUT
                                                       pack the provenance record into a capsule
dashapp capsule open CAPSULE [--to DIR] [--serve]      extract a capsule, print its timeline
dashapp capsule show CAPSULE                           print a capsule's timeline
dashapp prov export [--workspace W] OUT.json           the provenance record as W3C PROV-JSON
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
    script_args = []
    if args.root:
        script_args += ["--root", args.root]
    if args.capsule:
        script_args += ["--capsule", args.capsule]
    if script_args:
        cmd += ["--args", *script_args]
    os.execvp(cmd[0], cmd)
    return 0  # pragma: no cover - execvp does not return


def _capsule(args: argparse.Namespace) -> int:

    from .provenance import Record, export_capsule, open_capsule

    if args.action == "export":
        record = Record(args.workspace or None, read_only=True)
        if not record.path.exists():
            print(f"dashapp: no provenance record in {record.workspace}", file=sys.stderr)
            return 1
        out = export_capsule(
            record,
            args.out,
            pack_inputs=args.pack_inputs,
            max_input_bytes=int(args.max_input_mb * 2**20),
            root=args.root,
        )
        manifest = _manifest(out)
        counts, inputs = manifest["counts"], manifest["inputs"]
        print(f"wrote {out}: {counts['events']} events, {counts['attachments']} attachments")
        if args.pack_inputs:
            print(f"  {len(inputs['packed'])} input file(s) packed")
            for item in inputs["skipped"]:
                print(f"  not packed: {item['file']} ({item['reason']})")
        return 0
    if args.action == "show":  # read it in a temporary folder: showing leaves nothing behind
        import tempfile

        with tempfile.TemporaryDirectory(prefix="dashapp-capsule-") as tmp:
            capsule = open_capsule(args.capsule, extract_to=tmp)
            print(capsule.describe())
            print()
            print(capsule.timeline() or "(no events)")
        return 0
    capsule = open_capsule(args.capsule, extract_to=args.to)
    print(capsule.describe())
    how = {
        "new": "",
        "merged": " (merged: the files an earlier 'dashapp capsule open' wrote there were "
        "replaced; other files there were left alone)",
        "cached": " (extracted before; reused)",
    }.get(capsule.extraction, "")
    print(f"  extracted to {capsule.folder}{how}")
    if capsule.root is not None:
        print(f"  packed inputs: {capsule.root}")
    print()
    print(capsule.timeline() or "(no events)")
    if args.serve:
        print()
        root = capsule.root
        if root is None:
            # the manifest's root is only told, never served: a capsule is someone else's file
            where = capsule.manifest.get("root")
            print(
                "The capsule's input files were not packed (export with --pack-inputs): to "
                "restore its views, serve the original data yourself with "
                "'dashapp serve --capsule CAPSULE --root FOLDER'"
                + (f" (it was {where!r} where the capsule was written)." if where else ".")
            )
            return 0
        print("To see its timeline and restore its views (read-only):")
        print(f"  dashapp serve --capsule {_quote(str(args.capsule))}")
        print("or serve its data and open a view's link:")
        print(f"  dashapp serve --root {_quote(str(root))}")
        for event, _query in capsule.views()[-5:]:
            print(f"  http://localhost:5006/slicer_app?{event.link}   ({event.title})")
    return 0


def _prov(args: argparse.Namespace) -> int:
    from .provenance import Record, export_prov

    record = Record(args.workspace or None, read_only=True)
    if not record.path.exists():
        print(f"dashapp: no provenance record in {record.workspace}", file=sys.stderr)
        return 1
    out = export_prov(record, args.out)
    print(f"wrote {out}")
    return 0


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _manifest(path: str) -> dict:
    import json
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("manifest.json"))


def _add_provenance_commands(sub: argparse._SubParsersAction) -> None:
    capsule = sub.add_parser("capsule", help="export, open or show a provenance capsule")
    actions = capsule.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="pack a workspace's provenance record")
    export.add_argument("--workspace", help="workspace folder (default: $DASHAPP_WORKSPACE)")
    export.add_argument("--pack-inputs", action="store_true", help="pack the small input files")
    export.add_argument("--root", help="folder the deep links' file paths are relative to")
    export.add_argument(
        "--max-input-mb", type=float, default=64, help="largest input file packed (MiB, 64)"
    )
    export.add_argument("out", help="capsule file to write (.capsule.zip), or a folder")
    opened = actions.add_parser("open", help="extract a capsule and print its timeline")
    opened.add_argument("capsule")
    opened.add_argument("--to", help="folder to extract into (default: dashapp's cache)")
    opened.add_argument("--serve", action="store_true", help="how to serve its views")
    show = actions.add_parser("show", help="print a capsule's timeline")
    show.add_argument("capsule")
    prov = sub.add_parser("prov", help="export the provenance record as W3C PROV")
    prov_actions = prov.add_subparsers(dest="action", required=True)
    prov_export = prov_actions.add_parser("export", help="write PROV-JSON")
    prov_export.add_argument("--workspace", help="workspace folder (default: $DASHAPP_WORKSPACE)")
    prov_export.add_argument("out", help="the .json file to write")


def main(argv: list[str] | None = None) -> int:
    """Run the ``dashapp`` command."""
    parser = argparse.ArgumentParser(prog="dashapp", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the slicer (extra options go to panel serve)")
    serve.add_argument("--root", help="folder to browse (default: $DASHAPP_ROOT or the demo)")
    serve.add_argument(
        "--capsule", help="serve a capsule read-only: its timeline, views and packed inputs"
    )
    _add_provenance_commands(sub)
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        return _serve(args, rest)
    if rest:  # only serve passes unknown options on (to panel serve)
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command in ("capsule", "prov"):
        from .data.errors import DashappError

        try:
            return _capsule(args) if args.command == "capsule" else _prov(args)
        except (DashappError, OSError) as exc:
            print(f"dashapp: error: {exc}", file=sys.stderr)
            return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
