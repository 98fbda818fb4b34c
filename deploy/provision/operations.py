"""Operations: from a host's facts to the changes that would bring it to the desired state.

Each step is a pure function ``(Target, HostFacts) -> list[Change]``: it reads facts and the
desired state and says what it would do, without doing it. ``apply.py`` runs the changes;
``fab provision --check`` only prints them. The steps run in ``STEPS`` order; configuration
that has a validator (nginx -t, sshd -t, systemd-analyze verify) is validated before it is
activated, and a service is reloaded or restarted only when its configuration changed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from deploy import shell
from deploy.backup import provision as backup_provision
from deploy.backup.settings import BackupLayout, BackupSettings, Bucket
from deploy.host_model import SLOTS, HostSettings, SettingsError
from deploy.inventory import Inventory
from deploy.provision import database, desired, templates, tls
from deploy.provision import facts as f
from deploy.provision.files import RemoteFile, describe_difference, differing
from deploy.secrets import plan as rotation

Command = tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """One change a step would make: commands, then files (validated before they stay), then
    the commands that activate them. ``detail`` is what ``--check`` shows (diffs, packages)."""

    summary: str
    commands: tuple[Command, ...] = ()
    files: tuple[RemoteFile, ...] = ()
    validate: Command | None = None
    validate_name: str = ""
    then: tuple[Command, ...] = ()
    detail: tuple[str, ...] = ()
    grant_schema: bool = False  # grant the app user its schema privileges, as the db admin


@dataclass(frozen=True)
class Target:
    """What the operations know besides facts: the host model and the inventory."""

    host: str
    settings: HostSettings
    inv: Inventory
    contents: dict[str, str] = field(default_factory=dict)  # current file contents, for diffs
    connecting_key: str | None = None  # "type base64" of the key SSH logs in with, if known
    backup: BackupSettings | None = None  # dropstack.backup; None: not configured

    @property
    def deploy_user(self) -> str:
        return self.inv["ssh_user"]

    @property
    def first(self) -> bool:
        return self.host == self.inv.web_hosts[0].name

    @property
    def backs_up(self) -> bool:
        """This host runs the stack's backup job: the first host, with a bucket in the
        inventory and an age recipient configured (one dump per stack, not one per host)."""
        return bool(
            self.first and self.inv.has_backup_bucket and self.backup and self.backup.recipient
        )


class Unsupported(Exception):
    """The host cannot be provisioned at all (its operating system); one line."""


def _t(*commands) -> tuple[Command, ...]:
    return tuple(tuple(c) for c in commands)


def root(command) -> Command:
    return tuple(shell.as_root(command))


# --- the desired state that depends on the target ---


def directories(s: HostSettings, deploy_user: str) -> list[tuple[str, str, str, str]]:
    """(path, mode, owner, group) of the release layout. Code is not secret, so releases are
    world-readable (Nginx serves static files from them); the config dir is closed to others."""
    p = s.paths
    return [
        (p.root, "0755", "root", "root"),
        (p.releases_dir, "0755", deploy_user, deploy_user),
        (p.slots_dir, "0755", deploy_user, deploy_user),
        (p.config_dir, "0750", "root", s.app_user),
        (p.maintenance_dir, "0755", "root", "root"),
        (s.acme_webroot, "0755", "root", "root"),
    ]


def env_files(t: Target, existing_env: str) -> list[RemoteFile]:
    """The database CA and the app's environment file. SECRET_KEY is made once and kept; so
    are what `fab secrets.rotate` wrote: SECRET_KEY_FALLBACKS while set (the rotation's
    retire stage removes them, provisioning never does) and a rotated database password."""
    s, p = t.settings, t.settings.paths
    existing = desired.parse_env_file(existing_env)
    secret = existing.get("SECRET_KEY") or secrets.token_urlsafe(48)
    url = desired.app_database_url(t.inv["db_uri"], p.db_ca_cert)
    values = {
        "DROPSTACK_ENV": "production",
        "DATABASE_URL": url,
        "SECRET_KEY": secret,
        **rotation.kept_env_values(existing, url),
    }
    return [
        RemoteFile(p.db_ca_cert, t.inv["db_ca_cert"], "0644", "root", s.app_user),
        RemoteFile(
            p.env_file, rotation.env_content(values), "0640", "root", s.app_user, secret=True
        ),
    ]


def os_files(t: Target, operator_ip: str) -> dict[str, RemoteFile]:
    return desired.os_files(t.deploy_user, operator_ip)


def authorized_keys(t: Target) -> RemoteFile:
    """The deploy user's authorized_keys: exactly the stack's sshPublicKeys (rotating keys
    replaces no droplet; this step puts the new list on live hosts and removes old keys)."""
    user = t.deploy_user
    content = "".join(f"{key.strip()}\n" for key in t.inv["ssh_public_keys"])
    return RemoteFile(f"/home/{user}/.ssh/authorized_keys", content, "0600", user, user)


def wanted_paths(t: Target) -> list[str]:
    """Every file path the steps manage, for the one batched probe (contents not needed)."""
    files = [*os_files(t, "").values(), *env_files(t, ""), authorized_keys(t)]
    files += baseline_files(t, "")
    files += templates.nginx_files(t.settings) + templates.systemd_files(t.settings)
    if t.settings.domain:
        files += templates.nginx_files(replace(t.settings, tls_certificate_ready=False))
        files += tls.acme_files(t.settings, acme_settings(t))
    files += backup_files(t)
    paths = [file.path for file in files] + [desired.LOGIN_DEFS_PATH, "/etc/fstab"]
    return sorted(set(paths))


def backup_files(t: Target) -> list[RemoteFile]:
    """The backup job's files on the host that runs it (deploy/backup/provision.py), else none."""
    if not t.backs_up:
        return []
    try:
        bucket = Bucket.from_inventory(t.inv.data)
    except SettingsError as exc:
        raise Unsupported(str(exc)) from None
    return backup_provision.files(t.settings, t.backup, bucket)


def wanted_packages(t: Target) -> tuple[str, ...]:
    """The packages whose state the probe reads: the backup job's too on the host running it."""
    extra = backup_provision.PACKAGES if t.backs_up else ()
    return desired.packages_for(bool(t.settings.domain)) + extra


MANAGED_UNITS = ("nginx", "ssh", "fail2ban", "systemd-journald", "systemd-timesyncd", "auditd")


def units_to_read(t: Target) -> list[str]:
    p = t.settings.paths
    names = [*(f"{u}.service" for u in MANAGED_UNITS), *(p.unit(slot) for slot in SLOTS)]
    return names + ([BackupLayout(p).timer] if t.backs_up else [])


def facts_for(t: Target) -> list[f.Fact]:
    """The one probe provisioning makes of a host, before it plans anything."""
    s, p = t.settings, t.settings.paths
    links = [p.live_socket, p.current, *(p.slot(slot) for slot in SLOTS)]
    links += list(templates.nginx_symlinks(s))
    present = list(templates.nginx_obsolete_paths(s))
    if s.domain:
        present.append(f"{s.tls_cert_dir}/fullchain.pem")
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
        *baseline_facts(),
    ]


def baseline_facts() -> list[f.Fact]:
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
        f.modes([*desired.CRON_MODES, *desired.SSHD_CONFIG_MODES]),
        f.security_updates(),
    ]


# --- the steps ---


def check_os(t: Target, facts: f.HostFacts) -> list[Change]:
    problem = desired.check_distro(facts.os_release)
    if problem:
        raise Unsupported(problem)
    return []


def packages(t: Target, facts: f.HostFacts) -> list[Change]:
    missing = [p for p in desired.packages_for(bool(t.settings.domain)) if p not in facts.packages]
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


def file_changes(
    t: Target, facts: f.HostFacts, files: list[RemoteFile], summary: str, **activation
) -> list[Change]:
    """A Change writing the files the host does not have exactly so, with their diffs."""
    changed = differing(files, facts.files)
    if not changed:
        return []
    detail = []
    for file in changed:
        current = facts.env_file if file.secret else t.contents.get(file.path)
        detail += describe_difference(file, facts.files.get(file.path), current)
    return [Change(summary, files=tuple(changed), detail=tuple(detail), **activation)]


def ensure_running(facts: f.HostFacts, unit: str, how: str = "restart") -> list[Change]:
    """Start a service that should run and does not (a condition that is false, such as
    systemd-timesyncd's in a container, where the clock is the host's, counts as running)."""
    props = facts.unit(unit)
    enabled = props.get("UnitFileState") in ("enabled", "static", "alias", "enabled-runtime")
    running = props.get("ActiveState") == "active" or props.get("ConditionResult") == "no"
    if enabled and running:
        return []
    state = f"{props.get('UnitFileState', '?')}, {props.get('ActiveState', '?')}"
    return [
        Change(
            f"enable and start {unit}",
            commands=(root(["systemctl", "enable", "--now", unit]),),
            detail=(f"~ {unit}: {state} -> enabled, active",),
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
    unit changed (Type=notify: the restart waits until the slot is ready again)."""
    s, p = t.settings, t.settings.paths
    restarts = [root(["systemctl", "restart", p.unit(slot)]) for slot in SLOTS
                if facts.active(p.unit(slot))]  # fmt: skip
    then = (
        root(["systemctl", "daemon-reload"]),
        root(["systemd-tmpfiles", "--create", p.tmpfiles_conf]),
        *restarts,
    )
    return file_changes(
        t, facts, templates.systemd_files(s), "gunicorn units",
        validate=root(templates.systemd_verify_command(s)),
        validate_name="systemd-analyze verify", then=then,
    )  # fmt: skip


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


def nginx_activation(facts: f.HostFacts) -> tuple[Command, ...]:
    start = ["systemctl", "reload"] if facts.active("nginx") else ["systemctl", "enable", "--now"]
    return (root(["nginx", "-t"]), root([*start, "nginx"]))


def nginx_changes(t: Target, facts: f.HostFacts, s: HostSettings, summary: str) -> list[Change]:
    """The site's files from the templates, `nginx -t` before they stay, then a reload."""
    commands, detail = [], []
    for path in templates.nginx_obsolete_paths(s):
        if path in facts.present:
            commands.append(root(["rm", "-f", path]))
            detail.append(f"- {path}")
    for link, target in templates.nginx_symlinks(s).items():
        if facts.links.get(link) != target:
            commands.append(root(["ln", "-sfn", target, link]))
            detail.append(f"~ {link} -> {target}")
    files = file_changes(t, facts, templates.nginx_files(s), summary)
    if files:
        detail += files[0].detail
    if not (commands or files or not facts.active("nginx")):
        return []
    if not (commands or files):
        detail.append("~ nginx: inactive -> active")
    return [
        Change(
            summary,
            commands=tuple(commands),
            files=files[0].files if files else (),
            validate=root(["nginx", "-t"]),
            validate_name="nginx -t",
            then=nginx_activation(facts),
            detail=tuple(detail),
        )
    ]


def acme_settings(t: Target) -> tls.Acme:
    try:
        return tls.acme_from_inventory(t.inv)
    except tls.AcmeError as exc:
        raise Unsupported(str(exc)) from None


def acme_client(t: Target, facts: f.HostFacts) -> list[Change]:
    """certbot's CA bundle, and the drop-in giving certbot's timer the same one (renewals go to
    the CA stored in the renewal configuration: the inventory's acme_directory)."""
    files = tls.acme_files(t.settings, acme_settings(t))
    reload = (root(["systemctl", "daemon-reload"]),)
    return file_changes(t, facts, files, "certbot's CA", then=reload)


def tls_certificate(t: Target, facts: f.HostFacts) -> list[Change]:
    """First pass with a domain and no certificate yet: serve HTTP with the ACME webroot so
    certbot can prove the domain, then obtain it. certbot's timer renews it; its deploy hook
    validates and reloads Nginx. If certbot fails, the step fails with one line naming the
    domain and the cause, and the host keeps serving HTTP: the HTTPS site is only rendered
    (and `nginx -t`-validated) by the next step, once the certificate exists."""
    s = t.settings
    if not s.domain or f"{s.tls_cert_dir}/fullchain.pem" in facts.present:
        return []
    http_only = replace(s, tls_certificate_ready=False)
    site = nginx_changes(t, facts, http_only, "nginx site over http for certbot")
    certbot = root(certbot_command(s, acme_settings(t)))
    detail = (*(site[0].detail if site else ()), f"+ certificate for {s.domain} (certbot)")
    if site:
        return [replace(site[0], then=(*site[0].then, certbot), detail=detail)]
    return [Change(f"certificate for {s.domain}", commands=(certbot,), detail=detail)]


def certbot_command(s: HostSettings, acme: tls.Acme) -> list[str]:
    """certbot certonly over HTTP-01 against the inventory's CA (tls.certonly_command)."""
    return tls.certonly_command(s, acme)


def nginx_site(t: Target, facts: f.HostFacts) -> list[Change]:
    s = t.settings
    if s.domain and f"{s.tls_cert_dir}/fullchain.pem" not in facts.present:
        s = replace(s, tls_certificate_ready=False)
    return nginx_changes(t, facts, s, "nginx site")


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
    sshd_user_keys(t)
    reload = (root(["systemctl", "reload-or-restart", "ssh"]),)
    file = os_files(t, "")["sshd"]
    changes = file_changes(t, facts, [file], "sshd settings", validate=root(["sshd", "-t"]),
                           validate_name="sshd -t", then=reload)  # fmt: skip
    return changes or ensure_running(facts, "ssh")


def fail2ban(t: Target, facts: f.HostFacts) -> list[Change]:
    file = os_files(t, facts.ssh_client)["fail2ban"]
    restart = (root(["systemctl", "reload-or-restart", "fail2ban"]),)
    changes = file_changes(t, facts, [file], "fail2ban jail", then=restart)
    return changes + ensure_running(facts, "fail2ban")


# --- the host baseline (lynis, ssh-audit's policy, the CIS-derived host tests) ---


def baseline_files(t: Target, login_defs: str) -> list[RemoteFile]:
    """Every file the baseline steps write (login.defs from the host's own copy)."""
    files = [*banner_files(), *sysctl_files(), *core_dump_files(), *audit_files()]
    files += [*password_files(login_defs), modprobe_file(), tmp_mount_file()]
    return files


def in_container(facts: f.HostFacts) -> bool:
    return facts.container != "none"


def openssh_for_policy(t: Target, facts: f.HostFacts) -> list[Change]:
    """The policy's key exchanges need Debian's current OpenSSH (security archive): an older
    one would fail `sshd -t` on sntrup761x25519-sha512, so it is upgraded first."""
    wanted = desired.SSHD_ALGORITHMS["KexAlgorithms"]
    missing = [k for k in wanted if k not in facts.ssh_kex]
    if not missing:
        return []
    upgrade = desired.install_packages_command(["openssh-server", "openssh-client"])
    return [
        Change(
            "upgrade openssh-server",
            commands=(root(upgrade),),
            detail=(f"~ openssh: lacks {', '.join(missing)} -> the security archive's version",),
        )
    ]


def _reload_ssh(facts: f.HostFacts) -> tuple[Command, ...]:
    return (root(["systemctl", "reload-or-restart", "ssh"]),) if facts.active("ssh") else ()


def ssh_host_keys(t: Target, facts: f.HostFacts) -> list[Change]:
    """ed25519 and RSA 4096 only. The operator's known_hosts pins the ed25519 key, which is
    never replaced, so the next connection still verifies; sshd reloads to drop the others."""
    commands, detail = desired.host_key_commands(facts.host_keys)
    if not commands:
        return []
    return [
        Change(
            "ssh host keys",
            commands=tuple(root(c) for c in commands),
            then=_reload_ssh(facts),
            detail=tuple(detail),
        )
    ]


def ssh_moduli(t: Target, facts: f.HostFacts) -> list[Change]:
    strong, weak = facts.moduli
    if strong and not weak:
        return []
    return [
        Change(
            "ssh group-exchange moduli",
            commands=(root(desired.moduli_command()),),
            detail=(
                f"~ {desired.MODULI_FILE}: {strong} strong, {weak} weak -> "
                f"{desired.MODULI_SOURCE} lines of >= {desired.MODULI_MIN_BITS + 1} bits",
            ),
        )
    ]


def sshd_user_keys(t: Target) -> None:
    """Refuse before the hardened sshd would refuse the key this run connects with (or, when
    that is unknown, every listed key): the operator would be locked out after the reload."""
    keys = [t.connecting_key] if t.connecting_key else list(t.inv["ssh_public_keys"])
    problems = [p for key in keys if (p := desired.user_key_problem(key))]
    if keys and len(problems) == len(keys):
        raise Unsupported(f"ssh_public_keys: {problems[0]}; the deploy user would be locked out")


def banner_files() -> list[RemoteFile]:
    return [
        RemoteFile("/etc/issue", desired.LOGIN_BANNER),
        RemoteFile(desired.BANNER_PATH, desired.LOGIN_BANNER),
    ]


def login_banner(t: Target, facts: f.HostFacts) -> list[Change]:
    return file_changes(t, facts, banner_files(), "login banner")


def sysctl_files() -> list[RemoteFile]:
    return [
        RemoteFile(
            desired.SYSCTL_NETWORK_PATH,
            desired.sysctl_file(
                desired.SYSCTL_NETWORK, "network hardening (per network namespace: containers too)"
            ),
        ),
        RemoteFile(
            desired.SYSCTL_KERNEL_PATH,
            desired.sysctl_file(
                desired.SYSCTL_KERNEL,
                "kernel hardening (a container's /proc/sys is read-only: droplets only)",
            ),
        ),
    ]


def kernel_parameters(t: Target, facts: f.HostFacts) -> list[Change]:
    """The files, and the running values: a container never runs systemd-sysctl at boot
    (/proc/sys is read-only there), so a restarted local host is repaired by the next run."""
    network, kernel = sysctl_files()
    if in_container(facts):
        # /proc/sys is read-only in the local droplet's containers (every key: permission
        # denied), so there the files are installed and checked, and a droplet loads them
        # (systemd-sysctl at boot, and this step).
        return file_changes(t, facts, [network, kernel], "kernel parameters")
    applied = [(network, desired.SYSCTL_NETWORK), (kernel, desired.SYSCTL_KERNEL)]
    stale = [
        (file, keys) for file, keys in applied if desired.sysctl_differences(keys, facts.sysctl)
    ]
    written = differing([network, kernel], facts.files)
    loads = {file.path for file, _ in applied if file in written} | {file.path for file, _ in stale}
    then = tuple(root(["sysctl", "-q", "-p", path]) for path in sorted(loads))
    changes = file_changes(t, facts, [network, kernel], "kernel parameters", then=then)
    if changes or not then:
        return changes
    detail = tuple(
        f"~ {k}: {facts.sysctl.get(k, '?')} -> {v}"
        for _, keys in stale
        for k, v in keys.items()
        if k in desired.sysctl_differences(keys, facts.sysctl)
    )
    return [Change("kernel parameters (running values)", then=then, detail=detail)]


def core_dump_files() -> list[RemoteFile]:
    return [
        RemoteFile("/etc/security/limits.d/60-dropstack-coredump.conf", desired.CORE_LIMITS),
        RemoteFile("/etc/systemd/coredump.conf.d/60-dropstack.conf", desired.COREDUMP_CONF),
    ]


def core_dumps(t: Target, facts: f.HostFacts) -> list[Change]:
    return file_changes(t, facts, core_dump_files(), "core dumps restricted")


def password_files(login_defs: str) -> list[RemoteFile]:
    files = [RemoteFile("/etc/security/pwquality.conf.d/60-dropstack.conf", desired.PWQUALITY)]
    if login_defs:  # never written from nothing: the distribution's file is the base
        files.append(RemoteFile(desired.LOGIN_DEFS_PATH, desired.edit_login_defs(login_defs)))
    return files


def password_policy(t: Target, facts: f.HostFacts) -> list[Change]:
    """login.defs (new accounts), pwquality, and the ages of the accounts that have a
    password now (none on a dropstack host: logins take keys; chage covers any set later)."""
    with_host_copy = replace(t, contents={**t.contents, desired.LOGIN_DEFS_PATH: facts.login_defs})
    files = password_files(facts.login_defs)
    changes = file_changes(with_host_copy, facts, files, "password policy")
    maximum, minimum, warn = (str(d) for d in desired.PASSWORD_POLICY_DAYS)
    aged = [
        user
        for user, (has, mx, mn, wn) in facts.passwords.items()
        if has and (mx, mn, wn) != (maximum, minimum, warn)
    ]
    if aged:
        chage = [root(["chage", "-M", maximum, "-m", minimum, "-W", warn, u]) for u in aged]
        changes.append(
            Change(
                "password ages",
                commands=tuple(chage),
                detail=tuple(
                    f"~ {u}: max/min/warn days -> {maximum}/{minimum}/{warn}" for u in aged
                ),
            )
        )
    return changes


def audit_files() -> list[RemoteFile]:
    return [RemoteFile(desired.AUDIT_RULES_PATH, desired.AUDIT_RULES, "0640")]


def audit_rules(t: Target, facts: f.HostFacts) -> list[Change]:
    """The rules file everywhere; loaded, and auditd running, only outside a container (the
    kernel's audit subsystem belongs to the machine: an nspawn host cannot use it)."""
    if in_container(facts):
        return file_changes(t, facts, audit_files(), "audit rules (not loaded in a container)")
    load = (root(["augenrules", "--load"]),)
    return file_changes(t, facts, audit_files(), "audit rules", then=load) + ensure_running(
        facts, "auditd"
    )


def modprobe_file() -> RemoteFile:
    return RemoteFile(desired.MODPROBE_PATH, desired.modprobe_file())


def unused_modules(t: Target, facts: f.HostFacts) -> list[Change]:
    """Inert in a container (it loads no modules) and installed there too: the same file."""
    return file_changes(t, facts, [modprobe_file()], "unused kernel modules")


def tmp_mount_file() -> RemoteFile:
    return RemoteFile(desired.TMP_MOUNT_PATH, desired.TMP_MOUNT)


def temp_mounts(t: Target, facts: f.HostFacts) -> list[Change]:
    """A droplet: tmpfs /tmp (nodev,nosuid) from the next boot on, /dev/shm remounted
    nodev,nosuid,noexec now and by fstab. A container: nspawn owns its mounts; nothing."""
    if in_container(facts):
        return []
    enable = (root(["systemctl", "daemon-reload"]), root(["systemctl", "enable", "tmp.mount"]))
    changes = file_changes(t, facts, [tmp_mount_file()], "tmpfs /tmp (from next boot)", then=enable)
    fstab = desired.edit_fstab_shm(facts.fstab)
    if fstab != facts.fstab:
        remount = (root(["mount", "-o", "remount", desired.SHM]),)
        changes += [
            Change(
                f"{desired.SHM} nodev,nosuid,noexec",
                files=(RemoteFile("/etc/fstab", fstab),),
                then=remount,
                detail=(f"+ /etc/fstab: {desired.FSTAB_SHM}",),
            )
        ]
    return changes


def file_modes(t: Target, facts: f.HostFacts) -> list[Change]:
    """cron's and sshd's files closed to other users (those present: minbase has no cron)."""
    wanted = {**desired.CRON_MODES, **desired.SSHD_CONFIG_MODES}
    wrong = {
        p: m
        for p, m in wanted.items()
        if facts.modes.get(p, "absent") != "absent" and facts.modes[p].split()[0] != m
    }
    if not wrong:
        return []
    commands = tuple(root(["chmod", mode, path]) for path, mode in sorted(wrong.items()))
    detail = tuple(f"~ {p}: {facts.modes[p].split()[0]} -> {m}" for p, m in sorted(wrong.items()))
    return [Change("cron and sshd file modes", commands=commands, detail=detail)]


def security_updates(t: Target, facts: f.HostFacts) -> list[Change]:
    if not facts.security_updates:
        return []
    upgrade = desired.upgrade_packages_command(list(facts.security_updates))
    return [
        Change(
            f"security updates ({len(facts.security_updates)} packages)",
            commands=(root(upgrade),),
            detail=tuple(f"~ package {p} (security)" for p in facts.security_updates),
        )
    ]


def backup_job(t: Target, facts: f.HostFacts) -> list[Change]:
    """The backup job's packages, env file (the bucket's key: values never shown), recipient
    and units on the host that runs it, verified before daemon-reload, then the timer enabled.
    Nothing when backups are not set up (no bucket in the inventory, or no recipient)."""
    if not t.backs_up:
        return []
    missing = [name for name in backup_provision.PACKAGES if name not in facts.packages]
    files = backup_files(t)
    changed = differing(files, facts.files)
    timer = BackupLayout(t.settings.paths).timer
    if not (missing or changed):
        return ensure_running(facts, timer)
    detail = [f"+ package {name}" for name in missing]
    for file in changed:
        # A secret file's host copy is never read for a diff: which file differs is enough.
        current = None if file.secret else t.contents.get(file.path)
        state = facts.files.get(file.path)
        if file.secret and state not in (None, "absent"):
            detail.append(f"~ {file.path}: differs (values redacted)")
        else:
            detail += describe_difference(file, state, current)
    install = (root(desired.install_packages_command(missing)),) if missing else ()
    validate = root(backup_provision.verify_command(t.settings)) if changed else None
    return [
        Change(
            "backup job and timer",
            commands=install,
            files=tuple(changed),
            validate=validate,
            validate_name="systemd-analyze verify" if changed else "",
            then=tuple(tuple(c) for c in backup_provision.activation(t.settings)),
            detail=tuple(detail),
        )
    ]


Operation = Callable[[Target, f.HostFacts], list[Change]]

# The steps, in order, with the names printed as they run (and by --check).
STEPS: tuple[tuple[str, Operation], ...] = (
    ("check operating system", check_os),
    ("deploy user's ssh keys", deploy_keys),
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
    # Before any Nginx site: the static upstream names the link, so a serving host needs it first.
    ("live slot link", live_link),
    ("certbot's certificate authority", acme_client),
    ("tls certificate (certbot)", tls_certificate),
    ("nginx site", nginx_site),
    ("host firewall (ufw)", host_firewall),
    ("security updates", security_updates),
    ("kernel parameters", kernel_parameters),
    ("core dumps restricted", core_dumps),
    ("password policy", password_policy),
    ("audit rules for privilege use", audit_rules),
    ("unused kernel modules", unused_modules),
    ("tmp and shm mount options", temp_mounts),
    ("login banner", login_banner),
    # Before sshd's settings, which name the banner, the moduli file and the host keys.
    ("openssh for the hardened policy", openssh_for_policy),
    ("ssh host keys", ssh_host_keys),
    ("ssh moduli", ssh_moduli),
    ("sshd hardening", sshd),
    ("cron and sshd file modes", file_modes),
    ("fail2ban sshd jail", fail2ban),
    # Last: the site serves without it; the first host only, when backups are set up.
    ("backup job and timer", backup_job),
)


def steps_for(settings: HostSettings, first: bool = True) -> tuple[tuple[str, Operation], ...]:
    """The steps this host runs: the certificate steps only with a domain; the database, which
    all hosts share, and its backup, from the first host only."""
    skipped = ({acme_client, tls_certificate} if not settings.domain else set()) | (
        {database_privileges, backup_job} if not first else set()
    )
    return tuple(s for s in STEPS if s[1] not in skipped)
