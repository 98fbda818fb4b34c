"""The app contract (dropstack.app): validated once, read by the units, the release and the
docs, and judged by the real validators for each shape of app (WSGI, ASGI, workers, timers)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from deploy import app_contract, host_model
from deploy.app_contract import AppContract
from deploy.host_model import SLOTS, HostSettings, SettingsError
from deploy.provision.templates import (
    render_site_files,
    scheduled_job_files,
    scheduled_job_timers,
    scheduled_jobs_verify_command,
    systemd_verify_command,
)
from deploy.release.settings import ReleaseError, ReleaseSettings
from deploy.shell import join
from tests.deploy.test_templates import MAX_EXPOSURE, build_systemd_root, run

REPO = Path(__file__).resolve().parents[2]
VPC = "10.110.0.0/20"
FIXTURE = REPO / "tests/fixtures/fastapi_notes"

# The contract of each shape, as an operator writes it in fabric.yaml.
SHAPES = {
    "sample-defaults": {},
    "sample-with-workers": {"worker_count": 3, "worker_stop_timeout": 90},
    "fastapi-fixture": yaml.safe_load((FIXTURE / "contract.yaml").read_text())["dropstack"]["app"],
    "django": {
        "entry_point": "app.mysite.wsgi:application",
        "migrate": "django",
        "server_config": "",
        "static_dir": "app/staticfiles",
    },
}


def settings_for(shape: str) -> HostSettings:
    config = {"dropstack": {"app": SHAPES[shape]}}
    return replace(host_model.for_host(config), vpc_cidr=VPC)


def unit(settings: HostSettings, name: str) -> str:
    return render_site_files(settings)[f"/etc/systemd/system/{name}"].content


def exec_start(text: str) -> str:
    (line,) = [x for x in text.splitlines() if x.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=")


# --- validation: one line naming the key and what is allowed ---


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"server": "uwsgi"}, "app.server: 'uwsgi' is not allowed; gunicorn or gunicorn+uvicorn"),
        ({"entry_point": "app.wsgi"}, "app.entry_point: 'app.wsgi' is not allowed"),
        ({"migrate": "rm -rf /"}, "app.migrate: 'rm -rf /' is not allowed; alembic, django, none"),
        ({"migrate": "python -m x; reboot"}, "app.migrate:"),
        ({"requirements": "../etc/passwd"}, "app.requirements: '../etc/passwd' is not allowed"),
        ({"static_dir": "/srv/static"}, "app.static_dir: '/srv/static' is not allowed"),
        ({"readiness_path": "readyz"}, "app.readiness_path: 'readyz' is not allowed"),
        ({"worker_count": 65}, "app.worker_count: 65 is not allowed; 0..64"),
        ({"worker_count": True}, "app.worker_count: True is not allowed"),
        ({"worker_command": "rq worker"}, "app.worker_command: 'rq worker' is not allowed"),
        ({"archive_paths": []}, "app.archive_paths: () is not allowed"),
        ({"schedules": ["purge"]}, "app.schedules: ('purge',) is not allowed; a mapping"),
        ({"schedules": {"p": {"command": "python x"}}}, "app.schedules.p: needs schedule"),
        ({"schedules": {"Purge": {"schedule": "daily", "command": "python x"}}}, "the name"),
        (
            {"schedules": {"p": {"schedule": "daily\nExecStart=/bin/sh", "command": "python x"}}},
            "app.schedules.p.schedule:",
        ),
        ({"schedules": {"p": {"schedule": "daily", "command": "sh x"}}}, "must start with python"),
        ({"colour": "blue"}, "app.colour: not a setting; known: archive_paths,"),
    ],
)
def test_a_bad_contract_is_one_line_naming_the_key(values, message):
    with pytest.raises(SettingsError) as raised:
        AppContract.from_mapping(values)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_defaults_describe_todays_sample_app():
    a = AppContract()
    assert (a.entry_point, a.server, a.worker_class) == ("app.wsgi:app", "gunicorn", None)
    assert a.migration_arguments == ("-m", "app.manage", "migrate")
    assert (a.liveness_path, a.readiness_path, a.static_dir) == (
        "/healthz",
        "/readyz",
        "app/static",
    )
    assert (a.requirements, a.archive_paths) == ("app/requirements.txt", ("app",))
    # Today's unit line, byte for byte.
    assert exec_start(unit(settings_for("sample-defaults"), "dropstack@.service")) == (
        "/srv/dropstack/slots/%i/.venv/bin/gunicorn -c python:app.gunicorn_conf app.wsgi:app"
    )


def test_fabric_yaml_declares_every_key_so_environment_variables_reach_it():
    # Invoke maps FABRIC_DROPSTACK_APP_<KEY> only onto keys the config already has.
    declared = yaml.safe_load((REPO / "fabric.yaml").read_text())["dropstack"]["app"]
    assert set(declared) == {name for name, _, _ in app_contract.contract_docs()}
    contract = AppContract.from_mapping(declared)
    # fabric.yaml is the sample app's contract: the code's defaults plus its purge schedule.
    assert replace(contract, schedules=()) == AppContract()
    assert [j.name for j in contract.schedules] == ["purge-done-tasks"]


def test_an_environment_override_reaches_the_units(monkeypatch):
    from fabric import Config

    monkeypatch.setenv("FABRIC_DROPSTACK_APP_WORKER_COUNT", "2")
    monkeypatch.setenv("FABRIC_DROPSTACK_APP_SERVER", "gunicorn+uvicorn")
    config = Config(project_location=str(REPO), overrides={"load_ssh_configs": False})
    config.load_project()
    config.load_shell_env()
    settings = replace(host_model.for_host(config), vpc_cidr=VPC)
    assert settings.app.worker_count == 2
    assert "-k uvicorn.workers.UvicornWorker" in unit(settings, "dropstack@.service")
    assert "/etc/systemd/system/dropstack-worker-green@.service" in render_site_files(settings)


def test_the_contract_is_not_a_host_setting():
    with pytest.raises(SettingsError, match=r"host\.app: not a setting; the app contract is"):
        host_model.for_host({"dropstack": {"host": {"app": {}}}})


# --- what the units say for each shape ---


def test_asgi_runs_gunicorn_with_uvicorn_workers_and_the_units_own_flags():
    line = exec_start(unit(settings_for("fastapi-fixture"), "dropstack@.service"))
    assert line == (
        "/srv/dropstack/slots/%i/.venv/bin/gunicorn --graceful-timeout 30 --keep-alive 65 "
        "--access-logfile - --error-logfile - --no-control-socket "
        "-k uvicorn.workers.UvicornWorker app.main:app"
    )


@pytest.mark.parametrize(
    ("shape", "command"),
    [
        ("sample-defaults", "/srv/dropstack/slots/%i/.venv/bin/python -m app.manage migrate"),
        ("django", "/srv/dropstack/slots/%i/.venv/bin/python app/manage.py migrate --noinput"),
        ("fastapi-fixture", "/srv/dropstack/slots/%i/.venv/bin/python -m alembic -c "
         "app/alembic.ini upgrade head"),
    ],
)  # fmt: skip
def test_the_migration_unit_runs_the_contracts_command(shape, command):
    assert exec_start(unit(settings_for(shape), "dropstack-migrate@.service")) == command


def test_no_migrations_means_a_unit_that_does_nothing():
    settings = replace(settings_for("sample-defaults"), app=AppContract(migrate="none"))
    assert exec_start(unit(settings, "dropstack-migrate@.service")) == "/bin/true"


def test_static_files_follow_the_contract():
    settings = settings_for("django")
    site = render_site_files(settings)["/etc/nginx/sites-available/dropstack"].content
    assert "/srv/dropstack/current/app/staticfiles/" in site


def test_workers_exist_only_when_the_contract_has_them():
    names = set(render_site_files(settings_for("sample-defaults")))
    assert not any("worker" in n for n in names)
    with_workers = set(render_site_files(settings_for("sample-with-workers"))) - names
    assert with_workers == {
        "/etc/systemd/system/dropstack-worker-blue@.service",
        "/etc/systemd/system/dropstack-worker-green@.service",
    }


@pytest.mark.parametrize("slot", SLOTS)
def test_a_worker_runs_its_slots_release_and_finishes_its_job_on_stop(slot):
    text = unit(settings_for("sample-with-workers"), f"dropstack-worker-{slot}@.service")
    assert exec_start(text) == f"/srv/dropstack/slots/{slot}/.venv/bin/python -m app.worker"
    assert f"EnvironmentFile=/srv/dropstack/slots/{slot}.env" in text
    # SIGTERM to the worker alone, then the contract's bound before SIGKILL.
    for line in ("KillMode=mixed", "KillSignal=SIGTERM", "TimeoutStopSec=90"):
        assert line in text.splitlines()


def test_scheduled_jobs_run_from_the_live_release_under_a_lock():
    settings = settings_for("sample-defaults")
    settings = replace(settings, app=AppContract.from_mapping(SHAPES["fastapi-fixture"]))
    files = {f.path: f.content for f in scheduled_job_files(settings)}
    (job,) = settings.app.schedules
    service = files[f"/etc/systemd/system/dropstack-job-{job.name}.service"]
    timer = files[f"/etc/systemd/system/dropstack-job-{job.name}.timer"]
    assert exec_start(service) == (
        f"/usr/bin/flock --nonblock --conflict-exit-code 75 /run/dropstack-jobs/{job.name}.lock "
        f"/srv/dropstack/current/.venv/bin/python {' '.join(job.arguments)}"
    )
    assert "WorkingDirectory=/srv/dropstack/current" in service
    assert f"OnCalendar={job.schedule}" in timer and "Persistent=true" in timer
    assert scheduled_job_timers(settings) == (f"dropstack-job-{job.name}.timer",)
    # Timers are not in the per-host files: provisioning gives them to the first host only.
    assert not any("job" in p for p in render_site_files(settings))


# --- the real validators ---


def build_root(root: Path, settings: HostSettings, deployed: bool = True) -> None:
    """build_systemd_root plus the scheduled jobs, flock and (deployed) the live release."""
    build_systemd_root(root, settings, deployed=deployed)
    for file in scheduled_job_files(settings):
        (root / file.path.lstrip("/")).write_text(file.content)
    shutil.copy("/usr/bin/flock", root / "usr/bin/flock")
    shutil.copy("/usr/bin/true", root / "usr/bin/true")
    if deployed:
        python = root / settings.paths.current.lstrip("/") / ".venv/bin/python"
        python.parent.mkdir(parents=True)
        python.write_text("#!/bin/sh\nexit 0\n")
        python.chmod(0o755)


def contract_units(settings: HostSettings) -> list[str]:
    p = settings.paths
    names = [p.unit("blue"), p.migrate_unit("green")]
    names += [p.worker_unit(slot, 1) for slot in SLOTS] if settings.app.has_workers else []
    for job in settings.app.schedules:
        names += [p.job_service(job.name), p.job_timer(job.name)]
    return names


@pytest.mark.parametrize("shape", ["sample-with-workers", "fastapi-fixture", "django"])
def test_systemd_analyze_verify_accepts_every_shapes_units(tmp_path, shape):
    settings = settings_for(shape)
    if shape == "sample-with-workers":
        sample = yaml.safe_load((REPO / "fabric.yaml").read_text())["dropstack"]["app"]
        schedules = AppContract.from_mapping(sample).schedules
        settings = replace(settings, app=replace(settings.app, schedules=schedules))
    build_root(tmp_path, settings)
    result = run(
        ["systemd-analyze", "verify", "--man=no", f"--root={tmp_path}", *contract_units(settings)]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_rejects_a_bad_calendar_expression(tmp_path):
    # The model lets through what could be a calendar; systemd is the judge of the expression.
    contract = AppContract.from_mapping(
        {"schedules": {"purge": {"schedule": "every tuesday", "command": "python -m x"}}}
    )
    settings = replace(settings_for("sample-defaults"), app=contract)
    build_root(tmp_path, settings)
    result = run(scheduled_jobs_verify_command(settings, root=str(tmp_path)))
    assert result.returncode == 1
    assert "every tuesday" in result.stderr


@pytest.mark.parametrize("shape", ["sample-with-workers", "fastapi-fixture"])
def test_verify_commands_pass_before_the_first_deploy(tmp_path, shape):
    settings = settings_for(shape)
    build_root(tmp_path, settings, deployed=False)
    for command in (systemd_verify_command(settings, str(tmp_path)),
                    scheduled_jobs_verify_command(settings, str(tmp_path))):  # fmt: skip
        result = run(command)
        assert result.returncode == 0, result.stderr


def test_the_fixtures_schedule_is_a_calendar_systemd_understands():
    contract = AppContract.from_mapping(SHAPES["fastapi-fixture"])
    for job in contract.schedules:
        result = run(["systemd-analyze", "calendar", job.schedule])
        assert result.returncode == 0, result.stderr
        assert "Next elapse:" in result.stdout


@pytest.mark.parametrize("kind", ["worker", "job"])
def test_worker_and_job_exposure_is_at_most_2(tmp_path, kind):
    settings = settings_for("fastapi-fixture")
    build_root(tmp_path, settings)
    p = settings.paths
    name = (
        p.worker_unit("blue", 1)
        if kind == "worker"
        else p.job_service(settings.app.schedules[0].name)
    )
    result = run(["systemd-analyze", "security", "--offline=true", f"--root={tmp_path}", name])
    match = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


# --- releases read the contract ---


def test_the_release_build_reads_requirements_and_archive_paths_from_the_contract():
    settings = ReleaseSettings.from_config(
        {"app": {"requirements": "app/requirements-prod.txt", "archive_paths": "app bin"}}
    )
    assert settings.requirements == "app/requirements-prod.txt"
    assert settings.archive_paths == ("app", "bin")
    assert ReleaseSettings.from_config({}).requirements == "app/requirements.txt"


@pytest.mark.parametrize("key", ["requirements", "archive_paths"])
def test_the_release_section_no_longer_names_what_the_contract_owns(key):
    with pytest.raises(
        ReleaseError, match=rf"dropstack\.release\.{key}: moved to dropstack\.app\.{key}"
    ):
        ReleaseSettings.from_config({"release": {key: "app"}})


def test_verify_tool_is_present():
    # Everything above leans on systemd-analyze; a missing tool must fail, not pass quietly.
    assert subprocess.run(["systemd-analyze", "--version"], capture_output=True).returncode == 0


# --- workers switch with the web slot ---


def switch_for(shape: str, live: str | None = "blue"):
    from deploy.release.host import ReleaseHost
    from deploy.release.switch import Switch

    h = ReleaseHost(None, "web-1", ReleaseSettings(), settings_for(shape))
    return Switch(h, "20261201000000-abcdef0", live, "green" if live != "green" else "blue")


def test_without_workers_the_switch_is_todays():
    names = [name for name, _ in switch_for("sample-defaults").steps(migrate_first=True)]
    assert names == [
        "stop idle slot green", "point slot green at the release", "database migrations",
        "start slot green", "health gate /readyz on green", "route nginx to green",
        "switch current", "stop old slot blue", "enable slot green at boot",
    ]  # fmt: skip


def test_new_workers_start_after_the_gate_and_old_ones_stop_after_the_route():
    names = [name for name, _ in switch_for("sample-with-workers").steps(migrate_first=True)]
    assert names == [
        "stop idle slot green", "point slot green at the release", "database migrations",
        "start slot green",
        "health gate /readyz on green", "start 3 workers on green", "route nginx to green",
        "switch current", "stop old slot blue", "stop old workers on blue",
        "enable slot green at boot", "enable workers on green at boot",
    ]  # fmt: skip


def test_the_first_deploy_has_no_old_workers_to_stop():
    names = [name for name, _ in switch_for("sample-with-workers", None).steps(False)]
    assert names[-1] == "enable workers on green at boot"


def test_the_gate_asks_the_contracts_readiness_path():
    names = [name for name, _ in switch_for("fastapi-fixture").steps(migrate_first=False)]
    assert "health gate /health/ready on green" in names


class Recorder:
    """A connection stand-in that records commands; every command succeeds."""

    def __init__(self):
        self.commands: list[str] = []

    def run(self, command, **_):
        from invoke.runners import Result

        self.commands.append(command)
        return Result(stdout="", exited=0)

    def close(self) -> None:
        """A stand-in keeps no transport: closing and opening it again change nothing."""

    def open(self) -> None:
        pass


@pytest.mark.parametrize(("routed", "stops"), [(False, "green"), (True, "blue")])
def test_an_abandoned_switch_stops_the_workers_that_must_not_run(routed, stops):
    # Before the route: the new release's workers go, the old serve on. After: the old go.
    switch = switch_for("sample-with-workers")
    switch.h.c = Recorder()
    switch.started = switch.workers_started = True
    switch.routed = routed
    switch.abandon()
    stopped = [c for c in switch.h.c.commands if "systemctl stop" in c and "worker" in c]
    assert len(stopped) == 1 and f"dropstack-worker-{stops}@*.service" in stopped[0]


def test_worker_boot_links_follow_the_slot(tmp_path):
    # The real systemctl, offline on a root directory: enable green's two, disable all of blue's
    # (three, from an earlier count) by disabling its template.
    from deploy.release import commands as cmd

    settings = settings_for("sample-with-workers")
    build_root(tmp_path, settings)
    layout = settings.paths
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    root = f"--root={tmp_path}"
    enabled = run(["systemctl", root, "enable", *layout.worker_units("blue", 3)])
    assert enabled.returncode == 0, enabled.stderr
    sudo, n, sh, c, program = cmd.boot_workers_command(layout, "green", 2)
    assert (sudo, n, sh, c) == ("sudo", "-n", "sh", "-c")
    # No systemd runs here: offline systemctl, and nothing to reload.
    reload = join(cmd.reload_units_later(layout))
    assert reload in program
    program = program.replace(reload, "true")
    result = run(["sh", "-c", program.replace("systemctl ", f"systemctl {root} ")])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in wants.iterdir()) == [
        "dropstack-worker-green@1.service", "dropstack-worker-green@2.service",
    ]  # fmt: skip
