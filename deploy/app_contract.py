"""The app contract (``dropstack.app``): what dropstack needs to know about the app it deploys:
its entry point and server, requirements, migrations, static files, health paths, workers and
scheduled jobs. Defaults match the sample app; docs/app-contract.md documents every key."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploy import settings_checks as check
from deploy.settings_checks import SettingsError

# --- the app contract: what dropstack needs to know about the app it deploys ---

# Gunicorn's worker class for ASGI apps (server "gunicorn+uvicorn").
UVICORN_WORKER = "uvicorn.workers.UvicornWorker"
SERVERS = ("gunicorn", "gunicorn+uvicorn")
# Named migration commands; anything else must be a `python ...` command of the release.
MIGRATIONS = {
    "alembic": "python -m app.manage migrate",
    "django": "python app/manage.py migrate --noinput",
    "none": None,
}
_ENTRY_POINT = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
)
_SERVER_CONFIG = re.compile(r"(python:[A-Za-z_][A-Za-z0-9_.]*|[A-Za-z0-9_][A-Za-z0-9_./-]*\.py)?")
_RELATIVE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]*")
_URL_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
# A command's arguments after `python`: pasted into ExecStart=, so no quotes, '$', '%', ';'.
_ARGUMENT = re.compile(r"[A-Za-z0-9._:/=@,+-]+")
# OnCalendar= characters; systemd-analyze (tests) judges the expression itself.
_CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ -]{1,80}")
_JOB_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")


@dataclass(frozen=True)
class ScheduledJob:
    """One scheduled job of the contract: a systemd timer and its oneshot service."""

    name: str
    schedule: str  # systemd OnCalendar=
    command: str  # `python ...`, run by the live release's interpreter
    timeout: int = 3600

    @property
    def arguments(self) -> tuple[str, ...]:
        """The command after ``python``: run by the live release's own interpreter."""
        return tuple(self.command.split()[1:])


@dataclass(frozen=True, kw_only=True)
class AppContract:
    """The app contract (Fabric config ``dropstack.app``, ``FABRIC_DROPSTACK_APP_*``): how the
    app in app/ is served, migrated, checked and run in the background. The defaults describe
    dropstack's own Flask sample app; docs/app-contract.md shows other shapes."""

    entry_point: str = check.doc("app.wsgi:app", "The WSGI or ASGI callable, module:attribute.")
    server: str = check.doc(
        "gunicorn",
        "gunicorn (WSGI) or gunicorn+uvicorn (ASGI: Gunicorn with uvicorn.workers.UvicornWorker).",
    )
    server_config: str = check.doc(
        "python:app.gunicorn_conf",
        "Gunicorn's -c: python:MODULE or a .py path in the release; '': none, the unit's "
        "own flags (graceful timeout, JSON-free access log on stdout) are enough.",
    )
    requirements: str = check.doc(
        "app/requirements.txt", "The pinned runtime requirements the release's wheelhouse holds."
    )
    archive_paths: tuple[str, ...] = check.doc(
        ("app",),
        "What of the repository a host gets (git archive paths); a string may list "
        "several, separated by spaces.",
    )
    migrate: str = check.doc(
        "alembic",
        "alembic (python -m app.manage migrate), django (python app/manage.py migrate "
        "--noinput), none, or any `python ...` command run from the release.",
    )
    static_dir: str = check.doc("app/static", "The static files Nginx serves at /static/.")
    liveness_path: str = check.doc("/healthz", "Answers 200 while the process is up.")
    readiness_path: str = check.doc(
        "/readyz",
        "Answers 200 when the app can serve (database reachable, schema at head); "
        "the deploy's health gate.",
    )
    worker_count: int = check.doc(
        0, "Background worker processes per host, run from the live slot's release (0: none)."
    )
    worker_command: str = check.doc(
        "python -m app.worker", "The worker process (an RQ worker for the sample app)."
    )
    worker_stop_timeout: int = check.doc(
        60, "Seconds a stopping worker has to finish the job in hand before it is killed."
    )
    schedules: tuple[ScheduledJob, ...] = check.doc(
        (),
        "Scheduled jobs, name -> {schedule (a systemd OnCalendar value), command ('python ...'), "
        "timeout (seconds)}; run on the stack's first web host only, from the live release.",
    )

    def __post_init__(self) -> None:
        if isinstance(self.archive_paths, str):
            object.__setattr__(self, "archive_paths", tuple(self.archive_paths.split()))
        problems = _contract_problems(self)
        if problems:
            raise SettingsError(problems[0])

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AppContract:
        """From plain data (``dropstack.app``); unknown keys are errors, like HostSettings'."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(
                f"app.{unknown[0]}: not a setting; known: {', '.join(sorted(known))}"
            )
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if "schedules" in converted:
            converted["schedules"] = _schedules(converted["schedules"])
        return cls(**converted)

    @property
    def worker_class(self) -> str | None:
        """Gunicorn's -k for the server, None for Gunicorn's configured default."""
        return UVICORN_WORKER if self.server == "gunicorn+uvicorn" else None

    @property
    def migration_arguments(self) -> tuple[str, ...] | None:
        """The migration command after ``python``; None when the app has none."""
        command = MIGRATIONS.get(self.migrate, self.migrate)
        return None if command is None else tuple(command.split()[1:])

    @property
    def worker_arguments(self) -> tuple[str, ...]:
        return tuple(self.worker_command.split()[1:])

    @property
    def has_workers(self) -> bool:
        return self.worker_count > 0


def _schedules(value: Any) -> Any:
    """``{name: {schedule, command[, timeout]}}`` as ScheduledJobs, sorted by name."""
    if isinstance(value, tuple) and all(isinstance(j, ScheduledJob) for j in value):
        return value
    if not hasattr(value, "items"):
        raise SettingsError(
            f"app.schedules: {value!r} is not allowed; a mapping name -> "
            "{schedule, command, timeout}"
        )
    jobs = []
    for name, job in sorted(value.items()):
        job = dict(job) if hasattr(job, "items") else {}
        extra = sorted(set(job) - {"schedule", "command", "timeout"})
        if extra or not {"schedule", "command"} <= set(job):
            raise SettingsError(
                f"app.schedules.{name}: needs schedule and command (and may have timeout)"
                + (f"; {extra[0]} is not a key" if extra else "")
            )
        jobs.append(
            ScheduledJob(str(name), job["schedule"], job["command"], job.get("timeout", 3600))
        )
    return tuple(jobs)


def _python_command(value: object) -> bool:
    """`python` followed by safe arguments: run by the release's own virtualenv."""
    if not isinstance(value, str):
        return False
    words = value.split()
    return (
        len(words) >= 2
        and words[0] == "python"
        and all(check.full(_ARGUMENT, w) for w in words[1:])
    )


def _contract_problems(a: AppContract) -> list[str]:
    problems = []

    def need(ok: bool, name: str, allowed: str) -> None:
        if not ok:
            problems.append(f"app.{name}: {getattr(a, name)!r} is not allowed; {allowed}")

    need(check.full(_ENTRY_POINT, a.entry_point), "entry_point", "module.path:attribute")
    need(a.server in SERVERS, "server", " or ".join(SERVERS))
    need(
        check.full(_SERVER_CONFIG, a.server_config),
        "server_config",
        "python:<module>, a .py path or ''",
    )
    for name in ("requirements", "static_dir"):
        need(_relative(getattr(a, name)), name, "a path inside the repository")
    need(
        isinstance(a.archive_paths, tuple)
        and len(a.archive_paths) > 0
        and all(_relative(p) for p in a.archive_paths),
        "archive_paths",
        "one or more paths inside the repository",
    )
    need(
        a.migrate in MIGRATIONS or _python_command(a.migrate),
        "migrate",
        f"{', '.join(MIGRATIONS)} or a command starting with python",
    )
    for name in ("liveness_path", "readiness_path"):
        need(check.full(_URL_PATH, getattr(a, name)), name, "a URL path such as /healthz")
    need(check.int_in(a.worker_count, 0, 64), "worker_count", "0..64")
    need(_python_command(a.worker_command), "worker_command", "a command starting with python")
    need(check.int_in(a.worker_stop_timeout, 1, 86400), "worker_stop_timeout", "1..86400 seconds")
    for job in a.schedules if isinstance(a.schedules, tuple) else ():
        where = f"app.schedules.{job.name}"
        if not check.full(_JOB_NAME, job.name):
            problems.append(f"{where}: the name is not allowed; lowercase letters, digits, '-'")
        elif not check.full(_CALENDAR, job.schedule):
            problems.append(f"{where}.schedule: {job.schedule!r} is not a systemd OnCalendar value")
        elif not _python_command(job.command):
            problems.append(f"{where}.command: {job.command!r} must start with python")
        elif not check.int_in(job.timeout, 1, 86400):
            problems.append(f"{where}.timeout: {job.timeout!r} is not allowed; 1..86400 seconds")
    return problems


def _relative(value: object) -> bool:
    return check.full(_RELATIVE_PATH, value) and ".." not in str(value).split("/")


def app_section(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The app contract's values (``dropstack.app``) from a Fabric config, as plain data."""
    section = check.plain((config or {}).get("dropstack") or {})
    return dict(section.get("app") or {})


def app_contract(config: Mapping[str, Any] | None, inventory: Any = None) -> AppContract:
    """The app contract, for what needs no host (the release build, the benchmarks); with the
    target's inventory also checked against it: workers need the stack's Redis."""
    contract = AppContract.from_mapping(app_section(config))
    if inventory is None or not contract.has_workers:
        return contract
    uri = inventory.data.get("redis_uri") or ""
    if not uri:
        raise SettingsError(
            f"app.worker_count: {contract.worker_count} workers need a Redis, and "
            f"{inventory.source} has no redis_uri; give the stack its managed Redis "
            "(docs/app-contract.md) or set app.worker_count to 0"
        )
    if not uri.startswith("rediss://"):
        raise SettingsError(
            f"{inventory.source}: redis_uri must start with rediss:// (TLS; a managed Redis "
            "has no plain-text port)"
        )
    return contract


def contract_docs() -> list[tuple[str, str, str]]:
    """(key, default, doc) for every key of the app contract, for docs/app-contract.md."""
    return [(f.name, repr(f.default), f.metadata["doc"]) for f in dataclasses.fields(AppContract)]
