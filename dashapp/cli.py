"""The dashapp command line.

dashapp serve [--root DIR] [--capsule C] [--allow-viewers] [panel serve options...]
                                                       serve the slicer (a capsule: read-only)
                                                       on 127.0.0.1, with an access token
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


#: panel serve options that bring their own login (then no token is added).
_OWN_AUTH = ("--basic-auth", "--oauth-provider", "--auth-module")
_OWN_AUTH_ENV = ("PANEL_BASIC_AUTH", "PANEL_OAUTH_PROVIDER", "BOKEH_AUTH_MODULE")


def _option(rest: list[str], name: str) -> str | None:
    """The value of a panel serve option in ``rest`` (``--x v`` or ``--x=v``), else None."""
    for i, item in enumerate(rest):
        if item == name and i + 1 < len(rest):
            return rest[i + 1]
        if item.startswith(name + "="):
            return item.split("=", 1)[1]
    return None


def _has(rest: list[str], name: str) -> bool:
    return any(item == name or item.startswith(name + "=") for item in rest)


def _serve_url(rest: list[str], token: str | None) -> str:
    """The URL the owner opens (with the token), as the browser on this machine sees it."""
    from .routes import ROUTE

    address = _option(rest, "--address") or "localhost"
    if address in ("127.0.0.1", "::1", "0.0.0.0", "::", ""):
        address = "localhost" if address not in ("0.0.0.0", "::", "") else _hostname()
    port = _option(rest, "--port") or "5006"
    scheme = "https" if _has(rest, "--ssl-certfile") else "http"
    prefix = (_option(rest, "--prefix") or "").strip("/")
    path = f"/{prefix}/" if prefix else "/"
    if _option(rest, "--index") not in (None, ROUTE):
        path += ROUTE
    query = f"?token={token}" if token else ""
    if _has(rest, "--unix-socket"):  # through the SSH tunnel: ssh -L 5006:<socket> ...
        return f"http://localhost:5006{path}{query}"
    return f"{scheme}://{address}:{port}{path}{query}"


def _hostname() -> str:
    import socket

    return socket.getfqdn()


def _announce_when_ready(url: str, rest: list[str], show: bool) -> int:
    """Print the URL again once the server answers, below panel's own start-up lines (which
    name the address without the token), and with --show open it (panel's --show has no token).

    Returns the announcer's process id: this process becomes the server (``exec``), which
    reaps the announcer when it ends (``$DASHAPP_ANNOUNCER_PID``, see
    :func:`dashapp.app.services`); else it would stay ``<defunct>`` as long as the server runs.
    """
    import subprocess

    port = int(_option(rest, "--port") or 5006)
    # Ready = a request is answered (or closed): the socket listens before the event loop runs,
    # and Bokeh prints its lines in between. The server is this process after exec: the parent.
    code = (
        "import os, socket, sys, time, webbrowser\n"
        "for _ in range(600):\n"
        "    if os.getppid() != int(sys.argv[3]):\n"
        "        break  # the server is gone (it never started): nothing to announce\n"
        "    try:\n"
        f"        with socket.create_connection(('127.0.0.1', {port}), 1) as s:\n"
        "            s.settimeout(30)\n"
        "            s.sendall(b'HEAD / HTTP/1.0\\r\\n\\r\\n')\n"
        "            s.recv(1)\n"
        "    except OSError:\n"
        "        time.sleep(0.2)\n"
        "    else:\n"
        "        print(f'dashapp: ready, open {sys.argv[1]}', file=sys.stderr, flush=True)\n"
        "        if sys.argv[2] == '1':\n"
        "            webbrowser.open(sys.argv[1])\n"
        "        break\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, url, "1" if show else "0", str(os.getpid())],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    return proc.pid


def _serve(args: argparse.Namespace, rest: list[str]) -> int:
    import secrets

    from . import settings
    from .auth import AUTH_MODULE, new_token
    from .routes import PLUGIN, ROUTE, SLICER_SCRIPT
    from .settings import ALLOW_VIEWERS_ENV, ANNOUNCER_ENV, TOKEN_ENV

    show = "--show" in rest
    rest = [item for item in rest if item != "--show"]
    for name in ("port", "num_procs"):  # shown in `dashapp serve --help`; panel serve's
        value = getattr(args, name, None)
        if value is not None:
            rest = [f"--{name.replace('_', '-')}", str(value), *rest]
    cmd = [sys.executable, "-m", "panel", "serve", str(SLICER_SCRIPT), *rest]
    # the slicer at /slicer, as `panel serve apps/slicer.py` serves it, and at / too; old
    # /slicer_app links redirect there (see dashapp.routes); the Dask dashboard at <prefix>/dask/
    cmd[5:5] = ["--plugins", PLUGIN, "--plugins", "dashapp.cluster.proxy"]
    if not _has(rest, "--index"):
        cmd[5:5] = ["--index", ROUTE]
    if not (_has(rest, "--address") or _has(rest, "--unix-socket")):
        cmd[5:5] = ["--address", "127.0.0.1"]  # this machine only, unless told otherwise
        rest = ["--address", "127.0.0.1", *rest]
    env = dict(os.environ)
    own_auth = any(_has(rest, o) for o in _OWN_AUTH) or any(env.get(v) for v in _OWN_AUTH_ENV)
    token = None
    if not own_auth:  # the token, for every page, session and websocket (see dashapp.auth)
        token = settings.current().token or new_token()
        env[TOKEN_ENV] = token  # the environment, not argv: `ps` shows argv to every user
        cmd[5:5] = ["--auth-module", str(AUTH_MODULE)]
    if args.allow_viewers:
        env[ALLOW_VIEWERS_ENV] = "1"
    if not env.get("BOKEH_SECRET_KEY") and not _has(rest, "--session-ids"):
        # sessions only for ids this server signed: a made-up session id gets no session
        env["BOKEH_SECRET_KEY"] = secrets.token_urlsafe(40)
        env["BOKEH_SIGN_SESSIONS"] = "yes"
    script_args = []
    if args.root:
        script_args += ["--root", args.root]
    if args.capsule:
        script_args += ["--capsule", args.capsule]
    if script_args:
        cmd += ["--args", *script_args]
    url = _serve_url(rest, token)
    if token:
        from .auth import announce

        announce(url)
    else:
        print(f"dashapp: serving at {url} behind panel's own login", file=sys.stderr)
    if args.allow_viewers:
        print("dashapp: anyone who reaches it may look (viewers); the token URL is the owner's")
    sys.stdout.flush()
    if not _has(rest, "--unix-socket"):
        env[ANNOUNCER_ENV] = str(_announce_when_ready(url, rest, show))
    os.execvpe(cmd[0], cmd, env)
    return 0  # pragma: no cover - execvpe does not return


def _capsule(args: argparse.Namespace) -> int:

    from .provenance import Record, default_workspace, export_capsule, open_capsule
    from .routes import ROUTE

    if args.action == "export":
        # without --workspace, the timeline a server of --root kept (one per served folder)
        workspace = args.workspace or (default_workspace(args.root) if args.root else None)
        record = Record(workspace, read_only=True)
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
            print(f"  http://localhost:5006/{ROUTE}?{event.link}   ({event.title})")
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
    export.add_argument(
        "--workspace",
        help="workspace folder (default: $DASHAPP_WORKSPACE, else that of the --root served)",
    )
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
    parser = argparse.ArgumentParser(
        prog="dashapp",
        description="See inside HDF5 files from a browser: the slicer, its provenance record.",
        epilog="commands:\n" + __doc__.split("\n\n", 1)[1].rstrip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve the slicer (extra options go to panel serve)",
        description="Serve the slicer at http://localhost:PORT/slicer (and at /) on this "
        "machine only, with an access token. Options not listed here go to `panel serve` "
        "(see `panel serve --help`), e.g. --address, --unix-socket, --prefix, --show.",
    )
    serve.add_argument("--root", help="folder to browse (default: $DASHAPP_ROOT or the demo)")
    serve.add_argument(
        "--capsule", help="serve a capsule read-only: its timeline, views and packed inputs"
    )
    serve.add_argument(
        "--allow-viewers",
        action="store_true",
        help="let in people without the token, as viewers (they cannot set cluster shell fields)",
    )
    serve.add_argument("--port", type=int, help="port to listen on (default: 5006)")
    serve.add_argument(
        "--num-procs",
        type=int,
        help="number of server processes (0: one per core; default: 1); the chunk cache "
        "($DASHAPP_CHUNK_CACHE_MB) is shared out among them",
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
