"""Bringing the local stack up and down on this machine: the code that runs the pure modules' plans.

Everything the stack creates is named by ``network.largest_plan()`` (namespaces, links), the nft
table, or lives under the state directory, so ``down`` can find and remove all of it after any
kind of failure, and touches nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fabric import Connection
from invoke.exceptions import UnexpectedExit

from deploy.local import database, hosts, nftables
from deploy.local.image import IMAGES, cache_root
from deploy.local.image_cache import ensure_image, write_into_root
from deploy.local.network import (
    ADMIN_CIDR,
    VPC_CIDR,
    HostPlan,
    StackPlan,
    host_network_commands,
    largest_plan,
    plan_stack,
)
from deploy.local.outputs import local_inventory
from infra.firewall_rules import (
    POSTGRES_PORT,
    database_trusted_tags,
    web_inbound_rules,
    web_outbound_rules,
)

Say = Callable[[str], None]

DEFAULT_STATE_DIR = "/var/lib/dropstack/local"
WEB_TAG = "web"  # the tag infra/ gives web droplets; the database trusts it
SSH_READY_SECONDS = 60
CLOUD_INIT_SECONDS = 120
STOP_SECONDS = 30
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
DOWN_HINT = "run `fab local.down`, then `fab local.up` again"


class LocalStackError(Exception):
    """Something stopped the task; ``str()`` is the one line the user sees, saying what to do."""


@dataclass(frozen=True)
class StatePaths:
    """Where a local stack keeps what it made. Only ``key`` survives ``down``."""

    root: Path

    @classmethod
    def from_environment(cls) -> StatePaths:
        # The same variable and default deploy/inventory.py reads the inventory from.
        return cls(Path(os.environ.get("DROPSTACK_STATE_DIR") or DEFAULT_STATE_DIR))

    @property
    def key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def public_key(self) -> Path:
        return self.root / "id_ed25519.pub"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.json"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def record(self) -> Path:
        return self.root / "stack.json"

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    @property
    def db(self) -> Path:
        return self.root / "db"

    def host_dir(self, host: HostPlan) -> Path:
        return self.hosts / host.name

    def host_root(self, host: HostPlan) -> Path:
        return self.host_dir(host) / "root"

    def console_log(self, host: HostPlan) -> Path:
        return self.host_dir(host) / "console.log"


# ---------------------------------------------------------------------------------------------
# up


def up(web_count: int, say: Say) -> None:
    paths = StatePaths.from_environment()
    with _exclusive(paths):
        _up(paths, web_count, say)


def _up(paths: StatePaths, web_count: int, say: Say) -> None:
    started = time.monotonic()
    plan = plan_stack(web_count)
    if _already_running(paths, web_count, say):
        return
    leftovers = leftover_parts(paths)
    if leftovers:
        raise LocalStackError(
            f"a half-made local stack exists ({', '.join(leftovers[:3])}); {DOWN_HINT}"
        )
    nameservers = _host_nameservers()
    images = {role: ensure_image(recipe, cache_root(), say) for role, recipe in IMAGES.items()}
    warm_start = time.monotonic()
    public_key = _ensure_key_pair(paths, say)
    stack_id = _write_record(paths, web_count, images)

    say(f"network: namespaces and links for {', '.join(h.name for h in plan.hosts)}")
    for host in plan.hosts:
        for command in host_network_commands(host):
            _run(command)
    IP_FORWARD.write_text("1\n")
    say("firewall: nft table inet dropstack (cloud firewall, NAT to package archives)")
    _apply_firewall(plan, nameservers)

    for host in plan.hosts:
        say(f"{host.name}: fresh root on the {host.role} image, booting")
        _prepare_root(paths, host, images[host.role], public_key, stack_id, nameservers)
        _start_container(paths, host)
    with _quiet_paramiko():
        _wait_for_ssh(paths, plan)
        say(f"ssh: every host takes the deploy key ({time.monotonic() - warm_start:.1f} s)")
        for host in plan.hosts:
            _wait_for_cloud_init(paths, host)

    say("db: configuring PostgreSQL like a managed database (TLS, port 25060, trusted sources)")
    credentials = database.Credentials.generate()
    tls = database.make_tls_material(plan.db.private_ip)
    try:
        _configure_database(paths, plan, credentials, tls)
    except (UnexpectedExit, paramiko.SSHException, OSError) as exc:
        raise LocalStackError(
            f"db: configuring PostgreSQL failed: {_last_words(exc)}; {DOWN_HINT}"
        ) from None
    _write_outputs(paths, plan, credentials, tls)
    now = time.monotonic()
    say(
        f"up: {len(plan.web)} web host(s) and db ready in {now - started:.1f} s "
        f"({now - warm_start:.1f} s after images); inventory {paths.inventory}"
    )


def _already_running(paths: StatePaths, web_count: int, say: Say) -> bool:
    record = _read_record(paths)
    if not (record and _is_running(paths, record)):
        return False
    if record["web_count"] != web_count:
        raise LocalStackError(
            f"a local stack with {record['web_count']} web host(s) is running; "
            "run `fab local.down` first to change --web-count"
        )
    say(f"the local stack is already running ({web_count} web host(s)); `fab local.status`")
    return True


def _host_nameservers() -> list[str]:
    nameservers = hosts.upstream_nameservers(
        _read("/etc/resolv.conf"), _read("/run/systemd/resolve/resolv.conf")
    )
    if not nameservers:
        raise LocalStackError(
            "no non-loopback IPv4 nameserver in /etc/resolv.conf or "
            "/run/systemd/resolve/resolv.conf; the hosts need one for apt"
        )
    return nameservers


def _write_record(paths: StatePaths, web_count: int, images: dict[str, Path]) -> str:
    """Written before anything is made, so `down` knows what to restore after any failure."""
    record = {
        "web_count": web_count,
        "stack_id": secrets.token_hex(4),
        "ip_forward_before": IP_FORWARD.read_text().strip(),
        "images": {role: str(path) for role, path in images.items()},
    }
    _write_private(paths.record, json.dumps(record, indent=2) + "\n", mode=0o644)
    return record["stack_id"]


def _write_outputs(
    paths: StatePaths,
    plan: StackPlan,
    credentials: database.Credentials,
    tls: database.TlsMaterial,
) -> None:
    """The inventory last: its presence means the stack is complete."""
    passwords = {
        database.ADMIN_USER: credentials.admin_password,
        database.DB_USER: credentials.app_password,
    }
    _write_private(paths.db / "ca.crt", tls.ca_cert_pem, mode=0o644)
    _write_private(paths.db / "credentials.json", json.dumps(passwords, indent=2) + "\n")
    inventory = local_inventory(
        plan,
        key_path=paths.key,
        app_password=credentials.app_password,
        ca_cert_pem=tls.ca_cert_pem,
        source=str(paths.inventory),
    )
    _write_private(paths.inventory, json.dumps(inventory.data, indent=2) + "\n")


def _apply_firewall(plan: StackPlan, nameservers: list[str]) -> None:
    text = nftables.ruleset(
        plan,
        web_inbound=web_inbound_rules((ADMIN_CIDR,), behind_load_balancer=False),
        web_outbound=web_outbound_rules(VPC_CIDR),
        db_trusted_tags=database_trusted_tags(WEB_TAG),
        tag_addresses={WEB_TAG: [h.private_ip for h in plan.web]},
        resolvers=nameservers,
    )
    _run(["nft", "-f", "/dev/stdin"], stdin=text)


def _ensure_key_pair(paths: StatePaths, say: Say) -> str:
    """The stack's SSH key pair, made once and kept across `down` like a key in ~/.ssh."""
    if paths.key.exists() and paths.public_key.exists():
        return paths.public_key.read_text().strip()
    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    public = f"{public} dropstack-local\n"
    _write_private(paths.key, private)
    _write_private(paths.public_key, public, mode=0o644)
    say(f"generated the SSH key pair {paths.key}")
    return public.strip()


def _prepare_root(
    paths: StatePaths,
    host: HostPlan,
    image: Path,
    public_key: str,
    stack_id: str,
    nameservers: list[str],
) -> None:
    """An overlay with the cached image as its read-only lower layer: a clean droplet in
    milliseconds where a copy of the image takes seconds; ``down`` discards the upper layer."""
    host_dir = paths.host_dir(host)
    for part in ("upper", "work", "root"):
        (host_dir / part).mkdir(parents=True, exist_ok=True)
    root = paths.host_root(host)
    _run(hosts.overlay_mount_command(image, host_dir))
    seed = hosts.seed_files(host, public_key=public_key, stack_id=stack_id, nameservers=nameservers)
    for path, content in seed.items():
        write_into_root(root, path, content, mode=0o600 if "/seed/" in path else 0o644)


def _start_container(paths: StatePaths, host: HostPlan) -> None:
    """Detached in its own session, so the container outlives this `fab` process."""
    log = paths.console_log(host).open("wb")
    process = subprocess.Popen(
        hosts.nspawn_command(host, paths.host_root(host)),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    (paths.host_dir(host) / "nspawn.pid").write_text(f"{process.pid}\n")


def _wait_for_ssh(paths: StatePaths, plan: StackPlan) -> None:
    """Until the deploy user can log in to every host, verifying each host's own key."""
    deadline = time.monotonic() + SSH_READY_SECONDS
    waiting = list(plan.hosts)
    known: dict[str, str] = {}
    while waiting:
        for host in list(waiting):
            if not _nspawn_leaders(host):
                raise LocalStackError(
                    f"{host.name}: the container stopped while booting; see "
                    f"{paths.console_log(host)}, then {DOWN_HINT}"
                )
            line = _ssh_login_works(paths, host)
            if line:
                known[host.name] = line
                waiting.remove(host)
        if not waiting:
            break
        if time.monotonic() > deadline:
            host = waiting[0]
            raise LocalStackError(
                f"{host.name}: SSH not ready after {SSH_READY_SECONDS} s; see its console log "
                f"{paths.console_log(host)}, then {DOWN_HINT}"
            )
        time.sleep(0.25)
    _write_private(paths.known_hosts, "".join(known[h.name] for h in plan.hosts), mode=0o644)


def _ssh_login_works(paths: StatePaths, host: HostPlan) -> str | None:
    """The host's known_hosts line once a key login as the deploy user succeeds, else None.

    sshd only starts once cloud-init has generated the host keys, so the key file read from the
    host's root is the key sshd presents; anything else is rejected.
    """
    if not _port_answers(host.ssh_address, 22, timeout=0.5):
        return None
    key_file = paths.host_root(host) / "etc/ssh/ssh_host_ed25519_key.pub"
    try:
        line = hosts.known_hosts_line(host, key_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        with _ssh_client(line) as client:
            client.connect(
                host.ssh_address,
                username=hosts.DEPLOY_USER,
                key_filename=str(paths.key),
                look_for_keys=False,
                allow_agent=False,
                timeout=3,
                auth_timeout=3,
                banner_timeout=3,
            )
    except (paramiko.SSHException, OSError):
        return None
    return line


def _ssh_client(known_hosts_text: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    for line in known_hosts_text.splitlines():
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        if entry:
            for name in entry.hostnames:
                client.get_host_keys().add(name, entry.key.get_name(), entry.key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


@contextlib.contextmanager
def _quiet_paramiko():
    """While polling a booting host, a refused or reset connection is expected; paramiko's
    transport thread would print each one as a traceback."""
    logger = logging.getLogger("paramiko.transport")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _port_answers(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-") if port == 22 else True
    except OSError:
        return False


def connection(paths: StatePaths, host: HostPlan) -> Connection:
    """A Fabric connection to a local host as the deploy user, checking the host's key."""
    conn = Connection(
        host.ssh_address,
        user=hosts.DEPLOY_USER,
        connect_timeout=10,
        connect_kwargs={
            "key_filename": [str(paths.key)],
            "look_for_keys": False,
            "allow_agent": False,
        },
    )
    conn.client.load_host_keys(str(paths.known_hosts))
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


def _wait_for_cloud_init(paths: StatePaths, host: HostPlan) -> None:
    """Until cloud-init reports done; its config stage restarts sshd, so a refused or dropped
    connection in that moment is retried rather than taken for a failure."""
    deadline = time.monotonic() + CLOUD_INIT_SECONDS
    while True:
        try:
            with connection(paths, host) as conn:
                result = conn.run(
                    f"timeout {CLOUD_INIT_SECONDS} cloud-init status --wait --format json",
                    hide=True,
                    warn=True,
                )
            break
        except (paramiko.SSHException, OSError) as exc:
            if time.monotonic() > deadline:
                raise LocalStackError(
                    f"{host.name}: SSH failed while waiting for cloud-init ({_last_words(exc)}); "
                    f"see {paths.console_log(host)}, then {DOWN_HINT}"
                ) from None
            time.sleep(0.5)
    try:
        report = json.loads(result.stdout[result.stdout.find("{") :])
    except json.JSONDecodeError:
        report = {"status": "unknown", "errors": [result.stderr.strip() or "no output"]}
    if report.get("status") != "done" or report.get("errors"):
        first = (report.get("errors") or [report.get("status")])[0]
        raise LocalStackError(
            f"{host.name}: cloud-init did not finish cleanly ({first}); see "
            f"{paths.console_log(host)} and /var/log/cloud-init.log on the host, then {DOWN_HINT}"
        )


def _configure_database(
    paths: StatePaths,
    plan: StackPlan,
    credentials: database.Credentials,
    tls: database.TlsMaterial,
) -> None:
    db = plan.db
    files = [
        (f"{database.TLS_DIR}/ca.crt", tls.ca_cert_pem, "0644"),
        (f"{database.TLS_DIR}/server.crt", tls.server_cert_pem, "0644"),
        (f"{database.TLS_DIR}/server.key", tls.server_key_pem, "0600"),
        (f"{database.CONF_DIR}/conf.d/dropstack.conf", database.server_conf(db.private_ip), "0644"),
        (
            f"{database.CONF_DIR}/pg_hba.conf",
            database.pg_hba([h.private_ip for h in plan.web]),
            "0640",
        ),
    ]
    with connection(paths, db) as conn:
        # Uploaded over SFTP into a directory only the deploy user can read: Invoke feeds
        # `in_stream` one byte per tick (seconds for a certificate), and a password never
        # belongs on a command line.
        staging = conn.run("mktemp -d", hide=True).stdout.strip()
        try:
            for index, (path, content, mode) in enumerate(files):
                staged = f"{staging}/{index}"
                conn.put(io.BytesIO(content.encode()), staged)
                conn.run(
                    f"sudo -n install -D -m {mode} -o postgres -g postgres {staged} "
                    f"{shlex.quote(path)}",
                    hide=True,
                )
            for command in database.configure_commands():
                conn.run(f"sudo -n {command}", hide=True)
            ready = database.ready_command(db.private_ip)
            conn.run(
                f"for i in $(seq 60); do {ready} && exit 0; sleep 0.5; done; {ready}", hide=True
            )
            conn.put(io.BytesIO(database.roles_sql(credentials).encode()), f"{staging}/roles.sql")
            # The deploy user's shell opens the file; psql runs as postgres on that stdin.
            conn.run(
                f"sudo -n -u postgres psql --no-psqlrc --quiet --port={POSTGRES_PORT} "
                f"--dbname=postgres < {staging}/roles.sql",
                hide=True,
            )
        finally:
            conn.run(f"rm -rf {staging}", hide=True, warn=True)


# ---------------------------------------------------------------------------------------------
# down


def down(say: Say) -> None:
    paths = StatePaths.from_environment()
    with _exclusive(paths):
        _down(paths, say)


def _down(paths: StatePaths, say: Say) -> None:
    record = _read_record(paths)
    plan = largest_plan()
    removed: list[str] = []

    _stop_containers(plan, say, removed)
    for host in plan.hosts:
        root = paths.host_root(host)
        if _is_mounted(root):
            _unmount(root)
            removed.append(f"overlay {host.name}")
    for host in plan.hosts:
        # Root-side links first: deleting one end of a veth pair deletes both at once, whereas a
        # deleted namespace takes its links along only later, in the kernel's own time.
        for name in host.root_link_names:
            if _link_exists(name):
                _run_unless_gone(["ip", "link", "delete", name], lambda n=name: not _link_exists(n))
                removed.append(f"link {name}")
        if Path(host.netns_path).exists():
            _run_unless_gone(
                ["ip", "netns", "delete", host.netns],
                lambda h=host: not Path(h.netns_path).exists(),
            )
            removed.append(f"netns {host.netns}")
    if _firewall_table_exists():
        _run(nftables.delete_table_command(), hint="")
        removed.append("nft table inet dropstack")
    if record and record.get("ip_forward_before") == "0":
        IP_FORWARD.write_text("0\n")
    for path in (paths.hosts, paths.db):
        if path.exists():
            shutil.rmtree(path)
            removed.append(str(path))
    for path in (paths.inventory, paths.known_hosts, paths.record):
        if path.exists():
            path.unlink()
            removed.append(str(path))
    if removed:
        say(f"down: removed {', '.join(removed)}; kept the image cache and {paths.key}")
    else:
        say("down: no local stack here; nothing to do")


def _stop_containers(plan: StackPlan, say: Say, removed: list[str]) -> None:
    """SIGTERM to nspawn makes it send SIGRTMIN+3 to the container's systemd: a clean poweroff."""
    leaders = {host.name: _nspawn_leaders(host) for host in plan.hosts}
    running = {name: pids for name, pids in leaders.items() if pids}
    if running:
        say(f"stopping {', '.join(running)}")
    for pids in running.values():
        for pid in pids:
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while any(_alive(pid) for pids in running.values() for pid in pids):
        if time.monotonic() > deadline:
            say(f"containers still running after {STOP_SECONDS} s; killing them")
            for pids in running.values():
                for pid in pids:
                    _signal(pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    removed.extend(f"container {name}" for name in running)
    # This process is not their parent, so the exited nspawns are reaped by PID 1, on its own
    # schedule; waiting briefly leaves a process list without their zombies.
    _wait_reaped([pid for pids in running.values() for pid in pids])
    # Whatever is left in a namespace (a container whose nspawn died) goes too; killing a PID
    # namespace's init takes the whole namespace with it.
    for host in plan.hosts:
        if Path(host.netns_path).exists():
            pids = _run(["ip", "netns", "pids", host.netns], hint="").split()
            for pid in pids:
                _signal(int(pid), signal.SIGKILL)
            _wait_gone([int(p) for p in pids])


# ---------------------------------------------------------------------------------------------
# status


@dataclass(frozen=True)
class HostStatus:
    host: HostPlan
    running: bool
    ssh: bool


def status() -> tuple[list[HostStatus], list[str], StatePaths]:
    """Each host of the recorded stack with whether it runs and answers SSH, plus leftovers."""
    paths = StatePaths.from_environment()
    record = _read_record(paths)
    rows = []
    if record:
        for host in plan_stack(record["web_count"]).hosts:
            running = bool(_nspawn_leaders(host))
            ssh = running and _port_answers(host.ssh_address, 22, timeout=1)
            rows.append(HostStatus(host, running, ssh))
    return rows, leftover_parts(paths) if not record else [], paths


def running_plan() -> tuple[StackPlan, StatePaths]:
    paths = StatePaths.from_environment()
    record = _read_record(paths)
    if not record or not _is_running(paths, record):
        raise LocalStackError("no local stack is running; start one with `fab local.up`")
    return plan_stack(record["web_count"]), paths


# ---------------------------------------------------------------------------------------------
# what exists on this machine


def leftover_parts(paths: StatePaths) -> list[str]:
    """Anything a local stack makes that exists now, by name (empty on a clean machine)."""
    found = []
    for host in largest_plan().hosts:
        if _nspawn_leaders(host):
            found.append(f"container {host.name}")
        if Path(host.netns_path).exists():
            found.append(f"netns {host.netns}")
        found += [f"link {n}" for n in host.root_link_names if _link_exists(n)]
        if _is_mounted(paths.host_root(host)):
            found.append(f"overlay {paths.host_root(host)}")
    if _firewall_table_exists():
        found.append("nft table inet dropstack")
    found += [str(p) for p in (paths.record, paths.inventory, paths.hosts) if p.exists()]
    return found


def _is_running(paths: StatePaths, record: dict) -> bool:
    plan = plan_stack(record["web_count"])
    return paths.inventory.exists() and all(_nspawn_leaders(h) for h in plan.hosts)


def _nspawn_leaders(host: HostPlan) -> list[int]:
    """The systemd-nspawn processes running this host (not their forked children)."""
    matches = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if hosts.is_nspawn_of([a.decode(errors="replace") for a in argv if a], host):
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z":
                matches[int(entry.name)] = int(ppid)
    return [pid for pid, ppid in matches.items() if ppid not in matches]


def _firewall_table_exists() -> bool:
    if shutil.which("nft") is None:
        return False
    return (
        subprocess.run(nftables.list_table_command(), capture_output=True, check=False).returncode
        == 0
    )


def _is_mounted(path: Path) -> bool:
    target = str(path)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == target:
            return True
    return False


def _unmount(path: Path) -> None:
    for _ in range(10):
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.5)
    _run(["umount", "--lazy", str(path)], hint="")


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _run_unless_gone(command: list[str], gone: Callable[[], bool]) -> None:
    """Run a removal; if it fails because the thing vanished meanwhile, that is success too."""
    try:
        _run(command, hint="")
    except LocalStackError:
        if not gone():
            raise


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pids: list[int], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _wait_reaped(pids: list[int], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# ---------------------------------------------------------------------------------------------
# files and commands on this machine


@contextlib.contextmanager
def _exclusive(paths: StatePaths):
    """One `up` or `down` at a time: two at once would build and tear down the same names."""
    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (paths.root / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LocalStackError(
                "another `fab local.up` or `fab local.down` is running; wait for it to finish"
            ) from None
        yield


def _read_record(paths: StatePaths) -> dict | None:
    try:
        return json.loads(paths.record.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _write_private(path: Path, content: str, mode: int = 0o600) -> None:
    """Write atomically with the final mode from the start (no window where a secret is 0644)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as out:
        out.write(content)
    os.chmod(temporary, mode)
    temporary.replace(path)


def _last_words(exc: Exception) -> str:
    if isinstance(exc, UnexpectedExit):
        output = exc.result.stderr.strip() or exc.result.stdout.strip() or "no output"
        return f"`{exc.result.command}` said {output.splitlines()[-1]}"
    return str(exc) or type(exc).__name__


def _run(command: list[str], *, stdin: str | None = None, hint: str = DOWN_HINT) -> str:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise LocalStackError(
            f"`{shlex.join(command)}` failed: {last}" + (f"; {hint}" if hint else "")
        )
    return result.stdout
