"""Deploy notifications (one webhook POST per deploy, rollback or failure) and the pre-deploy hook.

Configured through Fabric config, ``dropstack.notify`` and ``dropstack.hooks`` (defaults in
``CONFIG_DEFAULTS``; ``FABRIC_DROPSTACK_NOTIFY_WEBHOOK_URL`` sets the URL from the environment):

- ``notify.webhook_url``: where events are POSTed as JSON; unset, nothing is sent.
- ``notify.timeout_seconds`` / ``notify.attempts``: each attempt's timeout and how many attempts
  (tenacity, exponential back-off). A webhook that keeps failing never fails the deploy: it is
  a warning line, and the URL is shown only as scheme and host (Slack-style URLs are secrets).
- ``hooks.pre_deploy``: a local command as argv tokens, run before any host is contacted; a
  non-zero exit stops the deploy with one line naming the hook and its last output line.

Dry-runs send nothing and run no hook. The pure parts (settings, the event body, the outcome of
a run) are apart from the two functions that touch the world (``post_event``, ``run_hook``).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import tenacity
from invoke.exceptions import Exit

from deploy import settings_checks
from deploy.steps import say

ACTIONS = ("deploy", "rollback")
# Exit code of an interrupted release task (deploy.release.rollout.INTERRUPTED_EXIT).
INTERRUPTED_EXIT = 130
CONFIG_DEFAULTS: dict[str, Any] = {
    "dropstack": {
        # Keys must exist for Invoke to map FABRIC_DROPSTACK_NOTIFY_* variables onto them.
        "notify": {"webhook_url": None, "timeout_seconds": 5, "attempts": 3},
        "hooks": {"pre_deploy": [], "timeout_seconds": 600},
    }
}
# Seconds between attempts grow 1, 2, 4... up to this; with the defaults a dead webhook costs
# at most 3 x 5 s + 1 s + 2 s.
MAX_BACKOFF_SECONDS = 8


class NotifyError(ValueError):
    """A notify or hook setting is not allowed; ``str()`` is one line naming the key."""


@dataclass(frozen=True)
class NotifySettings:
    webhook_url: str | None = None
    timeout_seconds: float = 5
    attempts: int = 3
    pre_deploy: tuple[str, ...] = ()
    hook_timeout_seconds: float = 600

    @classmethod
    def from_config(cls, dropstack: Mapping[str, Any] | None) -> NotifySettings:
        """From the ``dropstack`` section of a Fabric config (plain data); unknown keys are
        errors, as everywhere in ``dropstack.*``."""
        section = dict(dropstack or {})
        notify, hooks = dict(section.get("notify") or {}), dict(section.get("hooks") or {})
        for name, values, known in (
            ("notify", notify, CONFIG_DEFAULTS["dropstack"]["notify"]),
            ("hooks", hooks, CONFIG_DEFAULTS["dropstack"]["hooks"]),
        ):
            unknown = sorted(set(values) - set(known))
            if unknown:
                raise NotifyError(
                    f"dropstack.{name}.{unknown[0]}: not a setting; known: {', '.join(known)}"
                )
        url = notify.get("webhook_url") or None
        if url is not None and not _http_url(url):
            raise NotifyError(
                "dropstack.notify.webhook_url: must be an http:// or https:// URL with a host"
            )
        timeout = notify.get("timeout_seconds", 5)
        attempts = notify.get("attempts", 3)
        hook = hooks.get("pre_deploy") or []
        hook_timeout = hooks.get("timeout_seconds", 600)
        if not _number_in(timeout, 0.1, 60):
            raise NotifyError(f"dropstack.notify.timeout_seconds: {timeout!r}; allowed: 0.1..60")
        if not (
            isinstance(attempts, int) and not isinstance(attempts, bool) and 1 <= attempts <= 10
        ):
            raise NotifyError(f"dropstack.notify.attempts: {attempts!r}; allowed: 1..10")
        if isinstance(hook, str) or not all(isinstance(t, str) and t for t in hook):
            raise NotifyError(
                "dropstack.hooks.pre_deploy: must be a list of argv tokens, such as "
                '["make", "check"] (a string would need a shell to split it)'
            )
        if not _number_in(hook_timeout, 1, 86400):
            raise NotifyError(
                f"dropstack.hooks.timeout_seconds: {hook_timeout!r}; allowed: 1..86400"
            )
        return cls(url, timeout, attempts, tuple(hook), hook_timeout)

    @property
    def webhook_host(self) -> str:
        """The webhook as it may be printed: scheme and host only, never the path or query."""
        if not self.webhook_url:
            return ""
        parts = urllib.parse.urlsplit(self.webhook_url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def settings_of(c) -> NotifySettings:
    """The settings of a task's context; a bad value ends the task with its one line."""
    try:
        return NotifySettings.from_config(settings_checks.plain(c.config.get("dropstack")))
    except NotifyError as exc:
        raise Exit(f"dropstack: {exc}", code=1) from None


def _http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _number_in(value: object, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


# --- events (pure) ---


@dataclass
class Event:
    """What one release run reports: filled in by the task as it learns it."""

    action: str
    hosts: list[str] = field(default_factory=list)
    release: str = ""
    revision: str = ""
    deployer: str = field(default_factory=lambda: f"{getpass.getuser()}@{socket.gethostname()}")

    def update(self, **values: Any) -> None:
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise TypeError(f"Event has no field {name!r}")
            setattr(self, name, value)


def outcome_of(error: BaseException | None) -> tuple[str, str]:
    """(outcome, detail) of a run that ended with ``error`` (None: it succeeded)."""
    if error is None:
        return "ok", ""
    if isinstance(error, Exit):
        outcome = "interrupted" if error.code == INTERRUPTED_EXIT else "failed"
        lines = str(error.message or "").strip().splitlines()
        return outcome, lines[-1] if lines else ""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", "interrupted"
    return "failed", f"{type(error).__name__}: {error}"


def event_body(
    event: Event, outcome: str, detail: str, duration: float, now: datetime | None = None
) -> dict[str, Any]:
    """The JSON a webhook receives. ``event`` is the action when it went well, else
    ``failure`` (a failed or interrupted deploy or rollback), so receivers can route on it."""
    if event.action not in ACTIONS:
        raise ValueError(f"action: {event.action!r} is not one of {', '.join(ACTIONS)}")
    return {
        "event": event.action if outcome == "ok" else "failure",
        "action": event.action,
        "hosts": list(event.hosts),
        "release": event.release or None,
        "revision": event.revision or None,
        "outcome": outcome,
        "detail": detail,
        "duration_seconds": round(duration, 1),
        "deployer": event.deployer,
        "time": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }


# --- sending (the one place that talks to the webhook) ---


# Only http: and https: can be opened, whatever a URL says (no file:, ftp: or data: handler),
# and redirects are not followed: a webhook that moved is reported, not chased with the body.
_OPENER = urllib.request.OpenerDirector()
for _handler in (
    urllib.request.ProxyHandler(),
    urllib.request.HTTPHandler(),
    urllib.request.HTTPSHandler(),
    urllib.request.HTTPDefaultErrorHandler(),
    urllib.request.HTTPErrorProcessor(),
):
    _OPENER.add_handler(_handler)


class _Retryable(Exception):
    """An attempt failed in a way a later attempt may not (network, timeout, 5xx, 429)."""


def _post_once(url: str, body: bytes, timeout: float) -> None:
    request = urllib.request.Request(  # noqa: S310  (the scheme is checked: http or https)
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "dropstack-deploy"},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code}") from None
        raise  # 4xx: the request is wrong; sending it again changes nothing
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(str(reason) or type(exc).__name__) from None


def post_event(
    settings: NotifySettings, body: dict[str, Any], sleep: Callable[[float], None] = time.sleep
) -> str | None:
    """POST ``body`` to the webhook, with bounded retries. Returns None when it was delivered,
    else the one-line reason; never raises (a notification never fails a deploy)."""
    data = json.dumps(body, sort_keys=True).encode()
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(settings.attempts),
        wait=tenacity.wait_exponential(multiplier=1, max=MAX_BACKOFF_SECONDS),
        retry=tenacity.retry_if_exception_type(_Retryable),
        sleep=sleep,
        reraise=True,
    )
    try:
        retrying(_post_once, settings.webhook_url, data, settings.timeout_seconds)
    except _Retryable as exc:
        return f"failed after {settings.attempts} attempts ({exc})"
    except urllib.error.HTTPError as exc:
        return f"refused the event (HTTP {exc.code})"
    except Exception as exc:  # a notification never fails the deploy, whatever went wrong
        return f"failed ({type(exc).__name__}: {exc})"
    return None


def notify(settings: NotifySettings, body: dict[str, Any]) -> bool:
    """Send one event if a webhook is configured; print one line either way it went."""
    if not settings.webhook_url:
        return False
    problem = post_event(settings, body)
    if problem:
        action = body["action"]
        say(f"warning: webhook {settings.webhook_host} {problem}; the {action} is not affected")
        return False
    say(f"notified {settings.webhook_host}: {body['event']} ({body['outcome']})")
    return True


@contextmanager
def announce(c, action: str, dry_run: bool, **known: Any) -> Iterator[Event]:
    """Around a release task's body: when it ends, however it ends, one event is sent (none
    for a dry-run). The body fills in the event (hosts, release, revision) as it learns them."""
    settings = settings_of(c)
    event = Event(action)
    event.update(**known)
    started = time.monotonic()
    try:
        yield event
    except BaseException as exc:
        if not dry_run:
            notify(settings, event_body(event, *outcome_of(exc), time.monotonic() - started))
        raise
    if not dry_run:
        notify(settings, event_body(event, *outcome_of(None), time.monotonic() - started))


# --- the pre-deploy hook ---


class HookFailed(Exception):
    """The pre-deploy hook failed; ``str()`` is one line naming it and its last output line."""


def hook_environment(revision: str, hosts: str, base: Mapping[str, str] | None = None) -> dict:
    """The hook's environment: the caller's, plus what it may want to check."""
    env = dict(os.environ if base is None else base)
    env.update({"DROPSTACK_ACTION": "deploy", "DROPSTACK_REVISION": revision})
    env["DROPSTACK_HOSTS"] = hosts
    return env


def run_hook(argv: tuple[str, ...], timeout: float, env: Mapping[str, str]) -> None:
    """Run the hook locally, without a shell (the tokens are the argv). Its output (stdout and
    stderr together) is captured, so the one-line failure can quote its last line."""
    shown = " ".join(argv)
    try:
        result = subprocess.run(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            env=dict(env),
            check=False,
        )
    except FileNotFoundError:
        raise HookFailed(f"pre-deploy hook `{shown}`: {argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise HookFailed(f"pre-deploy hook `{shown}`: still running after {timeout:g}s") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        last = lines[-1] if lines else "no output"
        raise HookFailed(f"pre-deploy hook `{shown}` exited {result.returncode}: {last}")


def pre_deploy_hook(c, dry_run: bool, revision: str, hosts: str = "") -> None:
    """The configured pre-deploy hook, before any host is contacted; a failure ends the task
    with its one line. A dry-run only says what would run."""
    settings = settings_of(c)
    if not settings.pre_deploy:
        return
    shown = " ".join(settings.pre_deploy)
    if dry_run:
        say(f"pre-deploy hook `{shown}`: not run (dry run)")
        return
    started = time.monotonic()
    try:
        run_hook(
            settings.pre_deploy,
            settings.hook_timeout_seconds,
            hook_environment(revision, hosts),
        )
    except HookFailed as exc:
        raise Exit(f"dropstack: {exc}; nothing was deployed", code=1) from None
    say(f"pre-deploy hook `{shown}` ok ({time.monotonic() - started:.1f}s)")
