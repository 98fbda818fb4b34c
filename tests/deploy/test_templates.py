"""The Nginx and systemd templates, checked by the real validators.

Every case is rendered and then judged by the tools the host itself uses: `nginx -t` on a full
configuration tree built from Debian's own nginx.conf, `systemd-analyze verify` and
`systemd-analyze security --offline` on the units, `systemd-tmpfiles` on the tmpfiles.d entry.
Nothing global is touched: everything lives under pytest's tmp_path and no daemon is started.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from deploy.host_model import (
    SLOTS,
    HostSettings,
    SettingsError,
    settings_docs,
)
from deploy.provision.facts import nameservers
from deploy.provision.templates import (
    nginx_obsolete_paths,
    nginx_symlinks,
    render,
    render_site_files,
    render_upstream,
    systemd_verify_command,
    template_environment,
)

VPC = "10.110.0.0/20"
DEBIAN_NGINX_CONF = Path("/etc/nginx/nginx.conf")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
MAX_EXPOSURE = 2.0

# name -> HostSettings keyword arguments: defaults, and each way a host can differ.
CASES = {
    "defaults": {},
    "public-ip": {"extra_server_names": ("203.0.113.7",), "gunicorn_workers": 3},
    "domain-before-certificate": {"domain": "example.com", "tls_certificate_ready": False},
    "domain-tls": {"domain": "example.com"},
    "domain-behind-tls-load-balancer": {
        "domain": "example.com",
        "tls_at_load_balancer": True,
        "extra_server_names": ("203.0.113.7", "10.110.0.7", "203.0.113.9"),
        "trusted_proxies": ("10.110.0.0/20",),
    },
    "everything-changed": {
        "app_name": "task-api",
        "app_user": "tasks",
        "domain": "api.example.org",
        "extra_server_names": ("www.example.org", "198.51.100.4"),
        "dns_servers": ("67.207.67.2", "67.207.67.3"),
        "trusted_proxies": ("10.110.0.0/20",),
        "listen_ipv6": False,
        "gunicorn_workers": 9,
        "graceful_timeout": 120,
        "client_max_body_size": "1m",
        "rate_limit": "120r/m",
        "rate_limit_burst": 5,
        "upstream_keepalive": 8,
        "static_max_age": 0,
    },
}


def settings_for(case: str, **overrides: object) -> HostSettings:
    return HostSettings(vpc_cidr=VPC, **{**CASES[case], **overrides})


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    if not shutil.which(args[0]):
        pytest.fail(f"{args[0]} is not installed; bin/setup installs it")
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


# --- nginx -t on a whole configuration tree ---


def build_nginx_tree(root: Path, settings: HostSettings) -> HostSettings:
    """Install the rendered site under ``root`` exactly as provisioning would under /, next to a
    copy of Debian's nginx.conf with its paths moved there too. Returns the settings used."""
    etc = root / "etc/nginx"
    settings = replace(
        settings,
        nginx_dir=str(etc),
        nginx_log_dir=str(root / "log"),
        acme_webroot=str(root / "acme"),
        tls_cert_dir=str(root / "certs") if settings.domain else None,
    )
    for path, file in render_site_files(settings).items():
        target = Path(path)
        assert target.is_relative_to(etc) or path.startswith(("/etc/systemd/", "/etc/tmpfiles.d/"))
        if target.is_relative_to(etc):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content)
    (etc / "sites-enabled").mkdir()
    for link, target in nginx_symlinks(settings).items():
        Path(link).symlink_to(target)
    (root / "log").mkdir()
    (etc / "modules-enabled").mkdir()
    shutil.copy("/etc/nginx/mime.types", etc / "mime.types")
    debian = DEBIAN_NGINX_CONF.read_text()
    # The pid file is given with -g instead (Nginx refuses it twice); every other path moves.
    debian = re.sub(r"^pid .*$", "", debian, flags=re.M)
    debian = debian.replace("/etc/nginx/", f"{etc}/").replace("/var/log/nginx/", f"{root}/log/")
    (etc / "nginx.conf").write_text(debian)
    if settings.tls:
        make_certificate(Path(settings.tls_cert_dir), settings.domain)
        # What certbot's deploy hook installs: the one file the site names (tls.deploy_hook_file).
        certs = Path(settings.tls_cert_dir)
        pem = Path(settings.tls_certificate_file)
        pem.parent.mkdir(parents=True, exist_ok=True)
        pem.write_text((certs / "fullchain.pem").read_text() + (certs / "privkey.pem").read_text())
    return settings


def make_certificate(directory: Path, domain: str) -> None:
    """A throwaway self-signed certificate where certbot would put the real one."""
    directory.mkdir(parents=True)
    result = run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={domain}",
            "-keyout", str(directory / "privkey.pem"), "-out", str(directory / "fullchain.pem"),
        ]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def nginx_t(root: Path) -> subprocess.CompletedProcess[str]:
    # -p/-c/-e/-g keep every file Nginx opens inside root; `-t` starts no daemon.
    return run(
        [
            "nginx", "-t", "-p", str(root), "-c", str(root / "etc/nginx/nginx.conf"),
            "-e", str(root / "log/startup-error.log"), "-g", f"pid {root}/nginx.pid;",
        ]
    )  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def debian_nginx() -> None:
    if not DEBIAN_NGINX_CONF.exists():
        pytest.fail("Debian's nginx.conf is missing; bin/setup installs nginx-light")


@pytest.mark.parametrize("case", CASES)
def test_nginx_accepts_the_rendered_site(tmp_path: Path, case: str) -> None:
    build_nginx_tree(tmp_path, settings_for(case))
    result = nginx_t(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_rejects_a_broken_upstream(tmp_path: Path) -> None:
    # The validator is real: one missing semicolon fails the whole tree.
    settings = build_nginx_tree(tmp_path, settings_for("defaults"))
    upstream = Path(settings.paths.nginx_include_dir, "upstream.conf")
    upstream.write_text(upstream.read_text().replace("keepalive 32;", "keepalive 32"))
    result = nginx_t(tmp_path)
    assert result.returncode != 0
    assert "upstream.conf" in result.stderr


def test_nginx_rejects_the_site_next_to_debians_default_site(tmp_path: Path) -> None:
    # Why provisioning removes sites-enabled/default (nginx_obsolete_paths): two default servers.
    settings = build_nginx_tree(tmp_path, settings_for("public-ip"))
    (debian_default,) = map(Path, nginx_obsolete_paths(settings))
    debian_default.write_text("server { listen 80 default_server; return 404; }\n")
    result = nginx_t(tmp_path)
    assert result.returncode != 0
    assert "duplicate default server" in result.stderr


def test_nginx_t_no_longer_sees_the_certificate(tmp_path: Path) -> None:
    # The site names its certificate through a variable (loaded at each handshake), so nginx -t
    # passes without it: provisioning adds the deploy hook's check (tests/tls/test_tls_plans.py),
    # and tls_certificate_ready still keeps the HTTPS site off until certbot has run.
    settings = build_nginx_tree(tmp_path, settings_for("domain-tls"))
    Path(settings.tls_certificate_file).unlink()
    result = nginx_t(tmp_path)
    assert result.returncode == 0, result.stderr


def test_dh_parameters_are_rfc7919_ffdhe2048(tmp_path: Path) -> None:
    files = render_site_files(settings_for("domain-tls"))
    pem = files["/etc/nginx/dropstack/ffdhe2048.pem"]
    (tmp_path / "dh.pem").write_text(pem.content)
    result = run(["openssl", "pkeyparam", "-in", str(tmp_path / "dh.pem"), "-text", "-noout"])
    assert "GROUP: ffdhe2048" in result.stdout, result.stdout + result.stderr


# --- systemd-analyze verify / security, systemd-tmpfiles ---


def build_systemd_root(root: Path, settings: HostSettings, deployed: bool = True) -> None:
    """A root directory for `systemd-analyze --root=`: the distribution's units (sysinit.target
    and friends, which every service depends on), the rendered files, and every program the units
    run. `verify` insists each Exec path is executable; releases do not exist on this machine, so
    the slot's gunicorn and python are stand-ins (absent when not ``deployed``, as on a host
    before its first deploy), while /usr/bin/kill is the real one."""
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    for path, file in render_site_files(settings).items():
        if path.startswith(("/etc/systemd/", "/etc/tmpfiles.d/")):
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy("/usr/bin/kill", root / "usr/bin/kill")
    (root / "bin").symlink_to("usr/bin")
    for slot in SLOTS if deployed else ():
        venv_bin = root / settings.paths.slots_dir.lstrip("/") / slot / ".venv/bin"
        venv_bin.mkdir(parents=True)
        for program in ("gunicorn", "python"):
            (venv_bin / program).write_text("#!/bin/sh\nexit 0\n")
            (venv_bin / program).chmod(0o755)


def units(settings: HostSettings, slot: str) -> list[str]:
    name = settings.app_name
    return [f"{name}@{slot}.service", f"{name}@{slot}.socket", f"{name}-migrate@{slot}.service"]


@pytest.mark.parametrize("case", ["defaults", "everything-changed"])
@pytest.mark.parametrize("slot", SLOTS)
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path, case: str, slot: str) -> None:
    settings = settings_for(case)
    build_systemd_root(tmp_path, settings)
    result = run(
        ["systemd-analyze", "verify", "--man=no", f"--root={tmp_path}", *units(settings, slot)]
    )
    # verify exits 0 even for unknown keys and unparsable values, only warning: silence is the pass.
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    settings = settings_for("defaults")
    build_systemd_root(tmp_path, settings)
    unit = tmp_path / "etc/systemd/system/dropstack@.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    (tmp_path / settings.paths.slots_dir.lstrip("/") / "blue/.venv/bin/gunicorn").unlink()
    result = run(
        ["systemd-analyze", "verify", "--man=no", f"--root={tmp_path}", "dropstack@blue.service"]
    )
    assert "strikt" in result.stderr
    assert "gunicorn is not executable" in result.stderr


@pytest.mark.parametrize("case", ["defaults", "everything-changed"])
def test_verify_command_passes_on_a_host_before_its_first_deploy(tmp_path: Path, case: str) -> None:
    # The exact command provisioning runs as install_files' validator, against a root where no
    # release is linked into the slots yet.
    settings = settings_for(case)
    build_systemd_root(tmp_path, settings, deployed=False)
    result = run(systemd_verify_command(settings, root=str(tmp_path)))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("unit", "old", "new", "complaint"),
    [
        ("dropstack@.service", "KillMode=mixed", "KillMode=mixd", "mixd"),
        (
            "dropstack@.socket",
            "SocketMode=0660",
            "SocketMode=0660\nListen=x",
            "Unknown key 'Listen'",
        ),
    ],
)
def test_verify_command_fails_on_any_other_complaint(
    tmp_path: Path, unit: str, old: str, new: str, complaint: str
) -> None:
    settings = settings_for("defaults")
    build_systemd_root(tmp_path, settings, deployed=False)
    path = tmp_path / "etc/systemd/system" / unit
    path.write_text(path.read_text().replace(old, new))
    result = run(systemd_verify_command(settings, root=str(tmp_path)))
    assert result.returncode == 1
    assert complaint in result.stderr


def test_verify_command_fails_when_a_program_outside_the_slots_is_missing(tmp_path: Path) -> None:
    settings = settings_for("defaults")
    build_systemd_root(tmp_path, settings, deployed=False)
    (tmp_path / "usr/bin/kill").unlink()
    result = run(systemd_verify_command(settings, root=str(tmp_path)))
    assert result.returncode == 1
    assert "/bin/kill is not executable" in result.stderr


@pytest.mark.parametrize("case", ["defaults", "everything-changed"])
@pytest.mark.parametrize("unit", ["{}@blue.service", "{}-migrate@blue.service"])
def test_units_exposure_is_at_most_2(tmp_path: Path, case: str, unit: str) -> None:
    settings = settings_for(case)
    build_systemd_root(tmp_path, settings)
    name = unit.format(settings.app_name)
    # --threshold is on the 0-100 scale behind the 0.0-10.0 figure that is printed.
    result = run(
        [
            "systemd-analyze", "security", "--offline=true", f"--threshold={MAX_EXPOSURE * 10:.0f}",
            f"--root={tmp_path}", name,
        ]
    )  # fmt: skip
    match = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security {name}: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE
    assert result.returncode == 0, result.stdout


def test_tmpfiles_creates_the_socket_directory_for_nginx_only(tmp_path: Path) -> None:
    settings = settings_for("defaults")
    build_systemd_root(tmp_path, settings)
    # --root resolves user and group names in the root's own databases.
    shutil.copy("/etc/passwd", tmp_path / "etc/passwd")
    shutil.copy("/etc/group", tmp_path / "etc/group")
    conf = tmp_path / "etc/tmpfiles.d/dropstack.conf"
    result = run(["systemd-tmpfiles", "--create", f"--root={tmp_path}", str(conf)])
    assert result.returncode == 0, result.stderr
    created = (tmp_path / "run/dropstack").stat()
    assert stat.S_IMODE(created.st_mode) == 0o750
    assert (created.st_uid, created.st_gid) == (0, www_data_gid())


def www_data_gid() -> int:
    import grp

    return grp.getgrnam("www-data").gr_gid


# --- what the rendered files say (pure) ---


@pytest.mark.parametrize("case", CASES)
def test_every_file_renders_completely(case: str) -> None:
    for path, file in render_site_files(settings_for(case)).items():
        assert file.content.endswith("\n"), path
        assert "{{" not in file.content and "{%" not in file.content, path
        assert (file.mode, file.owner, file.group) == ("0644", "root", "root"), path


def test_a_misspelt_template_variable_is_an_error() -> None:
    template = template_environment().from_string("listen {{ settings.portt }};")
    with pytest.raises(Exception, match="portt"):
        template.render(settings=settings_for("defaults"))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "defaults",
            {
                "/etc/nginx/conf.d/dropstack.conf",
                "/etc/nginx/dropstack/headers.conf",
                "/etc/nginx/dropstack/upstream.conf",
                "/etc/nginx/sites-available/dropstack",
                "/etc/systemd/system/dropstack@.service",
                "/etc/systemd/system/dropstack@.socket",
                "/etc/systemd/system/dropstack-migrate@.service",
                "/etc/tmpfiles.d/dropstack.conf",
            },
        ),
        ("public-ip", {"+/etc/nginx/sites-available/dropstack-default-server"}),
        ("domain-before-certificate", {"+/etc/nginx/sites-available/dropstack-default-server"}),
        (
            "domain-tls",
            {
                "+/etc/nginx/sites-available/dropstack-default-server",
                "+/etc/nginx/dropstack/tls.conf",
                "+/etc/nginx/dropstack/ffdhe2048.pem",
            },
        ),
    ],
)
def test_the_file_list(case: str, expected: set[str]) -> None:
    base = set(render_site_files(settings_for("defaults")))
    added = {p[1:] for p in expected if p.startswith("+")}
    want = (base | added) if added else expected
    assert set(render_site_files(settings_for(case))) == want


def test_the_file_list_follows_app_name() -> None:
    paths = set(render_site_files(settings_for("everything-changed")))
    assert "/etc/systemd/system/task-api@.service" in paths
    assert "/etc/nginx/sites-available/task-api" in paths
    assert not any("dropstack" in p for p in paths)


@pytest.mark.parametrize("case", ["domain-tls", "everything-changed"])
def test_json_error_bodies_are_json(case: str) -> None:
    site = render("site.conf.j2", settings_for(case))
    bodies = re.findall(r"return (\d{3}) '(.*)\\n';", site)
    assert {status for status, _ in bodies} == {"503", "504", "413", "429", "404"}
    for _, body in bodies:
        assert "error" in json.loads(body)


def test_plain_http_site_answers_every_host_without_a_domain() -> None:
    site = render("site.conf.j2", settings_for("defaults"))
    assert "listen 80 default_server;" in site and "server_name _;" in site
    assert "ssl" not in site and "Strict-Transport-Security" not in render(
        "headers.conf.j2", settings_for("defaults")
    )


def test_tls_site_redirects_http_except_acme() -> None:
    settings = settings_for("domain-tls")
    site = render("site.conf.j2", settings)
    assert "return 301 https://example.com$request_uri;" in site
    assert "location ^~ /.well-known/acme-challenge/" in site
    assert "listen 443 ssl http2;" in site
    assert "Strict-Transport-Security" in render("headers.conf.j2", settings)
    assert "ssl_reject_handshake on;" in render("default-server.conf.j2", settings)


def test_the_site_before_its_certificate_serves_http_and_the_acme_webroot() -> None:
    site = render("site.conf.j2", settings_for("domain-before-certificate"))
    assert "ssl" not in site and "return 301" not in site
    assert "location ^~ /.well-known/acme-challenge/" in site
    assert "server_name example.com;" in site


def test_service_unit_matches_the_slot_design() -> None:
    unit = render("dropstack@.service.j2", settings_for("everything-changed"))
    lines = set(unit.splitlines())
    venv = "/srv/task-api/slots/%i/.venv"
    # One set: a failure lists every missing line at once.
    assert {
        f"ExecStart={venv}/bin/gunicorn -c python:app.gunicorn_conf app.wsgi:app",
        "WorkingDirectory=/srv/task-api/slots/%i",
        "EnvironmentFile=/etc/task-api/app.env",
        "EnvironmentFile=/srv/task-api/slots/%i.env",
        "Environment=GUNICORN_BIND=unix:/run/task-api/%i.sock",
        "Environment=WEB_CONCURRENCY=9",
        "Environment=GUNICORN_GRACEFUL_TIMEOUT=120",
        "TimeoutStopSec=135",
        "Type=notify",
        "NotifyAccess=main",
        "KillMode=mixed",
        "User=tasks",
        "IPAddressAllow=localhost 10.110.0.0/20 67.207.67.2 67.207.67.3",
    } <= lines
    assert "Environment=WEB_CONCURRENCY" not in render(
        "dropstack@.service.j2", settings_for("defaults")
    )


def test_socket_is_for_nginx_only() -> None:
    socket = render("dropstack@.socket.j2", settings_for("defaults")).splitlines()
    assert {
        "ListenStream=/run/dropstack/%i.sock",
        "SocketUser=root",
        "SocketGroup=www-data",
    } <= set(socket)
    assert "SocketMode=0660" in socket


# --- upstream ---


@pytest.mark.parametrize("case", CASES)
def test_upstream_is_the_live_link_whatever_slot_serves(case: str) -> None:
    settings = settings_for(case)
    upstream = render_upstream(settings)
    servers = re.findall(r"^\s*server (\S+);", upstream, re.M)
    # One fixed path: deploys replace the link, so neither slot's socket is ever named here.
    assert servers == [f"unix:{settings.paths.live_socket}"]
    assert f"upstream {settings.nginx_id}_app {{" in upstream
    assert f"keepalive {settings.upstream_keepalive};" in upstream
    # Connections to a retired slot end soon after a switch, busy or idle (under drain_timeout).
    assert "keepalive_time 300ms;" in upstream and "keepalive_timeout 300ms;" in upstream


# --- settings ---


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("app_name", "Drop Stack"),
        ("app_name", "-x"),
        ("app_user", "root;"),
        ("domain", "Example.com"),
        ("domain", "localhost"),
        ("domain", "example.com;"),
        ("extra_server_names", ("2001:db8::1",)),
        ("extra_server_names", ["203.0.113.7"]),
        ("vpc_cidr", "10.110.0.5/20"),
        ("vpc_cidr", "vpc"),
        ("dns_servers", ("dns.google",)),
        ("trusted_proxies", ("10.0.0.0/33",)),
        ("client_max_body_size", "1 m"),
        ("rate_limit", "10/s"),
        ("rate_limit_burst", -1),
        ("gunicorn_workers", 0),
        ("gunicorn_workers", True),
        ("graceful_timeout", "30"),
        ("upstream_keepalive", 0),
        ("app_root", "srv/app"),
        ("tls_cert_dir", "/etc/letsencrypt/live/a b"),
        ("nginx_dir", "/etc/nginx/../x"),
    ],
)
def test_a_bad_value_is_a_one_line_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(SettingsError) as caught:
        HostSettings(**{"vpc_cidr": VPC, field: value})
    message = str(caught.value)
    assert message.startswith(f"{field}: ") and "\n" not in message


def test_defaults() -> None:
    s = HostSettings(vpc_cidr=VPC)
    assert (s.app_name, s.app_user, s.domain, s.tls, s.server_names) == (
        "dropstack",
        "app",
        None,
        False,
        ("_",),
    )
    assert (s.app_root, s.config_dir, s.env_file, s.runtime_dir, s.tls_cert_dir) == (
        "/srv/dropstack",
        "/etc/dropstack",
        "/etc/dropstack/app.env",
        "/run/dropstack",
        None,
    )
    p = s.paths
    assert (p.slots_dir, p.current, p.static_dir) == (
        "/srv/dropstack/slots",
        "/srv/dropstack/current",
        "/srv/dropstack/current/app/static/",
    )
    assert p.socket("green") == "/run/dropstack/green.sock"
    assert p.live_socket == "/srv/dropstack/live.sock"
    assert p.tmpfiles_conf == "/etc/tmpfiles.d/dropstack.conf"


@pytest.mark.parametrize(
    ("values", "tls", "names", "catch_all"),
    [
        ({}, False, ("_",), True),
        ({"extra_server_names": ("203.0.113.7",)}, False, ("203.0.113.7",), False),
        ({"domain": "example.com"}, True, ("example.com",), False),
        ({"domain": "example.com", "tls_certificate_ready": False}, False, ("example.com",), False),
    ],
)
def test_tls_and_server_names_follow_the_domain(
    values: dict, tls: bool, names: tuple, catch_all: bool
) -> None:
    s = HostSettings(vpc_cidr=VPC, **values)
    assert (s.tls, s.server_names, s.catch_all) == (tls, names, catch_all)


def test_from_mapping_reads_fabric_config() -> None:
    s = HostSettings.from_mapping(
        {"vpc_cidr": VPC, "domain": "example.com", "dns_servers": ["67.207.67.2"]}
    )
    assert s.dns_servers == ("67.207.67.2",) and s.tls


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"vpc_cidr": VPC, "domian": "example.com"}, r"^domian: not a setting; known: "),
    ],
)
def test_from_mapping_refuses_typos(values: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        HostSettings.from_mapping(values)


def test_templates_need_the_vpc_from_the_inventory() -> None:
    with pytest.raises(SettingsError, match=r"^vpc_cidr: required to render"):
        render_site_files(HostSettings(domain="example.com"))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"app_name": "shop"}, ("/srv/shop", "/etc/shop/app.env", "/run/shop/blue.sock")),
        (
            {"config_dir": "/etc/x"},
            ("/srv/dropstack", "/etc/x/app.env", "/run/dropstack/blue.sock"),
        ),
        ({"app_root": "/opt/d", "runtime_dir": "/run/d"}, ("/opt/d", None, "/run/d/blue.sock")),
    ],
)
def test_derived_paths_follow_what_was_set(values: dict, expected: tuple) -> None:
    s = HostSettings(vpc_cidr=VPC, **values)
    root, env_file, socket = expected
    assert s.app_root == root and s.paths.socket("blue") == socket
    assert env_file is None or s.env_file == env_file


def test_tls_cert_dir_follows_the_domain() -> None:
    s = HostSettings(vpc_cidr=VPC, domain="example.com")
    assert s.tls_cert_dir == "/etc/letsencrypt/live/example.com"


def test_nameservers_from_resolv_conf() -> None:
    text = (
        "# DO\nnameserver 67.207.67.2\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch x\n"
    )
    assert nameservers(text) == ("67.207.67.2", "fe80::1")


def test_every_setting_is_documented() -> None:
    rows = settings_docs()
    assert len(rows) == len(HostSettings.__dataclass_fields__)
    assert all(doc.strip() for _, _, doc in rows)
    assert ("vpc_cidr", "None") in {(name, default) for name, default, _ in rows}
