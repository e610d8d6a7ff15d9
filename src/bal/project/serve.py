"""A small local web page for labelling the current selection (``bal serve DIR``).

The page shows the selected images in a grid; one click or one number key (1..9)
labels the highlighted image and moves on to the next unlabelled one; ``u`` or
Ctrl+Z (or the Undo button) undoes the last label given on the page. Every label is
written to the project database as it is given: the server answers a POST only after
:meth:`Project.label` returned (committed, durable), and the page shows an image as
done only once that answer arrived.

Routes (anything else is 404)::

    GET  /                 the page (static/index.html; nothing fetched from elsewhere)
    GET  /static/NAME      its script and style sheet (app.js, style.css), package data
    GET  /api/state        {classes, cycle_id, items: [{id, path, label}], labelled, total}
    GET  /image/ID         a thumbnail of image ID, PNG, at most THUMBNAIL px a side, from the pool's
                           decoded cache (what the model sees); ?original=1 sends the file itself
                           (any image of the project; ids, never paths)
    POST /api/label        {image_id, label[, cycle_id]} -> {label_id, image_id, label, labelled, total}
    POST /api/undo         {label_id} -> {label_id, image_id, label, labelled, total}

Security: binds to 127.0.0.1 by default. Bound to any other address it requires a
token (``--token``, or a random one printed in the URL), checked in constant time on
every request but those for the page's static files (the same for everyone, no project
data in them) from the ``token`` query parameter or the ``X-Bal-Token`` header. Without
a token, requests must name a loopback host (no DNS rebinding). POSTs must be JSON
from the page's own origin (no cross-site requests). Responses carry a
Content-Security-Policy (``default-src 'self'``, no inline script or style),
``nosniff``, no framing and no referrer.
"""

from __future__ import annotations

import hmac
import importlib.resources
import io
import ipaddress
import json
import mimetypes
import os
import re
import secrets
import socket
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, quote, urlsplit

from bal.errors import BalError
from bal.project.db import Project, ProjectBusyError

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
#: The page's files, shipped as package data (bal/project/static): name -> content type.
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}


def _static(name: str) -> bytes:
    return importlib.resources.files("bal.project").joinpath("static", name).read_bytes()


CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
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


#: Seconds a connection may stay silent before it is dropped.
SOCKET_TIMEOUT = 20
#: Seconds a client has to send its whole request (line, headers, body): one trickling a
#: byte at a time is dropped then, however short each silence.
REQUEST_SECONDS = 10
#: Connections served at the same time (threads), reading their request or answering it;
#: one more gets "503 busy" at once.
MAX_CONNECTIONS = 64
#: Authorised requests worked on at the same time; a connection takes one of these only once
#: its whole request is read and its token (or loopback Host) checked, so clients without
#: the token, slow or not, never keep the page's own requests waiting.
MAX_THREADS = 16
_TOKEN_IN_URL = re.compile(r"([?&])token=[^&\s\"]*")

#: Longest side of a thumbnail (px); the page shows images 140 px high.
THUMBNAIL = 256
#: Thumbnails kept encoded in memory.
_THUMBNAILS_KEPT = 512


#: How long a label waits for the database when another command (an import) is writing to it;
#: then the page is told "busy" (HTTP 503) and tries again, instead of hanging.
BUSY_SECONDS = 2.0


class LabelApp:
    """The project behind the page. Each request uses its own database connection, so no lock of
    the application is ever held while SQLite waits; a write that cannot get the database within
    :data:`BUSY_SECONDS` answers 503 ("busy, try again")."""

    def __init__(self, project_dir: str | os.PathLike, token: str | None):
        Project.open(project_dir).close()  # refuse a folder that is not a project at once
        self.project_dir = Path(project_dir)
        self.token = token
        self.lock = threading.Lock()  # guards the thumbnail cache only; never held around SQLite
        self._pool: tuple[dict[int, int], object] | None = None  # image id -> row, the cached images
        self._thumbnails: dict[int, bytes] = {}

    def close(self) -> None:
        pass

    @contextmanager
    def project(self):
        """A connection for one request; SQLite's "database is locked" becomes HTTP 503."""
        busy = "the project is busy (another bal command is writing to it); try again"
        try:
            project = Project.open(self.project_dir, busy_seconds=BUSY_SECONDS)
        except (sqlite3.OperationalError, ProjectBusyError):
            raise HttpError(503, busy) from None
        try:
            yield project
        except ProjectBusyError:
            raise HttpError(503, busy) from None
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise HttpError(503, busy) from None
            raise
        finally:
            project.close()

    @staticmethod
    def _counts(rows) -> dict:
        return {"labelled": sum(r.label is not None for r in rows), "total": len(rows)}

    def state(self) -> dict:
        with self.project() as project:
            cycle_id, rows = project.current_selection()
            return {
                "classes": project.classes,
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
        with self.project() as project:
            classes = project.classes
            if name not in classes:
                raise HttpError(400, f"unknown class {name!r}; the project's classes are {', '.join(classes)}")
            cycle_id, rows = project.current_selection()
            if "cycle_id" in body and body["cycle_id"] != cycle_id:
                raise HttpError(409, f"the selection changed (now cycle {cycle_id}); reload the page")
            if image_id not in {r.id for r in rows}:
                raise HttpError(400, f"image {image_id} is not in the current selection (cycle {cycle_id})")
            label_id = project.label(image_id, name, LABEL_SOURCE)  # committed when it returns
            _, rows = project.current_selection()
            return {"label_id": label_id, "image_id": image_id, "label": project.image(image_id).label,
                    **self._counts(rows)}

    def undo(self, body: dict) -> dict:
        label_id = body.get("label_id")
        if type(label_id) is not int:
            raise HttpError(400, "label_id must be a whole number")
        with self.project() as project:
            cycle_id, rows = project.current_selection()
            # only labels of the current selection can be undone from the page
            image_id = next((r.id for r in rows if any(lab.id == label_id for lab in project.labels_of(r.id))),
                            None)
            if image_id is None:
                raise HttpError(400, f"label {label_id} is not a current label of an image in the selection")
            try:
                project.retract(label_id)
            except BalError as e:
                raise HttpError(400, str(e))
            _, rows = project.current_selection()
            return {"label_id": label_id, "image_id": image_id, "label": project.image(image_id).label,
                    **self._counts(rows)}

    def thumbnail(self, image_id: int) -> bytes | None:
        """PNG bytes of the image as the pool's cache holds it, or None when it is not cached (yet)."""
        with self.lock:
            if image_id in self._thumbnails:
                return self._thumbnails[image_id]
            pool = self._pool
        if pool is None or image_id not in pool[0]:
            from bal.project.labelling import cached_pool, pool_rows

            with self.project() as project:
                rows = pool_rows(project)
                size = project.settings().get("image_size")
                images = cached_pool(project, rows, int(size)) if size else None
            pool = ({r.id: i for i, r in enumerate(rows)}, images)
            with self.lock:
                self._pool = pool
        index, images = pool
        if images is None or image_id not in index:
            return None
        from bal.data import encode_png

        data = encode_png(images[index[image_id]], THUMBNAIL)
        with self.lock:
            if len(self._thumbnails) >= _THUMBNAILS_KEPT:
                self._thumbnails.pop(next(iter(self._thumbnails)))
            self._thumbnails[image_id] = data
        return data

    def image_file(self, image_id: int) -> Path:
        with self.project() as project:
            try:
                row = project.image(image_id)
            except BalError:
                raise HttpError(404, "not found")
            root = project.images_root
        if row.status == "missing":
            raise HttpError(404, "not found")
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
    timeout = SOCKET_TIMEOUT  # a client that stops sending is dropped, not waited for
    app: LabelApp  # set on the subclass made by make_server
    quiet = True

    # -- plumbing --------------------------------------------------------------------------
    def setup(self):
        super().setup()
        # the whole request must arrive within REQUEST_SECONDS (a socket timeout alone bounds only each silence)
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, time.monotonic() + REQUEST_SECONDS))

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        if not self.quiet:
            # the request line holds ?token=...: never write the token to a log. Only text is
            # redacted: send_error logs "code %d", and an int made a str broke the format.
            super().log_message(format, *(_TOKEN_IN_URL.sub(r"\1token=[hidden]", a) if isinstance(a, str) else a
                                          for a in args))

    def end_headers(self):
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        super().end_headers()

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.connection.settimeout(self.timeout)  # the request is read: writing has its own timeout again
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
            path = parts.path
            static = path.removeprefix("/static/")
            if method == "GET" and static in STATIC_FILES and static != "index.html":
                return self._send(200, _static(static), STATIC_FILES[static], cache="no-cache")
            if not self._authorised(query):
                raise HttpError(403, "forbidden: this server needs its token (the ?token=... of the URL it printed)")
            if not self.server.work_slots.acquire(blocking=False):
                raise HttpError(503, "busy, try again")
            try:
                return self._authorised_route(method, path, query)
            finally:
                self.server.work_slots.release()
        except HttpError as e:
            self._error(e.status, e.message)
        except BalError as e:
            self._error(400, str(e))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away or went silent: nothing to answer
        except Exception as e:  # a bug: answer, say it in one line, keep serving
            print(f"bal serve: internal error on {self.command} {urlsplit(self.path).path}: "
                  f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
            try:
                self._error(500, "internal error (a bug in bal); see the server's output")
            except OSError:
                pass

    def _authorised_route(self, method: str, path: str, query: dict) -> None:
        if method == "GET" and path == "/":
            return self._send(200, _static("index.html"), STATIC_FILES["index.html"])
        if method == "GET" and path == "/api/state":
            return self._json(200, self.app.state())
        if method == "GET" and (m := _IMAGE_ROUTE.fullmatch(path)):
            return self._image(int(m.group(1)), original=query.get("original") == ["1"])
        if method == "POST" and path in ("/api/label", "/api/undo"):
            body = self._body()
            return self._json(200, self.app.label(body) if path == "/api/label" else self.app.undo(body))
        if path in ("/", "/api/state", "/api/label", "/api/undo") or _IMAGE_ROUTE.fullmatch(path):
            raise HttpError(405, f"{method} is not allowed here")
        raise HttpError(404, "not found")

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
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[...]]]] nested too deep
            raise HttpError(400, "the body is not valid JSON")
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        return body

    def _image(self, image_id: int, original: bool = False) -> None:
        path = self.app.image_file(image_id)  # 404 for an unknown or missing image
        thumbnail = None if original else self.app.thumbnail(image_id)
        if thumbnail is not None:
            return self._send(200, thumbnail, "image/png", cache="private, max-age=300")
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


class _DeadlineReader(io.RawIOBase):
    """A socket read until a deadline: each read waits at most for the time left, then TimeoutError."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took longer than its deadline")
        self.sock.settimeout(min(left, SOCKET_TIMEOUT))
        return self.sock.recv_into(buffer)


class _Server(ThreadingHTTPServer):
    """At most MAX_CONNECTIONS connections and MAX_THREADS authorised requests at a time; past
    either, a short 503 at once."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args, **kwargs):
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.work_slots = threading.BoundedSemaphore(MAX_THREADS)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                b"Retry-After: 1\r\nContent-Length: 18\r\n\r\nbusy, try again.\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

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
    handler = type("BoundHandler", (Handler,), {"app": app, "quiet": quiet, "timeout": SOCKET_TIMEOUT})
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
