"""Deploy notifications and the pre-deploy hook, against a webhook receiver on loopback.

The receiver is ``http.server`` in a thread on 127.0.0.1, counting the events it gets and
answering as each test tells it (ok, 5xx, 4xx, a redirect, too slow). The release tasks
themselves run up to the point where they would need a host: with an inventory that does not
exist, so a run fails before any host is contacted, which is exactly a failure event. A whole
deploy needs a droplet (the lead runs those end to end).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fabric import Config
from invoke import Context
from invoke.exceptions import Exit

from deploy import notify
from deploy.notify import (
    CONFIG_DEFAULTS,
    Event,
    HookFailed,
    NotifyError,
    NotifySettings,
    event_body,
    hook_environment,
    outcome_of,
    post_event,
    run_hook,
)
from deploy.release import tasks as release_tasks

NOW = datetime(2026, 12, 3, 14, 0, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """What the webhook received, and how it answers: ``answers`` are status codes used in
    order (the last repeats); ``delay`` seconds before answering."""

    port: int = 0
    events: list[dict] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    answers: list[int] = field(default_factory=lambda: [204])
    delay: float = 0.0

    def url(self, path: str = "/hooks/T000/B000/secret-token") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                got.events.append(json.loads(body))
                got.paths.append(self.path)
                status = got.answers[min(len(got.events), len(got.answers)) - 1]
            time.sleep(got.delay)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):  # quiet: the test reads what was received
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    got.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def settings(url: str | None, **values) -> NotifySettings:
    return NotifySettings.from_config({"notify": {"webhook_url": url, **values}})


def no_sleep(seconds: float) -> None:
    pass


def deploy_event(**values) -> dict:
    event = Event("deploy", hosts=["web-1", "web-2"], release="20261203140000-abcdef1")
    revision = "abcdef1234567"  # pragma: allowlist secret
    event.update(revision=revision, deployer="ana@laptop", **values)
    return event_body(event, "ok", "", 12.34, NOW)


# --- the event body (pure) ---


def test_event_body_has_every_field() -> None:
    assert deploy_event() == {
        "event": "deploy",
        "action": "deploy",
        "hosts": ["web-1", "web-2"],
        "release": "20261203140000-abcdef1",
        "revision": "abcdef1234567",
        "outcome": "ok",
        "detail": "",
        "duration_seconds": 12.3,
        "deployer": "ana@laptop",
        "time": "2026-12-03T14:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, ("ok", "")),
        (Exit("dropstack: web-1: switch: /readyz answered 503", code=1),
         ("failed", "dropstack: web-1: switch: /readyz answered 503")),
        (Exit("dropstack: deploy interrupted; locks released", 130),
         ("interrupted", "dropstack: deploy interrupted; locks released")),
        (KeyboardInterrupt(), ("interrupted", "interrupted")),
        (RuntimeError("boom"), ("failed", "RuntimeError: boom")),
    ],
)  # fmt: skip
def test_outcome_of_a_run(error, expected) -> None:
    assert outcome_of(error) == expected


def test_a_failed_or_interrupted_run_is_a_failure_event() -> None:
    event = Event("rollback", hosts=["web-1"])
    assert event_body(event, "failed", "x", 1, NOW)["event"] == "failure"
    assert event_body(event, "interrupted", "x", 1, NOW)["event"] == "failure"
    assert event_body(event, "ok", "", 1, NOW)["event"] == "rollback"
    assert event_body(Event("deploy"), "ok", "", 1, NOW)["release"] is None


# --- sending, against the loopback receiver ---


def test_an_event_is_posted_once(receiver: Receiver) -> None:
    assert post_event(settings(receiver.url()), deploy_event(), no_sleep) is None
    assert receiver.events == [deploy_event()]


def test_a_failing_webhook_is_retried_then_delivered(receiver: Receiver) -> None:
    receiver.answers = [500, 503, 200]
    slept: list[float] = []
    assert post_event(settings(receiver.url()), deploy_event(), slept.append) is None
    assert len(receiver.events) == 3
    assert slept == [1, 2]  # exponential back-off between the attempts


def test_retries_are_bounded(receiver: Receiver) -> None:
    receiver.answers = [500]
    problem = post_event(settings(receiver.url(), attempts=4), deploy_event(), no_sleep)
    assert problem == "failed after 4 attempts (HTTP 500)"
    assert len(receiver.events) == 4


@pytest.mark.parametrize(("status", "problem"), [(404, "HTTP 404"), (302, "HTTP 302")])
def test_a_refusal_or_redirect_is_not_retried(receiver: Receiver, status: int, problem) -> None:
    # A redirect is not followed: the event would go to an address nobody configured.
    receiver.answers = [status]
    assert post_event(settings(receiver.url()), deploy_event(), no_sleep) == (
        f"refused the event ({problem})"
    )
    assert len(receiver.events) == 1


def test_a_slow_webhook_times_out_within_the_bound(receiver: Receiver) -> None:
    receiver.delay = 1.5
    chosen = settings(receiver.url(), timeout_seconds=0.2, attempts=2)
    started = time.monotonic()
    problem = post_event(chosen, deploy_event(), no_sleep)
    took = time.monotonic() - started
    assert problem is not None and problem.startswith("failed after 2 attempts")
    assert took < 1.2, took


def test_an_unreachable_webhook_is_a_warning_not_an_error(capsys) -> None:
    # A port nothing listens on (bound, then closed) on loopback.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    chosen = settings(f"http://127.0.0.1:{port}/secret-path?token=t0ps3cret", attempts=2)
    assert notify.notify(chosen, deploy_event()) is False
    out = capsys.readouterr().out
    assert out.startswith(f"warning: webhook http://127.0.0.1:{port} failed after 2 attempts")
    assert out.endswith("the deploy is not affected\n") and out.count("\n") == 1
    assert "secret" not in out and "t0ps3cret" not in out


def test_no_webhook_sends_nothing(receiver: Receiver, capsys) -> None:
    assert notify.notify(settings(None), deploy_event()) is False
    assert receiver.events == [] and capsys.readouterr().out == ""


# --- settings ---


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"notify": {"webhook_url": "ftp://x.example/"}}, r"^dropstack.notify.webhook_url: must"),
        ({"notify": {"webhook_url": "file:///etc/passwd"}}, r"^dropstack.notify.webhook_url: "),
        ({"notify": {"webhok_url": "http://x"}}, r"^dropstack.notify.webhok_url: not a setting"),
        ({"notify": {"attempts": 0}}, r"^dropstack.notify.attempts: 0; allowed: 1..10"),
        ({"notify": {"timeout_seconds": 600}}, r"^dropstack.notify.timeout_seconds: 600"),
        ({"hooks": {"pre_deploy": "make check"}}, r"^dropstack.hooks.pre_deploy: must be a list"),
        ({"hooks": {"pre_deploy": ["make", ""]}}, r"^dropstack.hooks.pre_deploy: must be a list"),
    ],
)
def test_bad_settings_are_one_line_errors(section: dict, error: str) -> None:
    with pytest.raises(NotifyError, match=error):
        NotifySettings.from_config(section)


def test_the_webhook_url_comes_from_the_environment(monkeypatch) -> None:
    # Invoke maps FABRIC_* variables only onto keys that exist: CONFIG_DEFAULTS provides them
    # (deploy/tasks.py registers them with namespace.configure).
    monkeypatch.setenv("FABRIC_DROPSTACK_NOTIFY_WEBHOOK_URL", "https://hooks.example.com/x")
    config = Config()
    config.load_collection(CONFIG_DEFAULTS)
    config.load_shell_env()
    chosen = notify.settings_of(Context(config=config))
    assert chosen.webhook_url == "https://hooks.example.com/x"
    assert chosen.webhook_host == "https://hooks.example.com"
    assert (chosen.attempts, chosen.timeout_seconds, chosen.pre_deploy) == (3, 5, ())


# --- the pre-deploy hook ---


def test_a_hook_that_passes() -> None:
    run_hook(
        ("sh", "-c", 'test "$DROPSTACK_REVISION" = abc123'), 10, hook_environment("abc123", "")
    )


@pytest.mark.parametrize(
    ("argv", "timeout", "error"),
    [
        (("sh", "-c", "echo checking; echo 'tests failed: 3' >&2; exit 4"), 10,
         "pre-deploy hook `sh -c echo checking; echo 'tests failed: 3' >&2; exit 4` exited 4: "
         "tests failed: 3"),
        (("false",), 10, "pre-deploy hook `false` exited 1: no output"),
        (("/nonexistent/check",), 10, "pre-deploy hook `/nonexistent/check`: /nonexistent/check "
         "not found"),
        (("sleep", "5"), 0.3, "pre-deploy hook `sleep 5`: still running after 0.3s"),
    ],
)  # fmt: skip
def test_a_failing_hook_is_one_line(argv, timeout, error) -> None:
    with pytest.raises(HookFailed) as raised:
        run_hook(argv, timeout, hook_environment("abc123", ""))
    assert str(raised.value) == error


# --- the call sites: the real release tasks, up to the first host ---


def git_repo(path: Path) -> Path:
    """A clean one-commit repository for the deploy to read its revision from."""
    path.mkdir()
    for args in (
        ["init", "-q"],
        ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q",
         "--allow-empty", "-m", "one"],
    ):  # fmt: skip
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)
    return path


def context(tmp_path: Path, url: str, hook: list[str] | None = None) -> Context:
    config = Config(
        overrides={
            "dropstack": {
                "release": {"source": str(git_repo(tmp_path / "source"))},
                "notify": {"webhook_url": url, "attempts": 1},
                "hooks": {"pre_deploy": hook or []},
            }
        }
    )
    return Context(config=config)


@pytest.mark.parametrize("task", ["deploy", "rollback"])
def test_a_run_that_fails_sends_one_failure_event(tmp_path, receiver: Receiver, task) -> None:
    c = context(tmp_path, receiver.url())
    missing = str(tmp_path / "no-inventory.json")
    with pytest.raises(Exit, match="no inventory there"):
        getattr(release_tasks, task)(c, inventory=missing)
    (event,) = receiver.events
    assert (event["event"], event["action"], event["outcome"]) == ("failure", task, "failed")
    assert "no inventory there" in event["detail"] and event["hosts"] == []
    if task == "deploy":
        assert event["revision"] and len(event["revision"]) == 40


@pytest.mark.parametrize("task", ["deploy", "rollback"])
def test_a_dry_run_sends_nothing(tmp_path, receiver: Receiver, task) -> None:
    c = context(tmp_path, receiver.url())
    with pytest.raises(Exit):
        getattr(release_tasks, task)(c, inventory=str(tmp_path / "none.json"), dry_run=True)
    assert receiver.events == []


def test_a_failing_pre_deploy_hook_stops_the_deploy_before_any_host(tmp_path, receiver) -> None:
    marker = tmp_path / "hook-ran"
    hook = ["sh", "-c", f'touch {marker}; echo "lint: 2 errors" >&2; exit 2']
    c = context(tmp_path, receiver.url(), hook)
    # The inventory is missing: had the deploy gone on to the hosts, that would be the error.
    with pytest.raises(Exit) as raised:
        release_tasks.deploy(c, inventory=str(tmp_path / "none.json"))
    message = str(raised.value.message)
    assert message == (
        f"dropstack: pre-deploy hook `{' '.join(hook)}` exited 2: lint: 2 errors; "
        "nothing was deployed"
    )
    assert marker.exists()
    (event,) = receiver.events
    assert event["event"] == "failure" and "pre-deploy hook" in event["detail"]


def test_a_dry_run_does_not_run_the_hook(tmp_path, receiver, capsys) -> None:
    marker = tmp_path / "hook-ran"
    c = context(tmp_path, receiver.url(), ["touch", str(marker)])
    with pytest.raises(Exit, match="no inventory there"):
        release_tasks.deploy(c, inventory=str(tmp_path / "none.json"), dry_run=True)
    assert not marker.exists() and receiver.events == []
    assert f"pre-deploy hook `touch {marker}`: not run (dry run)" in capsys.readouterr().out


def test_announce_sends_one_event_for_a_run_that_went_well(receiver: Receiver) -> None:
    # What deploy's block does when every host switched: no exception, one "deploy" event.
    c = Context(config=Config(overrides={"dropstack": {"notify": {"webhook_url": receiver.url()}}}))
    with notify.announce(c, "deploy", False, revision="abc") as event:
        event.update(hosts=["web-1"], release="20261203140000-abcdef1")
    (got,) = receiver.events
    assert (got["event"], got["outcome"], got["hosts"], got["revision"]) == (
        "deploy", "ok", ["web-1"], "abc",
    )  # fmt: skip
    assert receiver.paths == ["/hooks/T000/B000/secret-token"]
