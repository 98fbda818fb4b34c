"""Operations: from a host's facts to the changes that would bring it to the desired state.

Each step is a pure function ``(Target, HostFacts) -> list[Change]``: it reads facts and the
desired state and says what it would do, without doing it. ``apply.py`` runs the changes;
``fab provision --check`` only prints them. The steps run in ``STEPS`` order; configuration
that has a validator (nginx -t, sshd -t, systemd-analyze verify) is validated before it is
activated, and a service is reloaded or restarted only when its configuration changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from deploy import shell
from deploy.backup import provision as backup_provision
from deploy.backup.settings import BackupLayout
from deploy.host_model import SLOTS, HostSettings
from deploy.provision import baseline, database, desired, site_steps, templates, tls
from deploy.provision import facts as f
from deploy.provision.backup_step import backup_files, backup_job
from deploy.provision.change import (
    Change,
    Target,
    Unsupported,
    ensure_running,
    file_changes,
    root,
)
from deploy.provision.schedule_step import job_files, job_timers, job_units_fact, scheduled_jobs
from deploy.provision.target_files import authorized_keys, directories, env_files, os_files


def wanted_paths(t: Target) -> list[str]:
    """Every file path the steps manage, for the one batched probe (contents not needed)."""
    files = [*os_files(t, "").values(), *env_files(t, ""), authorized_keys(t)]
    files += baseline.baseline_files(t, "")
    files += templates.nginx_files(t.settings) + templates.systemd_files(t.settings)
    if t.settings.obtains_certificate:
        files += templates.nginx_files(replace(t.settings, tls_certificate_ready=False))
        files += tls.acme_files(t.settings, site_steps.acme_settings(t))
    files += backup_files(t) + job_files(t)
    paths = [file.path for file in files] + [desired.LOGIN_DEFS_PATH, "/etc/fstab"]
    return sorted({*paths, desired.SYSSTAT_DEFAULT_PATH})


def wanted_packages(t: Target) -> tuple[str, ...]:
    """The packages whose state the probe reads: the backup job's too on the host running it."""
    extra = backup_provision.PACKAGES if t.backs_up else ()
    return desired.packages_for(t.settings.obtains_certificate) + extra


MANAGED_UNITS = ("nginx", "ssh", "fail2ban", "systemd-journald", "systemd-timesyncd", "auditd")
# The host baseline's services and timers (process accounting, sysstat, the scans).
BASELINE_UNITS = (
    "acct.service",
    *desired.SYSSTAT_UNITS,
    desired.CHKROOTKIT_TIMER,
    f"{desired.AIDE_CHECK_UNIT}.timer",
)


def units_to_read(t: Target) -> list[str]:
    p = t.settings.paths
    names = [*(f"{u}.service" for u in MANAGED_UNITS), *(p.unit(slot) for slot in SLOTS)]
    names += BASELINE_UNITS
    names += job_timers(t)
    return names + ([BackupLayout(p).timer] if t.backs_up else [])


def facts_for(t: Target) -> list[f.Fact]:
    """The one probe provisioning makes of a host, before it plans anything."""
    s, p = t.settings, t.settings.paths
    links = [p.live_socket, p.current, *(p.slot(slot) for slot in SLOTS)]
    links += list(templates.nginx_symlinks(s))
    present = [*templates.nginx_obsolete_paths(s), *desired.RETIRED_FAIL2BAN_JAILS]
    tls_facts = []
    if s.obtains_certificate:
        present += [f"{s.tls_cert_dir}/fullchain.pem", s.tls_certificate_file]
        tls_facts.append(f.certbot_renewal(tls.renewal_conf_path(s)))
    return [
        f.os_release(),
        f.resolv_conf(),
        f.ssh_client(),
        f.installed_packages(wanted_packages(t)),
        f.file_states(wanted_paths(t)),
        f.directories([d[0] for d in directories(s, t.deploy_user)]),
        f.links(links),
        f.present(present),
        f.units(units_to_read(t)),
        f.user(s.app_user),
        f.secret_file(p.env_file),
        f.ufw_status(),
        job_units_fact(t),
        f.text_file("web_unit", f"{p.unit_dir}/{s.app_name}@.service"),
        *tls_facts,
        *baseline_facts(t),
    ]


def baseline_facts(t: Target) -> list[f.Fact]:
    """What the host-baseline steps read (docs/security.md "Host baseline")."""
    return [
        f.container(),
        f.ssh_host_keys(desired.HOST_KEY_DIR),
        f.ssh_kex(),
        f.moduli_state(desired.MODULI_FILE, desired.MODULI_MIN_BITS),
        f.sysctl_values([*desired.SYSCTL_NETWORK, *desired.SYSCTL_KERNEL]),
        f.text_file("login_defs", desired.LOGIN_DEFS_PATH),
        f.text_file("fstab", "/etc/fstab"),
        f.passwords(),
        f.modes([*desired.CRON_MODES, *desired.SSHD_CONFIG_MODES, f"/home/{t.deploy_user}"]),
        f.security_updates(),
        f.text_file("sysstat_default", desired.SYSSTAT_DEFAULT_PATH),
        f.compilers(desired.COMPILERS),
        f.baseline_present([desired.AIDE_DB]),
    ]


# --- the steps ---


def check_os(t: Target, facts: f.HostFacts) -> list[Change]:
    problem = desired.check_distro(facts.os_release)
    if problem:
        raise Unsupported(problem)
    return []


def packages(t: Target, facts: f.HostFacts) -> list[Change]:
    wanted = desired.packages_for(t.settings.obtains_certificate)
    missing = [p for p in wanted if p not in facts.packages]
    if not missing:
        return []
    # Services' postinst scripts start them; nginx's default site is replaced further on.
    return [
        Change(
            f"install {', '.join(missing)}",
            commands=(root(desired.install_packages_command(missing)),),
            detail=tuple(f"+ package {name}" for name in missing),
        )
    ]


def unattended_upgrades(t: Target, facts: f.HostFacts) -> list[Change]:
    return file_changes(t, facts, [os_files(t, "")["apt"]], "apt periodic upgrades")


def journald(t: Target, facts: f.HostFacts) -> list[Change]:
    restart = (root(["systemctl", "restart", "systemd-journald"]),)
    file = os_files(t, "")["journald"]
    return file_changes(t, facts, [file], "journald storage", then=restart)


def time_sync(t: Target, facts: f.HostFacts) -> list[Change]:
    return ensure_running(facts, "systemd-timesyncd")


def deploy_keys(t: Target, facts: f.HostFacts) -> list[Change]:
    """Refused when the key this run connects with is not in the new list: writing it would
    lock the operator out (``connecting_key`` is None with ssh-agent, where it cannot be known)."""
    if not t.inv["ssh_public_keys"]:
        raise Unsupported("ssh_public_keys is empty: the deploy user would accept no key")
    keys = {" ".join(k.split()[:2]) for k in t.inv["ssh_public_keys"]}
    if t.connecting_key and t.connecting_key not in keys:
        raise Unsupported(
            "the key this run connects with (ssh_key_path) is not in ssh_public_keys; "
            "writing the list would lock you out: add it, or connect with a listed key"
        )
    validate = root(["ssh-keygen", "-l", "-f", authorized_keys(t).path])
    return file_changes(t, facts, [authorized_keys(t)], "deploy user's keys", validate=validate,
                        validate_name="ssh-keygen -l")  # fmt: skip


def app_user(t: Target, facts: f.HostFacts) -> list[Change]:
    s = t.settings
    shell_path = "/usr/sbin/nologin"
    if facts.user is None:
        add = ["useradd", "--system", "--user-group", "--home-dir", s.app_root,
               "--no-create-home", "--shell", shell_path, s.app_user]  # fmt: skip
        return [Change(f"create user {s.app_user}", commands=(root(add),),
                       detail=(f"+ user {s.app_user} (system, {shell_path})",))]  # fmt: skip
    have = (facts.user["home"], facts.user["shell"])
    if have == (s.app_root, shell_path):
        return []
    mod = ["usermod", "--home", s.app_root, "--shell", shell_path, s.app_user]
    return [Change(f"repair user {s.app_user}", commands=(root(mod),),
                   detail=(f"~ user {s.app_user}: home, shell {have} -> "
                           f"{(s.app_root, shell_path)}",))]  # fmt: skip


def release_layout(t: Target, facts: f.HostFacts) -> list[Change]:
    dirs = directories(t.settings, t.deploy_user)
    wrong = [d for d in dirs if facts.dirs.get(d[0]) != f"{int(d[1], 8):o} {d[2]} {d[3]}"]
    if not wrong:
        return []
    commands = tuple(
        root(["install", "-d", "-m", mode, "-o", owner, "-g", group, path])
        for path, mode, owner, group in wrong
    )
    detail = tuple(
        f"~ {path}/: {facts.dirs.get(path) or 'absent'} -> {int(mode, 8):o} {owner} {group}"
        for path, mode, owner, group in wrong
    )
    return [Change("release directories", commands=commands, detail=detail)]


def app_environment(t: Target, facts: f.HostFacts) -> list[Change]:
    files = env_files(t, facts.env_file)
    return file_changes(t, facts, files, "app environment (values never shown)")


def database_privileges(t: Target, facts: f.HostFacts) -> list[Change]:
    """The app user may create its tables in schema public (PostgreSQL 15+ on a managed cluster
    gives that only to the database's owner, the admin): granted once, by the admin."""
    if facts.db_privileges is None:
        return []
    missing = database.missing_privileges(facts.db_privileges)
    if not missing:
        return []
    user = t.inv["db_user"]
    return [
        Change(
            f"grant {user} {', '.join(missing)} on schema public",
            grant_schema=True,
            detail=(f"+ {user}: {', '.join(missing)} on schema public (granted by the admin)",),
        )
    ]


def systemd_units(t: Target, facts: f.HostFacts) -> list[Change]:
    """Units and tmpfiles; verified before daemon-reload; running slots restarted only when a
    unit changed (Type=notify: the restart waits until the slot is ready again). Not when the
    app's command changed (the app contract's entry point, server, config): the running slot
    holds a release of the old app, which the new command may not start, so it keeps its
    process and the next `fab deploy` starts the new release under the new units, behind the
    health gate."""
    s, p = t.settings, t.settings.paths
    files = templates.systemd_files(s)
    web_unit = next(
        file.content for file in files if file.path == f"{p.unit_dir}/{s.app_name}@.service"
    )
    command_changed = bool(facts.web_unit) and exec_start(facts.web_unit) != exec_start(web_unit)
    restarts = [root(["systemctl", "restart", p.unit(slot)]) for slot in SLOTS
                if facts.active(p.unit(slot)) and not command_changed]  # fmt: skip
    then = (
        root(["systemctl", "daemon-reload"]),
        root(["systemd-tmpfiles", "--create", p.tmpfiles_conf]),
        *restarts,
    )
    changes = file_changes(
        t, facts, files, "gunicorn units",
        validate=root(templates.systemd_verify_command(s)),
        validate_name="systemd-analyze verify", then=then,
    )  # fmt: skip
    if changes and command_changed:
        note = "  the app's command changed: running slots keep theirs until the next fab deploy"
        changes = [replace(changes[0], detail=(*changes[0].detail, note))]
    return changes


def exec_start(unit: str) -> list[str]:
    return [line for line in unit.splitlines() if line.startswith("ExecStart=")]


def live_link(t: Target, facts: f.HostFacts) -> list[Change]:
    """Create the live.sock link on a host deployed before it existed, pointing it at the
    running slot whose release is `current` (the one serving). An existing link is never
    touched: deploys own it. With no release running nothing is linked and the site answers
    503 until the first deploy."""
    p = t.settings.paths
    if facts.links.get(p.live_socket) or not facts.links.get(p.current):
        return []
    for slot in SLOTS:
        if facts.links.get(p.slot(slot)) == facts.links[p.current] and facts.active(p.unit(slot)):
            link = replace_link_command(p.socket(slot), p.live_socket)
            return [Change(f"link live.sock to slot {slot}", commands=(root(link),),
                           detail=(f"+ {p.live_socket} -> {p.socket(slot)}",))]  # fmt: skip
    return []


def replace_link_command(target: str, link: str) -> list[str]:
    """Point a symlink elsewhere atomically: readers see the old target or the new, never none."""
    return shell.chain(["ln", "-sfn", target, link + ".tmp"], ["mv", "-T", link + ".tmp", link])


def host_firewall(t: Target, facts: f.HostFacts) -> list[Change]:
    if desired.ufw_is_as_wanted(facts.ufw):
        return []
    rules = [line for line in facts.ufw.partition("\n--")[2].splitlines()[1:] if line.strip()]
    wanted = [f"{action} {port}" for action, port in desired.UFW_RULES]
    detail = ("~ ufw: " + (facts.ufw.splitlines()[0] if facts.ufw else "not installed"),)
    detail += tuple(f"  host has: {rule.strip()}" for rule in rules)
    detail += (f"  wanted: default deny incoming; {'; '.join(wanted)} (v4 and v6)",)
    commands = tuple(root(c) for c in desired.ufw_commands())
    return [Change("reset ufw to the policy", commands=commands, detail=detail)]


def sshd(t: Target, facts: f.HostFacts) -> list[Change]:
    baseline.sshd_user_keys(t)
    reload = (root(["systemctl", "reload-or-restart", "ssh"]),)
    file = os_files(t, "")["sshd"]
    changes = file_changes(t, facts, [file], "sshd settings", validate=root(["sshd", "-t"]),
                           validate_name="sshd -t", then=reload)  # fmt: skip
    return changes or ensure_running(facts, "ssh")


def fail2ban(t: Target, facts: f.HostFacts) -> list[Change]:
    """jail.local, and the jail.d file hosts provisioned before it had removed (same settings)."""
    file = os_files(t, facts.ssh_client)["fail2ban"]
    restart = (root(["systemctl", "reload-or-restart", "fail2ban"]),)
    changes = file_changes(t, facts, [file], "fail2ban jail", then=restart)
    retired = [path for path in desired.RETIRED_FAIL2BAN_JAILS if path in facts.present]
    if retired:
        remove = tuple(root(["rm", "-f", path]) for path in retired)
        detail = tuple(f"- {path} (its settings are in {file.path})" for path in retired)
        first = changes[0] if changes else Change("fail2ban jail", then=restart)
        changes = [replace(first, commands=remove + first.commands, detail=detail + first.detail)]
    return changes + ensure_running(facts, "fail2ban")


Operation = Callable[[Target, f.HostFacts], list[Change]]

# The steps, in order, with the names printed as they run (and by --check).
STEPS: tuple[tuple[str, Operation], ...] = (
    ("check operating system", check_os),
    ("deploy user's ssh keys", deploy_keys),
    # Read by the packages as they are installed: needrestart only lists, acct knows containers.
    ("needrestart list-only, acct condition", baseline.before_packages),
    ("apt packages", packages),
    ("unattended security upgrades", unattended_upgrades),
    ("persistent journald", journald),
    ("time sync", time_sync),
    ("app user", app_user),
    ("release layout", release_layout),
    ("app environment and secrets", app_environment),
    # Before the first deploy's migrations: the app user must be able to create its tables.
    ("database privileges", database_privileges),
    ("systemd units for gunicorn", systemd_units),
    # The jobs run from the live release, in the app's sandbox; before AIDE's baseline (it
    # writes units). Every host runs the step: the first installs the timers, the others
    # remove any they had.
    ("scheduled jobs (first host only)", scheduled_jobs),
    # Before any Nginx site: the static upstream names the link, so a serving host needs it first.
    ("live slot link", live_link),
    ("certbot's certificate authority", site_steps.acme_client),
    ("tls certificate (certbot)", site_steps.tls_certificate),
    ("tls renewal without reload", site_steps.tls_renewal),
    ("nginx site", site_steps.nginx_site),
    ("host firewall (ufw)", host_firewall),
    *baseline.BEFORE_SSHD,
    ("sshd hardening", sshd),
    ("fail2ban sshd jail", fail2ban),
    *baseline.AFTER_SSHD,
    # Last: the site serves without it; the first host only, when backups are set up.
    ("backup job and timer", backup_job),
)


def steps_for(settings: HostSettings, first: bool = True) -> tuple[tuple[str, Operation], ...]:
    """The steps this host runs: the certificate steps only with a domain the host serves
    HTTPS for itself (not behind a balancer that ends TLS); the database, which all hosts
    share, and its backup, from the first host only."""
    tls_steps = {site_steps.acme_client, site_steps.tls_certificate, site_steps.tls_renewal}
    skipped = (tls_steps if not settings.obtains_certificate else set()) | (
        {database_privileges, backup_job} if not first else set()
    )
    return tuple(s for s in STEPS if s[1] not in skipped)
