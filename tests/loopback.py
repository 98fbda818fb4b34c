"""What tests that run real servers on loopback share (Nginx, pebble, sshd, an upstream app).

The maintenance tests (tests/deploy/test_maintenance.py) and the TLS flow (tests/tls/) both run
the rendered Nginx site in a temporary prefix in front of a tiny app on its unix socket, run
the commands the tasks would run over SSH, and put load on the site while it changes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from deploy import shell


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(
    port: int, process: subprocess.Popen, what: str = "nginx", seconds: float = 10
) -> None:
    """Until something listens on 127.0.0.1:port; fails the test if the process exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port} within {seconds}s")


def stop(process: subprocess.Popen) -> None:
    """Terminate, and kill what does not exit within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def run_as_root(
    command: list[str], timeout: float = 60, check: bool = True, **kwargs
) -> subprocess.CompletedProcess[str]:
    """A command the tasks would run over SSH as root (here we are root, so without sudo): sh -c,
    as sshd runs a command line, so the tokens are joined and quoted exactly as on a host."""
    if command[:2] == ["sudo", "-n"]:
        command = command[2:]
    return subprocess.run(
        ["sh", "-c", shell.join(command)], capture_output=True, text=True, timeout=timeout,
        check=check, **kwargs,
    )  # fmt: skip


@contextlib.contextmanager
def world_readable_tempdir(prefix: str) -> Iterator[Path]:
    """A temporary directory Nginx's workers (www-data) can read, unlike pytest's 0700 tmp_path:
    they read the pages and the webroot and connect to the app's socket, as on a host."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def keep_nginx_temp_files_in(root: Path, nginx_conf: Path) -> None:
    """Nginx's temporary files in the test's prefix, not in the machine's /var/lib/nginx."""
    temp = "".join(f"{kind}_temp_path {root}/tmp-{kind};\n"
                   for kind in ("proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    temp += f"client_body_temp_path {root}/tmp-body;\n"
    nginx_conf.write_text(nginx_conf.read_text().replace("http {", "http {\n" + temp, 1))


class QuietHandler(BaseHTTPRequestHandler):
    """A test server's request handler: ``reply`` sends one whole response, and nothing is
    logged on stderr (the test reads the responses)."""

    def reply(self, status: int, body: bytes, content_type: str | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


# --- the upstream: a tiny HTTP/1.1 server on the unix socket Nginx connects to ---


class AppHandler(QuietHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Gunicorn does behind Nginx

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"app": True, "path": self.path}).encode()
        self.reply(200, body, "application/json")

    do_GET = do_POST = do_DELETE = do_HEAD = answer


class UnixAppServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # socketserver's listen backlog is 5; under wrk, Nginx's connects beyond it fail with
    # EAGAIN and answer 502 (503 here). Gunicorn's is 2048: load measures Nginx, not this queue.
    request_queue_size = 2048


def serve_app(socket_path: str) -> UnixAppServer:
    """The app on the live slot's socket, in a thread; ``shutdown()`` and ``server_close()``
    it afterwards."""
    live = Path(socket_path)
    live.parent.mkdir(parents=True, exist_ok=True)
    app = UnixAppServer(str(live), AppHandler)
    live.chmod(0o666)  # Nginx's workers run as www-data, as on a host
    threading.Thread(target=app.serve_forever, daemon=True).start()
    return app


@contextlib.contextmanager
def clients_running(
    client: Callable[[threading.Event], None], count: int = 8, join_seconds: float = 15
) -> Iterator[list[threading.Thread]]:
    """``count`` threads each running ``client(stop)`` while the block runs; then ``stop`` is set
    and they are joined. Each client bounds itself in time and requests as well."""
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(stop,)) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield threads
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=join_seconds)
