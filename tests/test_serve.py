"""``bal serve``: the labelling page's HTTP API, its security, a real browser, and a kill -9."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bal.cli.serve import add_serve_command
from bal.project.db import Project, file_sha256
from bal.project.serve import make_server

CLASSES = ["cat", "dog", "frog"]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


# -- fixtures ----------------------------------------------------------------------------
def make_project(root: Path, n_images: int = 6, n_selected: int = 5,
                 classes: list[str] = CLASSES) -> tuple[Path, list[int], list[int]]:
    """A project in ``root/proj`` with ``n_images`` small PNGs; the first ``n_selected`` are selected.

    Returns (project folder, selected ids, other ids).
    """
    images, folder = root / "images", root / "proj"
    (images / "sub").mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    for i in range(n_images):
        rel = f"sub/img{i}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(images / rel)
        st = (images / rel).stat()
        rows.append((rel, file_sha256(images / rel), st.st_size, st.st_mtime_ns))
    (root / "secret.txt").write_text("TOP-SECRET-CONTENT\n")
    with Project.create(folder, images, classes) as project:
        project.add_images(rows)
        ids = [project.image_by_path(r[0]).id for r in rows]
        project.start_cycle("bal", ids[:n_selected])
    return folder, ids[:n_selected], ids[n_selected:]


class Running:
    def __init__(self, server, url):
        self.server, self.url = server, url
        self.port = server.server_address[1]
        self.token = re.search(r"token=([^&]+)", url).group(1) if "token=" in url else None

    def request(self, method: str, path: str, body=None, headers: dict | None = None, host: str = "127.0.0.1"):
        """(status, headers, body bytes) of one request, the path sent exactly as given."""
        conn = http.client.HTTPConnection(host, self.port, timeout=10)
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body=None, **kw):
        status, _, data = self.request(method, path, body, **kw)
        return status, json.loads(data)


@pytest.fixture
def served(tmp_path):
    """Start ``make_server`` in a thread; yields a factory (host, token) -> Running."""
    started = []

    def start(folder, host="127.0.0.1", token=None):
        server, url = make_server(folder, host=host, port=0, token=token)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((server, thread))
        return Running(server, url)

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


# -- 1. the HTTP API, no browser -----------------------------------------------------------
def test_page_state_label_undo(project, served):
    folder, selected, others = project
    s = served(folder)
    assert s.url.startswith("http://127.0.0.1:") and "token" not in s.url

    status, headers, page = s.request("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b'<script src="/static/app.js">' in page and b"://" not in page  # own files, nothing fetched elsewhere
    status, headers, script = s.request("GET", "/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"/api/label" in script

    status, state = s.json("GET", "/api/state")
    assert status == 200
    assert state["classes"] == CLASSES and state["cycle_id"] == 1
    assert [it["id"] for it in state["items"]] == selected
    assert state["items"][0] == {"id": selected[0], "path": "sub/img0.png", "label": None}
    assert (state["labelled"], state["total"]) == (0, 5)

    status, headers, data = s.request("GET", f"/image/{selected[0]}")
    assert status == 200 and headers["Content-Type"] == "image/png"
    with Project.open(folder) as p:
        assert data == (p.images_root / "sub/img0.png").read_bytes()
    assert s.request("GET", f"/image/{others[0]}")[0] == 200  # any image of the project

    status, r = s.json("POST", "/api/label", {"image_id": selected[1], "label": "dog"})
    assert status == 200 and r["label"] == "dog" and (r["labelled"], r["total"]) == (1, 5)
    first = r["label_id"]
    status, r = s.json("POST", "/api/label", {"image_id": selected[2], "label": "frog", "cycle_id": 1})
    assert status == 200
    with Project.open(folder) as other:  # a second connection sees both: committed
        assert other.image(selected[1]).label == "dog" and other.image(selected[2]).label == "frog"
        assert other.labels_of(selected[1])[0].source == "serve"

    status, r = s.json("POST", "/api/undo", {"label_id": first})
    assert status == 200 and r["image_id"] == selected[1] and r["label"] is None and r["labelled"] == 1
    with Project.open(folder) as other:
        assert other.image(selected[1]).label is None
        assert other.labels_of(selected[1], include_retracted=True)[0].id == first
    status, r = s.json("POST", "/api/undo", {"label_id": first})  # twice
    assert status == 400 and "error" in r
    assert s.json("GET", "/api/state")[1]["labelled"] == 1


def test_bad_input(project, served):
    folder, selected, others = project
    s = served(folder)
    status, r = s.json("POST", "/api/label", {"image_id": selected[0], "label": "horse"})
    assert status == 400 and "unknown class 'horse'" in r["error"] and "cat, dog, frog" in r["error"]
    status, r = s.json("POST", "/api/label", {"image_id": others[0], "label": "cat"})
    assert status == 400 and "not in the current selection" in r["error"]
    assert s.json("POST", "/api/label", {"image_id": 999999, "label": "cat"})[0] == 400
    assert s.json("POST", "/api/label", {"image_id": "1", "label": "cat"})[0] == 400
    assert s.json("POST", "/api/label", {"image_id": True, "label": "cat"})[0] == 400
    assert s.json("POST", "/api/label", {"image_id": selected[0], "label": "cat", "cycle_id": 7})[0] == 409
    assert s.request("POST", "/api/label", b"{not json")[0] == 400
    assert s.request("POST", "/api/label", b"[1, 2]")[0] == 400
    assert s.request("POST", "/api/label", b"x" * 100_000)[0] == 413
    assert s.json("POST", "/api/undo", {"label_id": 123})[0] == 400
    # cross-site requests: not JSON, or from another origin
    plain = {"Content-Type": "text/plain"}
    assert s.request("POST", "/api/label", {"image_id": selected[0], "label": "cat"}, headers=plain)[0] == 415
    evil = {"Origin": "http://evil.example"}
    assert s.request("POST", "/api/label", {"image_id": selected[0], "label": "cat"}, headers=evil)[0] == 403
    ok = {"Origin": f"http://127.0.0.1:{s.port}"}
    assert s.request("POST", "/api/label", {"image_id": selected[0], "label": "cat"}, headers=ok)[0] == 200
    assert s.request("GET", "/api/label")[0] == 405
    with Project.open(folder) as other:
        assert other.current_labels() == {selected[0]: "cat"}


def test_no_file_but_the_projects_images(project, served):
    folder, selected, _ = project
    s = served(folder)
    db = (folder / "project.db").read_bytes()[:16]
    for path in ["/image/../../etc/passwd", "/image/%2e%2e/x", "/../project.db", "/image/999999",
                 "/project.db", "/image/0", "/image/-1", "/image/1/", "/image/01", "/image/%31", "/image/1%00",
                 "/image/1/../../secret.txt", "/../secret.txt", "/%2e%2e/secret.txt", "/images/sub/img0.png",
                 "/sub/img0.png", "/etc/passwd", "//etc/passwd", "/api/../project.db", "/api", "/index.html",
                 "/image/99999999999999999999999999"]:
        status, _, data = s.request("GET", path)
        assert status == 404, path
        assert b"SQLite" not in data and b"TOP-SECRET" not in data and b"root:" not in data and db not in data
    # an image whose file went away
    with Project.open(folder) as p:
        p.set_status(selected[4], "missing")
    assert s.request("GET", f"/image/{selected[4]}")[0] == 404
    # other methods
    assert s.request("PUT", "/api/label", b"{}")[0] in (404, 405, 501)
    assert s.request("DELETE", "/project.db")[0] in (404, 405, 501)


def test_dns_rebinding_refused_without_token(project, served):
    folder, _, _ = project
    s = served(folder)
    assert s.request("GET", "/api/state", headers={"Host": "evil.example:80"})[0] == 403
    assert s.request("GET", "/api/state", headers={"Host": f"localhost:{s.port}"})[0] == 200


def test_token_required_off_loopback(project, served):
    folder, selected, _ = project
    s = served(folder, host="0.0.0.0")
    assert s.token and len(s.token) >= 20 and s.url.endswith(f"/?token={s.token}")
    for path in ["/", "/api/state", f"/image/{selected[0]}"]:
        assert s.request("GET", path)[0] == 403
        assert s.request("GET", path + "?token=wrong")[0] == 403
        assert s.request("GET", path, headers={"X-Bal-Token": s.token[:-1]})[0] == 403
        assert s.request("GET", f"{path}?token={s.token}")[0] == 200
        assert s.request("GET", path, headers={"X-Bal-Token": s.token})[0] == 200
    assert s.request("POST", "/api/label", {"image_id": selected[0], "label": "cat"})[0] == 403
    assert s.request("POST", f"/api/label?token={s.token}", {"image_id": selected[0], "label": "cat"})[0] == 200
    assert s.request("GET", f"/nothing?token={s.token}")[0] == 404
    # a token given on loopback is required too
    t = served(folder, token="s3cret")
    assert t.url.endswith("?token=s3cret")
    assert t.request("GET", "/api/state")[0] == 403 and t.request("GET", "/api/state?token=s3cret")[0] == 200


def test_serve_command_flags():
    parser = argparse.ArgumentParser(prog="bal")
    handlers = add_serve_command(parser.add_subparsers(dest="command"))
    assert set(handlers) == {"serve"} and callable(handlers["serve"])
    args = parser.parse_args(["serve", "proj"])
    assert (args.dir, args.host, args.port, args.token) == ("proj", "127.0.0.1", 8765, None)
    args = parser.parse_args(["serve", "proj", "--host", "0.0.0.0", "--port", "0", "--token", "t"])
    assert (args.host, args.port, args.token) == ("0.0.0.0", 0, "t")
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "proj", "--port", "70000"])


# -- 2. a real browser ---------------------------------------------------------------------
def _browser_or_skip():
    """Selenium's webdriver module; skip when the browser is missing, but fail under CI."""
    missing = [f for f in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(f)]
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
        missing.append("the selenium package (pip install selenium)")
    if missing:
        reason = f"needs {', '.join(missing)}: run .ci/setup-browser and pip install selenium"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set and the end-to-end browser test cannot run: {reason}")
        pytest.skip(reason)
    return webdriver


def test_missing_browser_skips_but_fails_under_ci(monkeypatch):
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if p in (CHROMIUM, CHROMEDRIVER) else real_exists(p))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        _browser_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        _browser_or_skip()


def test_label_in_a_real_browser(project, served, tmp_path, monkeypatch):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    folder, selected, _ = project
    s = served(folder)
    driver = _chrome(tmp_path, monkeypatch, log_browser=True)
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(s.url)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")

        def progress():
            return driver.find_element(By.ID, "progress-text").text

        def figure(image_id):
            return driver.find_element(By.ID, f"item-{image_id}")

        def keys(text):
            ActionChains(driver).send_keys(text).perform()

        def done(image_id):
            return lambda d: "done" in figure(image_id).get_attribute("class").split()

        assert progress() == "0 / 5 labelled"
        assert "current" in figure(selected[0]).get_attribute("class").split()
        buttons = driver.find_elements(By.CSS_SELECTOR, "#classes button")
        assert [b.get_attribute("data-class") for b in buttons] == CLASSES
        assert [b.find_element(By.TAG_NAME, "kbd").text for b in buttons] == ["1", "2", "3"]
        # the images load (same origin, allowed by the CSP)
        wait.until(lambda d: d.execute_script(
            "return [...document.images].every(i => i.complete && i.naturalWidth === 8)"))

        # 1. click a class button: the current (first) image
        driver.find_element(By.CSS_SELECTOR, "#classes button[data-class='dog']").click()
        wait.until(done(selected[0]))
        wait.until(lambda d: progress() == "1 / 5 labelled")
        assert "current" in figure(selected[1]).get_attribute("class").split()  # moved on

        # 2. a number key: the next image
        keys("3")
        wait.until(done(selected[1]))
        wait.until(lambda d: progress() == "2 / 5 labelled")

        # 3. click an image to make it current, then a key
        figure(selected[3]).click()
        assert "current" in figure(selected[3]).get_attribute("class").split()
        keys("1")
        wait.until(done(selected[3]))
        wait.until(lambda d: progress() == "3 / 5 labelled")

        # 4. undo (key u): the last label, the one of selected[3]
        keys("u")
        wait.until(lambda d: progress() == "2 / 5 labelled")
        assert "done" not in figure(selected[3]).get_attribute("class").split()
        assert "current" in figure(selected[3]).get_attribute("class").split()
        assert driver.find_element(By.ID, "progress").get_attribute("value") == "2"

        with Project.open(folder) as p:
            assert p.current_labels() == {selected[0]: "dog", selected[1]: "frog"}
            undone = p.labels_of(selected[3], include_retracted=True)
            assert [lab.label for lab in undone] == ["cat"] and p.labels_of(selected[3]) == []
        # no CSP violation or script error in the console (the favicon's 404 aside)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        assert errors == []
    finally:
        driver.quit()


# -- 3. kill -9 in the middle: no confirmed label is lost ----------------------------------
def test_no_confirmed_label_lost_on_kill(tmp_path):
    folder, selected, _ = make_project(tmp_path, n_images=8, n_selected=8)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONUNBUFFERED": "1"}
    code = ("import sys; from bal.project.serve import serve_forever; "
            "serve_forever(sys.argv[1], '127.0.0.1', 0)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        line = proc.stdout.readline()  # the server prints its URL once it listens
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, f"no URL in {line!r}"
        port = int(m.group(1))

        confirmed: list[tuple[int, int, str]] = []  # (label id, image id, class) of every 200
        lock = threading.Lock()
        stop = threading.Event()

        def sender(offset: int):
            for n in range(offset, 10_000, 2):
                if stop.is_set():
                    return
                image_id, name = selected[n % len(selected)], CLASSES[n % len(CLASSES)]
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request("POST", "/api/label", json.dumps({"image_id": image_id, "label": name}),
                                 {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    body = r.read()
                    conn.close()
                except OSError:
                    return  # the server is gone
                if r.status == 200:
                    with lock:
                        confirmed.append((json.loads(body)["label_id"], image_id, name))

        threads = [threading.Thread(target=sender, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(confirmed) < 12 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # while both senders have requests in flight
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(20)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.wait()

    assert len(confirmed) >= 12
    with Project.open(folder) as p:
        assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for label_id, image_id, name in confirmed:
            rows = [lab for lab in p.labels_of(image_id) if lab.id == label_id]
            assert len(rows) == 1 and rows[0].label == name and rows[0].source == "serve", label_id
        stored = p.conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        assert len(confirmed) <= stored <= len(confirmed) + 2  # at most the two in flight beyond


def _chrome(tmp_path, monkeypatch, log_browser: bool = False):
    """Headless Debian Chromium driven by Selenium, never downloading anything (Selenium Manager off)."""
    webdriver = _browser_or_skip()
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1000,800"]:
        options.add_argument(arg)
    if log_browser:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _page(driver, url):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 20)
    driver.get(url)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    keys = lambda text: ActionChains(driver).send_keys(text).perform()  # noqa: E731
    done = lambda i: lambda d: "done" in d.find_element(By.ID, f"item-{i}").get_attribute("class").split()  # noqa: E731
    return wait, keys, done


def test_digit_named_classes_take_their_own_digit_in_a_browser(tmp_path, served, monkeypatch):
    """With classes 0..9, pressing 5 records "5" (not the fifth class, "4"), and 9 and 0 have keys."""
    from selenium.webdriver.common.by import By

    digits = [str(d) for d in range(10)]
    folder, selected, _ = make_project(tmp_path, n_images=4, n_selected=4, classes=digits)
    s = served(folder)
    driver = _chrome(tmp_path, monkeypatch)
    try:
        wait, keys, done = _page(driver, s.url)
        buttons = driver.find_elements(By.CSS_SELECTOR, "#classes button")
        assert [b.find_element(By.TAG_NAME, "kbd").text for b in buttons] == digits  # each its own digit
        for key, image_id in zip("590", selected):
            keys(key)
            # the pressed class shows at once, before the server has confirmed it
            wait.until(done(image_id))
            assert driver.find_element(By.ID, f"item-{image_id}").find_element(By.CLASS_NAME, "label").text == key
        with Project.open(folder) as p:
            assert p.current_labels() == dict(zip(selected, "590"))
    finally:
        driver.quit()


def test_forty_three_classes_each_reachable_in_a_browser(tmp_path, served, monkeypatch):
    """43 classes (traffic signs): digits for the first ten, "/" and a name for any class."""
    from selenium.webdriver.common.by import By

    signs = [f"sign-{i:02d}" for i in range(43)]
    folder, selected, _ = make_project(tmp_path, n_images=3, n_selected=3, classes=signs)
    s = served(folder)
    driver = _chrome(tmp_path, monkeypatch)
    try:
        wait, keys, done = _page(driver, s.url)
        buttons = driver.find_elements(By.CSS_SELECTOR, "#classes button")
        shown = [b.find_element(By.TAG_NAME, "kbd").text for b in buttons]
        assert shown == list("1234567890") + ["/"] * 33  # every class shows how to reach it
        keys("0")  # the tenth class
        wait.until(done(selected[0]))
        keys("/")
        box = driver.find_element(By.ID, "search")
        assert box.is_displayed()
        box.send_keys("sign-42")
        box.send_keys("\n")
        wait.until(done(selected[1]))
        keys("/")
        box.send_keys("4")  # 14, 24, 34, 40..42: ambiguous, nothing is saved
        box.send_keys("\n")
        assert "several classes match" in driver.find_element(By.ID, "status").text
        box.send_keys("1")  # "41": one match
        box.send_keys("\n")
        wait.until(done(selected[2]))
        with Project.open(folder) as p:
            assert p.current_labels() == {selected[0]: "sign-09", selected[1]: "sign-42", selected[2]: "sign-41"}
    finally:
        driver.quit()


# -- a page that stays up -------------------------------------------------------
def test_silent_connections_time_out_and_threads_are_bounded(project, served, monkeypatch):
    import socket

    import bal.project.serve as serve_mod

    monkeypatch.setattr(serve_mod, "SOCKET_TIMEOUT", 1)
    monkeypatch.setattr(serve_mod, "MAX_CONNECTIONS", 3)
    folder, _, _ = project
    s = served(folder)
    idle = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(3)]  # say nothing: hold 3 threads
    try:
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", s.port))
        extra.settimeout(5)
        assert extra.recv(100).startswith(b"HTTP/1.0 503")  # at once, not after the others
        extra.close()
        for sock in idle:  # the server drops a silent client after SOCKET_TIMEOUT
            sock.settimeout(5)
            assert sock.recv(100) == b""
        time.sleep(0.2)
        status, _ = s.json("GET", "/api/state")
        assert status == 200  # the slots are free again
    finally:
        for sock in idle:
            sock.close()


def test_a_label_while_another_command_writes_answers_busy_not_hangs(project, served):
    import sqlite3

    folder, selected, _ = project
    s = served(folder)
    blocker = sqlite3.connect(folder / "project.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # what a long `bal import` holds
    try:
        t0 = time.monotonic()
        status, data = s.json("POST", "/api/label", {"image_id": selected[0], "label": "cat"})
        assert status == 503 and "busy" in data["error"] and time.monotonic() - t0 < 10
        status, _ = s.json("GET", "/api/state")  # reading still works meanwhile
        assert status == 200
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    status, data = s.json("POST", "/api/label", {"image_id": selected[0], "label": "cat"})
    assert status == 200 and data["label"] == "cat"


def test_hostile_json_gets_400_and_the_token_never_reaches_the_log(project, tmp_path, capfd):
    folder, selected, _ = project
    server, url = make_server(folder, host="127.0.0.1", port=0, token="s3cret-token", quiet=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        running = Running(server, url)
        deep = b"[" * 8000 + b"]" * 8000  # under the 16 KiB limit, far deeper than Python's recursion
        status, _, body = running.request("POST", "/api/label?token=s3cret-token", deep,
                                          headers={"Content-Type": "application/json"})
        assert status == 400 and b"not valid JSON" in body
        status, _, _ = running.request("GET", "/api/state?token=s3cret-token")
        assert status == 200
    finally:
        server.shutdown()
        server.server_close()
    err = capfd.readouterr().err
    assert "/api/state" in err and "s3cret-token" not in err and "token=[hidden]" in err


def test_trickling_clients_are_cut_at_the_deadline_and_never_starve_the_page(project, served, monkeypatch):
    """Clients sending a byte at a time, each silence shorter than the socket timeout: dropped at the request's
    deadline; and, holding no work slot (no token checked yet), they never keep real requests on 503."""
    import socket

    import bal.project.serve as serve_mod

    monkeypatch.setattr(serve_mod, "REQUEST_SECONDS", 1.5)
    monkeypatch.setattr(serve_mod, "MAX_THREADS", 2)
    folder, _, _ = project
    s = served(folder, host="0.0.0.0")
    slow = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(6)]
    try:
        t0 = time.monotonic()
        request = b"GET /api/state HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        for byte in request[:4]:  # trickle: one byte every 0.2 s on each connection
            for sock in slow:
                sock.sendall(bytes([byte]))
            status, _ = s.json("GET", f"/api/state?token={s.token}")
            assert status == 200  # the page's own request, with its token, gets through meanwhile
            time.sleep(0.2)
        for sock in slow:
            sock.settimeout(5)
            reply = b""
            while chunk := sock.recv(1000):
                reply += chunk
            assert not reply.startswith(b"HTTP/1.0 200")  # closed unanswered (or refused), never served
        assert time.monotonic() - t0 < serve_mod.SOCKET_TIMEOUT  # the deadline, not the socket timeout, ended them
    finally:
        for sock in slow:
            sock.close()


def test_verbose_error_responses_are_logged_not_tracebacks(project, capfd):
    """OPTIONS, PUT and a malformed request line are answered (501/400) and logged in one line each."""
    import socket

    folder, _, _ = project
    server, url = make_server(folder, host="127.0.0.1", port=0, token="s3cret", quiet=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        running = Running(server, url)
        for method in ("OPTIONS", "PUT"):
            status, _, _ = running.request(method, "/api/state?token=s3cret")
            assert status == 501
        with socket.create_connection(("127.0.0.1", running.port)) as sock:
            sock.sendall(b"GARBAGE\r\n\r\n")
            sock.settimeout(5)
            reply = b""
            while chunk := sock.recv(1000):
                reply += chunk
            assert b"400" in reply  # a request line without a version is answered the HTTP/0.9 way
    finally:
        server.shutdown()
        server.server_close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "code 501" in err and "s3cret" not in err, err


def test_the_page_links_each_image_at_full_size(project, served):
    """Beside the model's thumbnail, the page links the file itself (?original=1), served byte for byte."""
    folder, selected, _ = project
    s = served(folder)
    with Project.open(folder) as p:
        path = p.absolute_path(p.image(selected[0]))
    status, headers, body = s.request("GET", f"/image/{selected[0]}?original=1")
    assert status == 200 and body == path.read_bytes() and headers["Content-Type"] == "image/png"
    status, _, js = s.request("GET", "/static/app.js")
    assert status == 200 and b"original=1" in js and b"full image" in js and b'rel = "noopener' in js
