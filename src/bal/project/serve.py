"""``bal serve DIR``: a small local web page for labelling the current selection.

The page shows the selected images in a grid; one click or one number key (1..9)
labels the highlighted image and moves on to the next unlabelled one; ``u`` or
Ctrl+Z (or the Undo button) undoes the last label given on the page. Every label is
written to the project database as it is given: the server answers a POST only after
:meth:`Project.label` returned (committed, durable), and the page shows an image as
done only once that answer arrived.

Routes (anything else is 404)::

    GET  /                 the page (inline HTML, CSS and JS; nothing fetched elsewhere)
    GET  /api/state        {classes, cycle_id, items: [{id, path, label}], labelled, total}
    GET  /image/ID         the file of image ID (any image of the project; ids, never paths)
    POST /api/label        {image_id, label[, cycle_id]} -> {label_id, image_id, label, labelled, total}
    POST /api/undo         {label_id} -> {label_id, image_id, label, labelled, total}

Security: binds to 127.0.0.1 by default. Bound to any other address it requires a
token (``--token``, or a random one printed in the URL), checked in constant time on
every request from the ``token`` query parameter or the ``X-Bal-Token`` header. Without
a token, requests must name a loopback host (no DNS rebinding). POSTs must be JSON
from the page's own origin (no cross-site requests). Responses carry a
Content-Security-Policy (``default-src 'self'``, the inline script and style allowed
by hash only), ``nosniff``, no framing and no referrer.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import ipaddress
import json
import mimetypes
import os
import re
import secrets
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, quote, urlsplit

from bal.errors import BalError
from bal.project.db import Project

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
LABEL_SOURCE = "serve"
MAX_BODY = 16 * 1024  # bytes; a label or undo request is a few dozen

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the page ----------------------------------------------------------------------------
_CSS = """
:root { --accent: #2563eb; --done: #15803d; --bad: #b91c1c; }
* { box-sizing: border-box; }
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; color: #111; background: #f6f6f6; }
header { position: sticky; top: 0; z-index: 1; background: #fff; border-bottom: 1px solid #ddd;
         padding: .6em 1em; display: flex; flex-wrap: wrap; gap: .5em 1em; align-items: center; }
h1 { font-size: 1.1em; margin: 0; }
#classes { display: flex; flex-wrap: wrap; gap: .4em; }
button { font: inherit; padding: .3em .7em; border: 1px solid #999; border-radius: 4px; background: #fff;
         cursor: pointer; }
button:hover { border-color: var(--accent); }
button:disabled { opacity: .5; cursor: default; }
kbd { font: .85em ui-monospace, monospace; border: 1px solid #bbb; border-radius: 3px; padding: 0 .3em;
      margin-right: .3em; background: #f3f3f3; }
#progress-box { display: flex; align-items: center; gap: .5em; }
progress { width: 12em; height: 1em; }
#status { min-height: 1.4em; padding: 0 1em; color: var(--bad); }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: .8em; padding: 1em; }
figure { margin: 0; background: #fff; border: 3px solid transparent; border-radius: 6px; padding: .3em;
         cursor: pointer; }
figure.current { border-color: var(--accent); }
figure img { display: block; width: 100%; height: 140px; object-fit: contain; image-rendering: pixelated;
             background: #eee; }
figcaption { font-size: .8em; overflow-wrap: anywhere; }
.label { display: block; font-weight: 600; min-height: 1.3em; }
figure.done .label { color: var(--done); }
figure.pending .label { color: #888; }
#empty { padding: 2em; }
"""

_JS = r"""
"use strict";
const token = new URLSearchParams(location.search).get("token");
const authHeaders = token ? {"X-Bal-Token": token} : {};
const $ = (id) => document.getElementById(id);
let state = null;          // the last /api/state, items updated as labels are confirmed
let current = 0;           // index of the highlighted item
const pending = new Set(); // image ids with a request in flight
const undoStack = [];      // {label_id, image_id} of labels given on this page, newest last
let chain = Promise.resolve();  // requests go out one after another, in order

function say(text) { $("status").textContent = text || ""; }

async function api(method, path, body) {
  const init = {method, headers: {...authHeaders}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) throw new Error((data && data.error) || ("HTTP " + response.status));
  return data;
}

function imageUrl(id) {
  return "/image/" + id + (token ? "?token=" + encodeURIComponent(token) : "");
}

function build() {
  const classes = $("classes");
  classes.replaceChildren();
  state.classes.forEach((name, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "class";
    b.dataset.class = name;
    if (i < 9) {
      const k = document.createElement("kbd");
      k.textContent = String(i + 1);
      b.append(k);
    }
    b.append(document.createTextNode(name));
    b.addEventListener("click", () => labelCurrent(name));
    classes.append(b);
  });
  const grid = $("grid");
  grid.replaceChildren();
  state.items.forEach((item, i) => {
    const fig = document.createElement("figure");
    fig.id = "item-" + item.id;
    fig.dataset.id = item.id;
    const img = document.createElement("img");
    img.src = imageUrl(item.id);
    img.alt = item.path;
    img.loading = "lazy";
    const cap = document.createElement("figcaption");
    const lab = document.createElement("span");
    lab.className = "label";
    const path = document.createElement("span");
    path.textContent = item.path;
    cap.append(lab, path);
    fig.append(img, cap);
    fig.addEventListener("click", () => { current = i; render(); });
    grid.append(fig);
  });
  $("empty").hidden = state.items.length > 0;
  render();
}

function render() {
  state.items.forEach((item, i) => {
    const fig = $("item-" + item.id);
    fig.classList.toggle("current", i === current);
    fig.classList.toggle("done", item.label !== null && !pending.has(item.id));
    fig.classList.toggle("pending", pending.has(item.id));
    fig.querySelector(".label").textContent = pending.has(item.id) ? "saving\u2026" : (item.label || "");
  });
  const fig = state.items.length ? $("item-" + state.items[current].id) : null;
  if (fig) fig.scrollIntoView({block: "nearest"});
  $("progress").max = Math.max(state.total, 1);
  $("progress").value = state.labelled;
  $("progress-text").textContent = state.labelled + " / " + state.total + " labelled";
  $("undo").disabled = undoStack.length === 0;
  $("cycle").textContent = state.cycle_id === null ? "" : "cycle " + state.cycle_id;
}

function nextUnlabelled(from) {
  const n = state.items.length;
  for (let step = 1; step <= n; step++) {
    const i = (from + step) % n;
    const item = state.items[i];
    if (item.label === null && !pending.has(item.id)) return i;
  }
  return from;
}

function apply(result) {
  const item = state.items.find((it) => it.id === result.image_id);
  if (item) item.label = result.label;
  state.labelled = result.labelled;
  state.total = result.total;
}

function labelCurrent(name) {
  if (!state || state.items.length === 0) return;
  const item = state.items[current];
  pending.add(item.id);
  current = nextUnlabelled(current);
  render();
  chain = chain.then(async () => {
    try {
      const result = await api("POST", "/api/label", {image_id: item.id, label: name, cycle_id: state.cycle_id});
      undoStack.push({label_id: result.label_id, image_id: item.id});
      apply(result);
      say("");
    } catch (e) {
      say("Not saved: " + e.message);
    } finally {
      pending.delete(item.id);
      render();
    }
  });
}

function undo() {
  chain = chain.then(async () => {
    const last = undoStack.pop();
    if (!last) return;
    pending.add(last.image_id);
    render();
    try {
      apply(await api("POST", "/api/undo", {label_id: last.label_id}));
      current = state.items.findIndex((it) => it.id === last.image_id);
      if (current < 0) current = 0;
      say("");
    } catch (e) {
      say("Undo failed: " + e.message);
    } finally {
      pending.delete(last.image_id);
      render();
    }
  });
}

document.addEventListener("keydown", (e) => {
  if (!state) return;
  if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && e.key.toLowerCase() === "z") {
    e.preventDefault(); undo(); return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  if (e.key === "u" || e.key === "U") { e.preventDefault(); undo(); return; }
  if (/^[1-9]$/.test(e.key)) {
    const name = state.classes[Number(e.key) - 1];
    if (name !== undefined) { e.preventDefault(); labelCurrent(name); }
    return;
  }
  const n = state.items.length;
  if (n && (e.key === "ArrowRight" || e.key === "ArrowDown")) { current = (current + 1) % n; render(); }
  else if (n && (e.key === "ArrowLeft" || e.key === "ArrowUp")) { current = (current - 1 + n) % n; render(); }
});

async function load() {
  try {
    state = await api("GET", "/api/state");
  } catch (e) {
    say("Could not load the selection: " + e.message);
    return;
  }
  const first = state.items.findIndex((it) => it.label === null);
  current = first < 0 ? 0 : first;
  build();
  document.body.dataset.ready = "1";
}

$("undo").addEventListener("click", undo);
load();
"""


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bal: label the selection</title>
<style>{_CSS}</style>
</head>
<body>
<header>
  <h1>bal <span id="cycle"></span></h1>
  <div id="classes" aria-label="classes"></div>
  <button type="button" id="undo" disabled title="undo the last label given on this page (u, Ctrl+Z)">
    <kbd>u</kbd>Undo</button>
  <div id="progress-box"><progress id="progress" value="0" max="1"></progress>
    <span id="progress-text"></span></div>
</header>
<div id="status" role="status" aria-live="polite"></div>
<p id="empty" hidden>Nothing is selected for labelling: start a cycle first.</p>
<main id="grid"></main>
<script>{_JS}</script>
</body>
</html>
""".encode()

CSP = "; ".join([
    "default-src 'self'",
    f"script-src {_sha(_JS)}",
    f"style-src {_sha(_CSS)}",
    "img-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

_IMAGE_ROUTE = re.compile(r"/image/([1-9][0-9]{0,17})")


# -- the application ---------------------------------------------------------------------
class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class LabelApp:
    """The project behind the page: one connection, every use under one lock."""

    def __init__(self, project_dir: str | os.PathLike, token: str | None):
        self.project = Project.open(project_dir)
        self.project_dir = Path(project_dir)
        self.token = token
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.project.close()

    # all methods below are called with self.lock held
    def _selection(self):
        return self.project.current_selection()

    @staticmethod
    def _counts(rows) -> dict:
        return {"labelled": sum(r.label is not None for r in rows), "total": len(rows)}

    def state(self) -> dict:
        cycle_id, rows = self._selection()
        return {
            "classes": self.project.classes,
            "cycle_id": cycle_id,
            "items": [{"id": r.id, "path": r.path, "label": r.label} for r in rows],
            **self._counts(rows),
        }

    def label(self, body: dict) -> dict:
        image_id, name = body.get("image_id"), body.get("label")
        if type(image_id) is not int:
            raise HttpError(400, "image_id must be a whole number")
        if not isinstance(name, str):
            raise HttpError(400, "label must be a class name (a string)")
        classes = self.project.classes
        if name not in classes:
            raise HttpError(400, f"unknown class {name!r}; the project's classes are {', '.join(classes)}")
        cycle_id, rows = self._selection()
        if "cycle_id" in body and body["cycle_id"] != cycle_id:
            raise HttpError(409, f"the selection changed (now cycle {cycle_id}); reload the page")
        if image_id not in {r.id for r in rows}:
            raise HttpError(400, f"image {image_id} is not in the current selection (cycle {cycle_id})")
        label_id = self.project.label(image_id, name, LABEL_SOURCE)  # committed when it returns
        _, rows = self._selection()
        return {"label_id": label_id, "image_id": image_id, "label": self.project.image(image_id).label,
                **self._counts(rows)}

    def undo(self, body: dict) -> dict:
        label_id = body.get("label_id")
        if type(label_id) is not int:
            raise HttpError(400, "label_id must be a whole number")
        cycle_id, rows = self._selection()
        # only labels of the current selection can be undone from the page
        image_id = next((r.id for r in rows if any(lab.id == label_id for lab in self.project.labels_of(r.id))),
                        None)
        if image_id is None:
            raise HttpError(400, f"label {label_id} is not a current label of an image in the selection")
        try:
            self.project.retract(label_id)
        except BalError as e:
            raise HttpError(400, str(e))
        _, rows = self._selection()
        return {"label_id": label_id, "image_id": image_id, "label": self.project.image(image_id).label,
                **self._counts(rows)}

    def image_file(self, image_id: int) -> Path:
        try:
            row = self.project.image(image_id)
        except BalError:
            raise HttpError(404, "not found")
        if row.status == "missing":
            raise HttpError(404, "not found")
        root = self.project.images_root
        rel = PurePosixPath(row.path)
        # The paths come from the project's own scan; refuse anything that would leave the
        # images folder anyway (defence in depth). Symlinks inside the folder are the user's.
        if rel.is_absolute() or any(part in ("..", "") for part in rel.parts) or "\x00" in row.path:
            raise HttpError(404, "not found")
        path = Path(os.path.normpath(root / rel))
        if not path.is_relative_to(root):
            raise HttpError(404, "not found")
        return path


class Handler(BaseHTTPRequestHandler):
    server_version = "bal-serve"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    app: LabelApp  # set on the subclass made by make_server
    quiet = True

    # -- plumbing --------------------------------------------------------------------------
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        if not self.quiet:
            super().log_message(format, *args)

    def end_headers(self):
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        super().end_headers()

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        if self.path.startswith("/api/"):
            self._json(status, {"error": message})
        else:
            self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

    def _authorised(self, query: dict) -> bool:
        token = self.app.token
        if token is None:
            # no token: loopback only, and the Host must say so (a rebound DNS name must not work)
            host = (self.headers.get("Host") or "").strip()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return is_loopback(name)
        given = self.headers.get("X-Bal-Token") or (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())

    def _route(self, method: str) -> None:
        try:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            if not self._authorised(query):
                raise HttpError(403, "forbidden: this server needs its token (the ?token=... of the URL it printed)")
            path = parts.path
            if method == "GET" and path == "/":
                return self._send(200, PAGE, "text/html; charset=utf-8")
            if method == "GET" and path == "/api/state":
                with self.app.lock:
                    data = self.app.state()
                return self._json(200, data)
            if method == "GET" and (m := _IMAGE_ROUTE.fullmatch(path)):
                return self._image(int(m.group(1)))
            if method == "POST" and path in ("/api/label", "/api/undo"):
                body = self._body()
                with self.app.lock:
                    data = self.app.label(body) if path == "/api/label" else self.app.undo(body)
                return self._json(200, data)
            if path in ("/", "/api/state", "/api/label", "/api/undo") or _IMAGE_ROUTE.fullmatch(path):
                raise HttpError(405, f"{method} is not allowed here")
            raise HttpError(404, "not found")
        except HttpError as e:
            self._error(e.status, e.message)
        except BalError as e:
            self._error(400, str(e))

    def _body(self) -> dict:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            # a cross-site form or a no-cors fetch cannot send this without a CORS preflight
            raise HttpError(415, "send JSON (Content-Type: application/json)")
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host', '')}":
            raise HttpError(403, f"forbidden: request from another origin ({origin})")
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise HttpError(411, "Content-Length required")
        if not 0 <= length <= MAX_BODY:
            raise HttpError(413, f"request body over {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "the body is not valid JSON")
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        return body

    def _image(self, image_id: int) -> None:
        with self.app.lock:
            path = self.app.image_file(image_id)
        try:
            if not path.is_file():  # no folders, devices or pipes
                raise HttpError(404, "not found")
            data = path.read_bytes()
        except OSError:
            raise HttpError(404, "not found")
        ctype = mimetypes.guess_type(path.name)[0] or ""
        if not ctype.startswith("image/"):
            ctype = "application/octet-stream"
        self._send(200, data, ctype, cache="private, max-age=300")

    def do_GET(self):  # noqa: N802 (the base class's name)
        self._route("GET")

    def do_POST(self):  # noqa: N802
        self._route("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_close(self):
        super().server_close()
        app = getattr(self.RequestHandlerClass, "app", None)
        if app is not None:
            app.close()


def make_server(project_dir, host: str = DEFAULT_HOST, port: int = 0, token: str | None = None,
                quiet: bool = True):
    """A ready (bound, not yet serving) server for ``project_dir`` and the page's URL.

    ``port=0`` picks a free port. A token is generated when ``host`` is not a loopback
    address and none is given; when there is a token, the URL carries it.
    """
    if token is not None and not token:
        raise BalError("--token must not be empty")
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    app = LabelApp(project_dir, token)
    handler = type("BoundHandler", (Handler,), {"app": app, "quiet": quiet})
    server_cls = type("BoundServer", (_Server,), {"address_family": _family(host)})
    try:
        server = server_cls((host.strip("[]"), port), handler)
    except OSError as e:
        app.close()
        raise BalError(f"cannot listen on {host}:{port}: {e.strerror or e}"
                       + ("; choose another port with --port" if port else "")) from None
    bound_port = server.server_address[1]
    shown = host.strip("[]")
    if shown in ("0.0.0.0", "::", ""):
        shown = "127.0.0.1" if shown != "::" else "::1"
    if ":" in shown:
        shown = f"[{shown}]"
    url = f"http://{shown}:{bound_port}/" + (f"?token={quote(token, safe='')}" if token else "")
    return server, url


def _family(host: str) -> int:
    host = host.strip("[]")
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise BalError(f"--host {host}: not an address or a known host name") from None
    families = [i[0] for i in infos]
    return socket.AF_INET if socket.AF_INET in families else families[0]


def serve_forever(project_dir, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None,
                  quiet: bool = True) -> None:
    """Serve until interrupted (Ctrl+C), printing the page's URL on stdout first."""
    server, url = make_server(project_dir, host, port, token, quiet=quiet)
    try:
        if not is_loopback(host):
            print(f"bal serve: listening on {host} port {server.server_address[1]}: anyone who can reach "
                  "this machine and has the token can label (from another machine, put this machine's address in "
                  "place of the one below)", file=sys.stderr, flush=True)
        print(f"bal serve: labelling page for {project_dir} at {url}", flush=True)
        print("bal serve: each label is saved as it is given; press Ctrl+C to stop", file=sys.stderr, flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# -- the command -------------------------------------------------------------------------
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
