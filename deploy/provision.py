"""`fab provision`: bring a bare Debian droplet to a production web host, idempotently.

Each step probes the host first and changes only what differs, prints `changed` or `ok`, and
restarts or reloads a service only when its configuration changed. Configuration that has a
validator (nginx -t, sshd -t, systemd-analyze verify) is validated before it is activated.
"""

from __future__ import annotations

import shlex
from dataclasses import replace

from fabric import Connection
from invoke.exceptions import Exit

from deploy import desired_state as ds
from deploy import templates
from deploy.host_settings import SLOTS, HostSettings, nameservers_from_resolv_conf
from deploy.inventory import Inventory
from deploy.remote_files import RemoteFile, ValidationFailed, install_files
from deploy.steps import HostLog, StepFailed, as_root, last_words, run_on_hosts, say
from deploy.targets import connect, resolve_inventory, select_hosts


def directories(settings: HostSettings, deploy_user: str) -> list[tuple[str, str, str, str]]:
    """(path, mode, owner, group) of the release layout. Code is not secret, so releases are
    world-readable (Nginx serves static files from them); the config dir is closed to others."""
    p = settings.paths
    return [
        (settings.app_root, "0755", "root", "root"),
        (p.releases_dir, "0755", deploy_user, deploy_user),
        (p.slots_dir, "0755", deploy_user, deploy_user),
        (settings.config_dir, "0750", "root", settings.app_user),
        (settings.acme_webroot, "0755", "root", "root"),
    ]


def host_settings(
    base: dict, inv: Inventory, public_ip: str, private_ip: str, resolv_conf: str
) -> HostSettings:
    """The template settings for one host: the operator's values (fabric.yaml `dropstack.host`)
    plus what the target says: VPC, domain, the names the site answers to, DNS resolvers."""
    names = [ip for ip in (public_ip, private_ip, inv["load_balancer_ip"]) if ip]
    values = {
        "vpc_cidr": inv["vpc_cidr"],
        "domain": inv["domain"],
        "extra_server_names": names,
        "dns_servers": list(nameservers_from_resolv_conf(resolv_conf)),
        **base,
    }
    return HostSettings.from_mapping(values)


def service_active(c: Connection, unit: str) -> bool:
    return as_root(c, f"systemctl is-active --quiet {shlex.quote(unit)}", hide=True, warn=True).ok


def check_os(c: Connection, host: str) -> bool:
    problem = ds.check_distro(c.run("cat /etc/os-release", hide=True).stdout)
    if problem:
        raise StepFailed(host, "check operating system", problem)
    return False


def ensure_packages(c: Connection, packages: tuple[str, ...]) -> bool:
    missing = c.run(ds.missing_packages_command(packages), hide=True).stdout.split()
    if not missing:
        return False
    # Services' postinst scripts start them; nginx's default site is replaced further on.
    as_root(c, ds.install_packages_command(missing), hide=True)
    return True


def ensure_file_and_restart(c: Connection, file: RemoteFile, unit: str, validate=None) -> bool:
    """Install one config file; reload-or-restart its service only when the file changed."""
    if not install_files(c, [file], validate=validate):
        return False
    as_root(c, f"systemctl reload-or-restart {unit}", hide=True)
    return True


def ensure_service_running(c: Connection, unit: str) -> bool:
    """Enabled and running; a unit whose start condition is false (systemd-timesyncd in a
    container, where the host's clock is the container's clock) counts as running."""
    state = as_root(
        c, f"systemctl show -p UnitFileState -p ActiveState -p ConditionResult {unit}", hide=True
    ).stdout
    props = dict(line.split("=", 1) for line in state.splitlines() if "=" in line)
    if props.get("UnitFileState") == "enabled" and (
        props.get("ActiveState") == "active" or props.get("ConditionResult") == "no"
    ):
        return False
    as_root(c, f"systemctl enable --now {unit}", hide=True)
    return True


def ensure_app_user(c: Connection, user: str, home: str) -> bool:
    if c.run(f"id -u {user}", hide=True, warn=True).ok:
        return False
    as_root(
        c,
        f"useradd --system --user-group --home-dir {home} --no-create-home "
        f"--shell /usr/sbin/nologin {user}",
        hide=True,
    )
    return True


def ensure_directories(c: Connection, dirs: list[tuple[str, str, str, str]]) -> bool:
    """Each (path, mode, owner, group) exists exactly so; one probe for all of them."""
    probe = " ".join(shlex.quote(path) for path, *_ in dirs)
    current = as_root(
        c,
        f'for d in {probe}; do stat -c \'%n %a %U %G\' "$d" 2>/dev/null || echo "$d absent"; done',
        hide=True,
    ).stdout.splitlines()
    wanted = [f"{p} {int(m, 8):o} {o} {g}" for p, m, o, g in dirs]
    if current == wanted:
        return False
    for path, mode, owner, group in dirs:
        as_root(c, f"install -d -m {mode} -o {owner} -g {group} {shlex.quote(path)}", hide=True)
    return True


def ensure_env_file(c: Connection, inv: Inventory, settings: HostSettings) -> bool:
    """The app's environment file. SECRET_KEY is made once, on the host, and kept after that."""
    existing = as_root(c, f"cat {settings.env_file} 2>/dev/null || true", hide=True).stdout
    secret = ds.parse_env_file(existing).get("SECRET_KEY")
    if not secret:
        secret = c.run(
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'", hide=True
        ).stdout.strip()
    ca_path = f"{settings.config_dir}/db-ca.crt"
    values = {
        "DROPSTACK_ENV": "production",
        "DATABASE_URL": ds.app_database_url(inv["db_uri"], ca_path),
        "SECRET_KEY": secret,
    }
    files = [
        RemoteFile(ca_path, inv["db_ca_cert"], "0644", "root", settings.app_user),
        RemoteFile(
            settings.env_file, ds.env_file_content(values), "0640", "root", settings.app_user
        ),
    ]
    return bool(install_files(c, files))


def ensure_systemd_units(c: Connection, settings: HostSettings) -> bool:
    """Units and tmpfiles; verified before daemon-reload, slots restarted only when changed."""
    files = templates.systemd_files(settings)
    try:
        written = install_files(c, files, validate=templates.systemd_verify_command(settings))
    except ValidationFailed as exc:
        raise StepFailed(c.host, "systemd units", f"systemd-analyze verify: {exc}") from None
    if not written:
        return False
    as_root(c, "systemctl daemon-reload", hide=True)
    as_root(c, f"systemd-tmpfiles --create {shlex.quote(settings.paths.tmpfiles_conf)}", hide=True)
    # Running slots pick up a changed unit only on restart; Type=notify makes this wait until ready.
    for slot in ("blue", "green"):
        if service_active(c, f"{settings.app_name}@{slot}"):
            as_root(c, f"systemctl restart {settings.app_name}@{slot}", hide=True)
    return True


def adopt_live_slot_command(settings: HostSettings) -> str:
    """Create the live.sock link on a host deployed before it existed, pointing it at the running
    slot whose release is `current` (the one serving), so switching Nginx to the static upstream
    keeps serving. Prints the slot it linked. An existing link is never touched: deploys own it.
    With no release running nothing is linked and the site answers 503 until the first deploy."""
    p, name = settings.paths, settings.app_name
    link = shlex.quote(p.live_socket)
    checks = " ".join(
        f'[ "$(readlink {shlex.quote(f"{p.slots_dir}/{slot}")})" = "$cur" ] && '
        f"systemctl is-active --quiet {shlex.quote(f'{name}@{slot}.service')} && "
        f"ln -sfn {shlex.quote(p.socket(slot))} {link}.tmp && mv -T {link}.tmp {link} && "
        f"echo {slot} && exit 0;"
        for slot in SLOTS
    )
    current = shlex.quote(p.current)
    return f"[ -L {link} ] && exit 0; cur=$(readlink {current}) || exit 0; {checks} true"


def ensure_live_link(c: Connection, settings: HostSettings) -> bool:
    return bool(as_root(c, adopt_live_slot_command(settings), hide=True).stdout.strip())


def ensure_nginx_site(c: Connection, settings: HostSettings, host: str) -> bool:
    """Nginx config from templates; `nginx -t` before every reload, old config kept on failure."""
    obsolete = " ".join(shlex.quote(p) for p in templates.nginx_obsolete_paths(settings))
    changed = bool(as_root(c, f"rm -v -f {obsolete}", hide=True).stdout.strip())
    files = templates.nginx_files(settings)
    try:
        written = install_files(c, files, validate="nginx -t")
    except ValidationFailed as exc:
        raise StepFailed(host, "nginx site", f"nginx -t failed, old config kept: {exc}") from None
    changed |= ensure_symlinks(c, templates.nginx_symlinks(settings))
    if not (changed or written) and service_active(c, "nginx"):
        return False
    result = as_root(c, "nginx -t", hide=True, warn=True)
    if not result.ok:
        raise StepFailed(host, "nginx site", f"nginx -t failed: {last_words(result.stderr)}")
    if service_active(c, "nginx"):
        as_root(c, "systemctl reload nginx", hide=True)
    else:
        as_root(c, "systemctl enable --now nginx", hide=True)
    return True


def ensure_symlinks(c: Connection, links: dict[str, str]) -> bool:
    changed = False
    for link, target in links.items():
        if c.run(f"readlink {shlex.quote(link)}", hide=True, warn=True).stdout.strip() != target:
            as_root(c, f"ln -sfn {shlex.quote(target)} {shlex.quote(link)}", hide=True)
            changed = True
    return changed


def ensure_ufw(c: Connection) -> bool:
    if ds.ufw_is_as_wanted(as_root(c, "ufw status verbose", hide=True, warn=True).stdout):
        return False
    for command in ds.ufw_commands():
        as_root(c, command, hide=True)
    return True


def certificate_ready(c: Connection, settings: HostSettings) -> bool:
    if not settings.domain:
        return False
    return as_root(c, f"test -f {settings.tls_cert_dir}/fullchain.pem", hide=True, warn=True).ok


def ensure_tls_certificate(c: Connection, settings: HostSettings) -> bool:
    """Obtain the domain's Let's Encrypt certificate with certbot's webroot plugin, once.
    certbot's own timer renews it; its deploy hook reloads Nginx."""
    if certificate_ready(c, settings):
        return False
    as_root(
        c,
        f"certbot certonly --non-interactive --agree-tos --webroot -w {settings.acme_webroot} "
        f"--register-unsafely-without-email -d {shlex.quote(settings.domain)} "
        "--deploy-hook 'systemctl reload nginx'",
        hide=True,
    )
    return True


def provision_host(c: Connection, inv: Inventory, base: dict, log: HostLog) -> HostLog:
    """All provisioning steps, in order, for one connected host."""
    host = log.host
    resolv_conf = c.run("cat /etc/resolv.conf", hide=True, warn=True).stdout
    web = next(h for h in inv.web_hosts if h.name == host)
    settings = host_settings(base, inv, web.public_ip, web.private_ip, resolv_conf)
    # SSH_CLIENT is "address port port": the address this operator reaches the host from.
    operator_ip = c.run("echo $SSH_CLIENT", hide=True).stdout.split()[0]
    os_files = ds.os_files(inv["ssh_user"], operator_ip)
    log.step("check operating system", lambda: check_os(c, host))
    log.step("apt packages", lambda: ensure_packages(c, ds.packages_for(bool(settings.domain))))
    log.step("unattended security upgrades", lambda: bool(install_files(c, [os_files["apt"]])))
    log.step(
        "persistent journald",
        lambda: ensure_file_and_restart(c, os_files["journald"], "systemd-journald"),
    )
    log.step("time sync", lambda: ensure_service_running(c, "systemd-timesyncd"))
    log.step("app user", lambda: ensure_app_user(c, settings.app_user, settings.app_root))
    log.step(
        "release layout",
        lambda: ensure_directories(c, directories(settings, inv["ssh_user"])),
    )
    log.step("app environment and secrets", lambda: ensure_env_file(c, inv, settings))
    log.step("systemd units for gunicorn", lambda: ensure_systemd_units(c, settings))
    # Before any Nginx site: the static upstream names the link, so a serving host needs it first.
    log.step("live slot link", lambda: ensure_live_link(c, settings))
    if settings.domain and not certificate_ready(c, settings):
        # First pass: HTTP with the ACME webroot, so certbot can prove the domain; then TLS.
        http_only = replace(settings, tls_certificate_ready=False)
        log.step("nginx site (http, for certbot)", lambda: ensure_nginx_site(c, http_only, host))
        log.step("tls certificate (certbot)", lambda: ensure_tls_certificate(c, settings))
    log.step("nginx site", lambda: ensure_nginx_site(c, settings, host))
    log.step("host firewall (ufw)", lambda: ensure_ufw(c))
    log.step(
        "sshd hardening",
        lambda: ensure_file_and_restart(c, os_files["sshd"], "ssh", validate="sshd -t"),
    )
    log.step(
        "fail2ban sshd jail",
        lambda: (
            ensure_file_and_restart(c, os_files["fail2ban"], "fail2ban")
            | ensure_service_running(c, "fail2ban")
        ),
    )
    return log


def provision_targets(c, stack: str | None, inventory: str | None, hosts: str | None, serial: bool):
    """Provision every selected host (in parallel unless ``serial``) and print a summary."""
    inv = resolve_inventory(stack, inventory)
    targets = {h.name: h for h in select_hosts(inv, hosts)}
    base = dict(c.config.get("dropstack", {}).get("host", {}) or {})
    say(f"provisioning {', '.join(targets)} from {inv.source}")

    def work(name: str) -> HostLog:
        conn = connect(inv, targets[name], c.config)
        try:
            return provision_host(conn, inv, base, HostLog(name))
        finally:
            conn.close()

    outcomes = run_on_hosts(list(targets), work, parallel=not serial)
    failures = [str(o) for o in outcomes.values() if isinstance(o, Exception)]
    for name, outcome in outcomes.items():
        say(outcome.summary() if isinstance(outcome, HostLog) else f"{name}: FAILED")
    if failures:
        raise Exit("\n".join(f"provision failed: {f}" for f in failures), code=1)
