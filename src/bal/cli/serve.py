"""``bal serve DIR``: the labelling page of :mod:`bal.project.serve`."""

from __future__ import annotations

import argparse

from bal.project.serve import DEFAULT_HOST, DEFAULT_PORT, serve_forever


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {value}")
    return value


def cmd_serve(args) -> int:
    serve_forever(args.dir, args.host, args.port, args.token, quiet=not args.verbose)
    return 0


def add_serve_command(subparsers) -> dict:
    """Add ``bal serve`` to the ``bal`` sub-command parsers; returns {name: handler}."""
    p = subparsers.add_parser(
        "serve", help="a local web page for labelling the current selection",
        description="Serve a web page for labelling the project's current selection: one click or one "
                    "number key per image, undo with u or Ctrl+Z. Each label is saved in the project "
                    "database as it is given. Binds to 127.0.0.1; on any other address a token is "
                    "required (generated and printed in the URL unless --token is given).")
    p.add_argument("dir", metavar="DIR", help="the project folder (holding project.db)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on; not loopback means a token is required (default: %(default)s)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port, 0 for any free one (default: %(default)s)")
    p.add_argument("--token", default=None,
                   help="require this token (?token=... or the X-Bal-Token header) on every request "
                        "(default: a random one when --host is not loopback, none otherwise)")
    p.add_argument("--verbose", action="store_true", help="log every request on stderr")
    return {"serve": cmd_serve}
