"""bench.wrk: command lines, the load-target guard, and reading the WRK_* lines back; and once
against a real wrk and a loopback server, that the Lua scripts print what the parser reads."""

import http.server
import shutil
import ssl
import subprocess
import threading
import time
from typing import ClassVar

import pytest

from bench.timeline import parse_request_log
from bench.wrk import (
    CONNECT_ENV,
    SWITCH_SCRIPT,
    THROUGHPUT_SCRIPT,
    TargetNotAllowed,
    check_target,
    combined,
    parse_output,
    wrk_command,
)
from tests.loopback import QuietHandler

SUMMARY = (
    'WRK_SUMMARY {"requests": 1200, "duration_us": 10000000, "bytes": 5, "connect": 1, '
    '"read": 2, "write": 0, "timeout": 1, "status_over_399": 7, "latency_us": {"mean": 2100.5, '
    '"p50": 1800, "p90": 3500, "p99": 12400, "max": 40001}}'
)
RESULT = (
    'WRK_RESULT {"requests": 1200, "non2xx": 9, "connect": 1, "read": 2, "write": 0, '
    '"timeout": 1, "status": {"503": 9}, "releases": {"r1": 600, "r2": 582}, "p99_ms": 12.4}'
)


@pytest.mark.parametrize(
    "url", ["http://198.18.0.11/healthz", "http://198.19.255.1:80/", "http://127.0.0.1:8001/x"]
)
def test_load_may_go_to_test_hosts_and_loopback(url):
    assert check_target(url) == url


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/", "http://192.168.1.1/", "http://93.184.216.34/", "http://example.com/",
     "http://198.20.0.1/"],
)  # fmt: skip
def test_load_may_not_go_anywhere_else(url):
    with pytest.raises(TargetNotAllowed):
        check_target(url)


def test_wrk_command_is_bounded_and_can_run_inside_a_namespace():
    command = wrk_command(
        "http://198.18.0.11/healthz", threads=2, connections=16, seconds=10,
        script=THROUGHPUT_SCRIPT, script_args=("200000",), netns="ds-web-1",
    )  # fmt: skip
    assert command[:4] == ["ip", "netns", "exec", "ds-web-1"]
    assert command[4:8] == ["wrk", "-t2", "-c16", "-d10s"]
    assert command[-3:] == ["http://198.18.0.11/healthz", "--", "200000"]
    assert str(THROUGHPUT_SCRIPT) in command


def test_wrk_command_refuses_a_target_outside_the_test_hosts():
    with pytest.raises(TargetNotAllowed):
        wrk_command("http://10.1.2.3/", threads=1, connections=1, seconds=1, script=SWITCH_SCRIPT)


def test_parse_output_reads_summary_release_counts_and_failing_window():
    fig = parse_output(
        f"Running 10s test\n{RESULT}\n{SUMMARY}\nWRK_FAILING " + '{"first": 7, "last": 9}'
    )
    assert (fig.requests, fig.seconds, fig.rate) == (1200, 10.0, 120.0)
    assert fig.latency_ms == {"mean": 2.1, "p50": 1.8, "p90": 3.5, "p99": 12.4, "max": 40.0}
    assert fig.non2xx == 9 and fig.statuses == {"503": 9}
    assert fig.releases == {"r1": 600, "r2": 582}
    assert fig.socket_errors == 4
    assert fig.failed == 13  # load.lua's non-2xx count, not wrk's >399 one, plus socket errors
    assert fig.failing_window == (7, 9)
    data = fig.to_json()
    assert data["failed"] == 13 and data["requests_per_second"] == 120.0
    assert data["failing_window"] == [7, 9]


def test_parse_output_without_load_lua_counts_wrk_error_statuses():
    fig = parse_output(SUMMARY + '\nWRK_FAILING {"first": 0, "last": 0}')
    assert fig.non2xx is None and fig.failed == 7 + 4
    assert fig.failing_window is None


def test_parse_output_without_summary_says_what_wrk_printed():
    with pytest.raises(ValueError, match="unable to connect"):
        parse_output("unable to connect to 198.18.0.11:80 Connection refused\n")


def test_combined_adds_up_the_clients():
    a = parse_output(f"{SUMMARY}\n{RESULT}")
    b = parse_output(SUMMARY)
    assert combined({"keepalive": a, "close": b}) == {
        "requests": 2400, "failed": 13 + 11, "non2xx": 9 + 7, "socket_errors": 8,
    }  # fmt: skip


class Flaky(QuietHandler):
    """Answers like /healthz, with a 503 for requests 5 to 9."""

    protocol_version = "HTTP/1.1"
    seen = 0
    lock = threading.Lock()

    def do_GET(self):
        with Flaky.lock:
            Flaky.seen += 1
            n = Flaky.seen
        body = b'{"status": "ok", "release": "20260101000000-abcdef0"}'
        self.reply(503 if 5 <= n < 10 else 200, body)


@pytest.fixture
def loopback_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


needs_wrk = pytest.mark.skipif(
    not shutil.which("wrk"), reason="wrk is not installed (bin/setup installs it)"
)


@needs_wrk
@pytest.mark.parametrize(
    ("script", "args"), [(SWITCH_SCRIPT, ("keepalive", "5", "20")), (THROUGHPUT_SCRIPT, ("20",))]
)
def test_the_lua_scripts_print_what_parse_output_reads(loopback_server, script, args):
    Flaky.seen = 0
    command = wrk_command(
        loopback_server, threads=1, connections=1, seconds=2, script=script, script_args=args
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    fig = parse_output(done.stdout)
    assert fig.requests >= 20  # the cap stops the thread; wrk counts what it had sent
    assert fig.status_over_399 == 5
    if script == SWITCH_SCRIPT:
        assert fig.non2xx == 5 and fig.statuses == {"503": 5}
        assert fig.releases == {"20260101000000-abcdef0": 20}
        assert fig.failing_window and fig.failing_window[0] <= fig.failing_window[1]


@needs_wrk
@pytest.mark.parametrize("kind", ["keepalive", "close"])
def test_the_request_log_has_a_line_per_request_wrk_counted(loopback_server, tmp_path, kind):
    """Two threads of one connection each, as bench/load.py runs them; the first thread's
    extra request() call (wrk checks the script with it) must not show as a lost request."""
    Flaky.seen = 0
    log = tmp_path / "requests.log"
    started = time.time()
    command = wrk_command(
        loopback_server, threads=2, connections=2, seconds=3, script=SWITCH_SCRIPT,
        script_args=(kind, "5", "15", str(log)),
    )  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    fig = parse_output(done.stdout)
    requests = parse_request_log(log.read_text())
    answered = [r for r in requests if r.status]
    assert len(answered) == fig.requests  # one line per response wrk counted
    assert sum(r.status == 503 for r in answered) == fig.non2xx
    if kind == "keepalive":  # nothing is lost on a kept-alive connection to a healthy server
        assert len(requests) == 30 and not [r for r in requests if not r.status]
        assert fig.non2xx == 5
    assert all(started * 1000 <= r.at_ms <= time.time() * 1000 for r in requests)
    assert all(0 < r.latency_ms < 1000 for r in answered)


def test_a_connect_address_is_checked_and_handed_to_the_lua_script():
    command = wrk_command(
        "https://app.dropstack.test/", threads=4, connections=4, seconds=60,
        script=SWITCH_SCRIPT, script_args=("close", "25", "2400"), connect="198.18.0.11",
    )  # fmt: skip
    assert command[:2] == ["env", f"{CONNECT_ENV}=198.18.0.11"]
    assert command[2:6] == ["wrk", "-t4", "-c4", "-d60s"]
    assert "https://app.dropstack.test/" in command


@pytest.mark.parametrize(
    ("url", "connect", "script"),
    [
        ("https://app.dropstack.test/", "10.0.0.5", SWITCH_SCRIPT),
        ("https://app.dropstack.test/", "app.dropstack.test", SWITCH_SCRIPT),
        ("https://app.dropstack.test/", "198.18.0.11", THROUGHPUT_SCRIPT),
        ("https://app.dropstack.test/", None, SWITCH_SCRIPT),
    ],
)
def test_a_named_url_needs_a_test_address_to_connect_to(url, connect, script):
    with pytest.raises(ValueError):
        wrk_command(url, threads=1, connections=1, seconds=1, script=script, connect=connect)


class Named(QuietHandler):
    """Answers like /healthz and remembers the Host headers it was sent."""

    protocol_version = "HTTP/1.1"
    hosts: ClassVar[list[str]] = []

    def do_GET(self):
        Named.hosts.append(self.headers.get("Host", ""))
        self.reply(200, b'{"status": "ok", "release": "20260101000000-abcdef0"}')


@needs_wrk
def test_https_load_sends_the_domain_as_sni_and_host_to_the_given_address(tmp_path):
    """What the renewal benchmark relies on, on loopback: a URL naming a domain nothing
    resolves, the connection to 127.0.0.1, and the domain in the handshake and the header.
    (Kept alive: Python's TLS server closes without close_notify, which wrk counts as a read
    error on every connection-per-request; Nginx does not.)"""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=app.dropstack.test", "-keyout", str(key),
         "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    Named.hosts = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Named)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        command = wrk_command(
            f"https://app.dropstack.test:{port}", threads=1, connections=1, seconds=2,
            script=SWITCH_SCRIPT, script_args=("keepalive", "5", "6"), connect="127.0.0.1",
        )  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    finally:
        server.shutdown()
        server.server_close()
    fig = parse_output(done.stdout)
    assert fig.requests >= 6 and fig.failed == 0, done.stdout
    assert names and set(names) == {"app.dropstack.test"}
    assert set(Named.hosts) == {f"app.dropstack.test:{port}"}
