"""The Nginx and systemd files a web host needs, rendered from nginx/*.j2 and systemd/*.j2.

Pure functions: they read the template files and return text; installing, validating
(`nginx -t`, `systemd-analyze verify`) and reloading is the provisioning and deploy code's job.
Every variable comes from ``HostSettings`` (deploy/host_model.py), the one place defaults live.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from deploy import shell
from deploy.host_model import SLOTS, HostSettings, SettingsError
from deploy.provision.files import RemoteFile

if TYPE_CHECKING:
    from jinja2 import Environment

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = (REPO / "nginx", REPO / "systemd")
# Not a template: RFC 7919's fixed group, byte for byte (`openssl genpkey -genparam -algorithm DH
# -pkeyopt group:ffdhe2048` prints the same).
DH_PARAMS = REPO / "nginx" / "ffdhe2048.pem"


@cache
def template_environment() -> Environment:
    # Imported here: every `fab` run imports this module (maintenance pages), and Jinja2 is a
    # fifth of `fab rollback`'s start-up, which renders nothing.
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    # StrictUndefined: a misspelt variable is an error at render time, not an empty directive.
    return Environment(
        loader=FileSystemLoader([str(d) for d in TEMPLATE_DIRS]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701  (config files, not HTML)
    )


def render(name: str, settings: HostSettings, **extra: object) -> str:
    """One template, e.g. ``render("site.conf.j2", settings)``; ``extra`` adds variables."""
    if settings.vpc_cidr is None:
        raise SettingsError(
            "vpc_cidr: required to render the host's files (the inventory's vpc_cidr)"
        )
    template = template_environment().get_template(name)
    return template.render(settings=settings, paths=settings.paths, **extra)


def render_upstream(settings: HostSettings) -> str:
    """The upstream include: Nginx's one fixed path to the app, the live.sock link. Static, so
    provisioning installs it once; deploys move traffic by replacing the link, not this file."""
    return render("upstream.conf.j2", settings)


def nginx_files(settings: HostSettings) -> list[RemoteFile]:
    """The Nginx configuration files. None depends on which slot is live, so a re-provision can
    never route traffic elsewhere."""
    s, p = settings, settings.paths
    files = [
        RemoteFile(f"{s.nginx_dir}/conf.d/{s.app_name}.conf", render("http.conf.j2", s)),
        RemoteFile(f"{p.nginx_include_dir}/headers.conf", render("headers.conf.j2", s)),
        RemoteFile(f"{p.nginx_include_dir}/upstream.conf", render_upstream(s)),
        RemoteFile(f"{s.nginx_dir}/sites-available/{s.app_name}", render("site.conf.j2", s)),
    ]
    if not s.catch_all:
        files.append(
            RemoteFile(
                f"{s.nginx_dir}/sites-available/{s.app_name}-default-server",
                render("default-server.conf.j2", s),
            )
        )
    if s.tls:
        files += [
            RemoteFile(f"{p.nginx_include_dir}/tls.conf", render("tls.conf.j2", s)),
            RemoteFile(f"{p.nginx_include_dir}/ffdhe2048.pem", DH_PARAMS.read_text()),
        ]
    return files


def nginx_symlinks(settings: HostSettings) -> dict[str, str]:
    """sites-enabled symlink -> sites-available file, for each site nginx_files installs."""
    names = [settings.app_name]
    if not settings.catch_all:
        names.append(f"{settings.app_name}-default-server")
    return {
        f"{settings.nginx_dir}/sites-enabled/{name}": f"{settings.nginx_dir}/sites-available/{name}"
        for name in names
    }


def nginx_obsolete_paths(settings: HostSettings) -> tuple[str, ...]:
    """Files provisioning removes: Debian's welcome site also claims default_server on port 80,
    and Nginx refuses two default servers on one port."""
    return (f"{settings.nginx_dir}/sites-enabled/default",)


def systemd_files(settings: HostSettings) -> list[RemoteFile]:
    """The units and the tmpfiles.d entry. After installing: `systemctl daemon-reload` and
    `systemd-tmpfiles --create <settings.paths.tmpfiles_conf>`."""
    s, p = settings, settings.paths
    return [
        RemoteFile(f"{p.unit_dir}/{s.app_name}@.service", render("dropstack@.service.j2", s)),
        RemoteFile(f"{p.unit_dir}/{s.app_name}@.socket", render("dropstack@.socket.j2", s)),
        RemoteFile(
            f"{p.unit_dir}/{s.app_name}-migrate@.service",
            render("dropstack-migrate@.service.j2", s),
        ),
        RemoteFile(p.tmpfiles_conf, render("dropstack.tmpfiles.conf.j2", s)),
        *worker_files(s),
    ]


def worker_files(settings: HostSettings) -> list[RemoteFile]:
    """One worker template per slot (<app>-worker-<slot>@.service) when the contract has
    workers; none otherwise, so a host without workers has no unit that needs Redis."""
    if not settings.app.has_workers:
        return []
    unit_dir = settings.paths.unit_dir
    return [
        RemoteFile(
            f"{unit_dir}/{settings.paths.worker_template(slot)}",
            render("dropstack-worker@.service.j2", settings, slot=slot),
        )
        for slot in SLOTS
    ]


def scheduled_job_files(settings: HostSettings) -> list[RemoteFile]:
    """Each scheduled job's service and timer, for the stack's first web host only (like
    backup_units): one host per stack runs a schedule. Enable the timers after installing."""
    p = settings.paths
    files = []
    for job in settings.app.schedules:
        files += [
            RemoteFile(
                f"{p.unit_dir}/{p.job_service(job.name)}",
                render("dropstack-job.service.j2", settings, job=job),
            ),
            RemoteFile(
                f"{p.unit_dir}/{p.job_timer(job.name)}",
                render("dropstack-job.timer.j2", settings, job=job),
            ),
        ]
    return files


def scheduled_job_timers(settings: HostSettings) -> tuple[str, ...]:
    """The timers to enable (`systemctl enable --now`) on the first web host."""
    return tuple(settings.paths.job_timer(job.name) for job in settings.app.schedules)


def systemd_verify_command(settings: HostSettings, root: str | None = None) -> list[str]:
    """`systemd-analyze verify` of the installed units, as a command (safe under sudo).

    It fails on any complaint but one: before the first deploy no release is linked into the
    slots, so their gunicorn and python do not exist yet (the units refuse to start then, by
    AssertPathExists=). verify only warns, exiting 0, about unknown keys and bad values, so any
    other output is the failure, printed on stderr. ``root`` is for tests (``--root=``).
    """
    name = settings.app_name
    units = [f"{name}@blue.service", f"{name}@blue.socket", f"{name}-migrate@blue.service"]
    if settings.app.has_workers:
        units += [settings.paths.worker_unit(slot, 1) for slot in SLOTS]
    root_option = [f"--root={root}"] if root else []
    # Paths are validated to [A-Za-z0-9._/-], so '.' is the only character ERE treats specially.
    slots = settings.paths.slots_dir.replace(".", r"\.")
    not_deployed = rf"Command {slots}/(blue|green)/\.venv/bin/(gunicorn|python) is not executable"
    return shell.script(
        VERIFY_SCRIPT, not_deployed, "systemd-analyze", "verify", "--man=no", *root_option, *units
    )


def scheduled_jobs_verify_command(settings: HostSettings, root: str | None = None) -> list[str]:
    """`systemd-analyze verify` of the scheduled jobs' timers and services, allowing only the
    complaint of a host before its first deploy: no live release's python yet."""
    p = settings.paths
    units = [
        u for j in settings.app.schedules for u in (p.job_timer(j.name), p.job_service(j.name))
    ]
    if not units:
        return ["true"]
    root_option = [f"--root={root}"] if root else []
    current = p.current.replace(".", r"\.")
    not_deployed = rf"Command {current}/\.venv/bin/python is not executable"
    return shell.script(
        VERIFY_SCRIPT, not_deployed, "systemd-analyze", "verify", "--man=no", *root_option, *units
    )


# $1: the one complaint allowed (an ERE); the rest: the verify command line.
VERIFY_SCRIPT = (
    'allowed=$1; shift; out=$("$@" 2>&1); rc=$?; '
    'rest=$(printf "%s\\n" "$out" | grep -v -E "$allowed" | grep .); '
    'if [ -n "$rest" ]; then printf "%s\\n" "$rest" >&2; exit 1; fi; '
    'if [ "$rc" -ne 0 ] && [ -z "$out" ]; then echo "verify failed: $rc" >&2; exit 1; fi'
)


def render_site_files(settings: HostSettings) -> dict[str, RemoteFile]:
    """Every file provisioning installs from the templates, keyed by its path on the host.

    All are root:root 0644: none holds a secret (the env file is written by provisioning).
    """
    files = nginx_files(settings) + systemd_files(settings)
    return {f.path: f for f in files}


def backup_units(settings: HostSettings, backup_settings, backup_layout) -> list[RemoteFile]:
    """The backup job's unit and timer (deploy/backup), for the stack's first web host."""
    extra = {"backup": backup_layout, "backup_settings": backup_settings}
    unit_dir = settings.paths.unit_dir
    return [
        RemoteFile(
            f"{unit_dir}/{backup_layout.service}",
            render("dropstack-backup.service.j2", settings, **extra),
        ),
        RemoteFile(
            f"{unit_dir}/{backup_layout.timer}",
            render("dropstack-backup.timer.j2", settings, **extra),
        ),
    ]


def restore_drill_units(
    settings: HostSettings,
    backup_settings,
    *,
    target: str,
    target_args: str,
    checkout: str,
    operator_user: str,
) -> dict[str, str]:
    """The drill's unit and timer for the operator's machine (where the private key is), keyed
    by file name. ``target_args`` is what `fab db.drill` needs to find the stack (--stack X)."""
    extra = {
        "backup_settings": backup_settings,
        "target": target,
        "target_args": target_args,
        "checkout": checkout,
        "operator_user": operator_user,
    }
    name = settings.app_name
    return {
        f"{name}-restore-drill.service": render(
            "dropstack-restore-drill.service.j2", settings, **extra
        ),
        f"{name}-restore-drill.timer": render(
            "dropstack-restore-drill.timer.j2", settings, **extra
        ),
    }
