"""End to end: `fab local.up` on this machine, real SSH, real PostgreSQL, real nftables, `down`.

Needs root and the Debian packages bin/setup installs; builds the images on first run (about a
minute). It brings up its own stack and removes it, so it refuses to start when one exists.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shlex
import socket
import stat
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paramiko
import pytest

from deploy.inventory import INVENTORY_KEYS, REDIS_KEYS, Inventory, load_inventory
from deploy.local import redis, redis_setup
from deploy.local.image import IMAGES, cache_root, image_dir
from deploy.local.lifecycle import StatePaths, leftover_parts
from deploy.local.machine import alive
from deploy.local.network import ADMIN_CIDR, REDIS_ADDRESS, ROUTER_ADDRESS, plan_stack
from deploy.local.redis import REDIS_PORT
from infra.cloudinit import render_user_data
from infra.firewall_rules import POSTGRES_PORT, web_inbound_rules
from tests.redis_probe import parse, ping_command

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).with_name("fab")


def fab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(FAB), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass(frozen=True)
class MachineState:
    netns: frozenset[str]
    links: frozenset[str]
    nspawn: frozenset[int]


def machine_state() -> MachineState:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return MachineState(
        netns=frozenset(line.split()[0] for line in netns.splitlines() if line.strip()),
        links=frozenset(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()),
        nspawn=frozenset(live_nspawn_pids()),
    )


def live_nspawn_pids() -> list[int]:
    """systemd-nspawn processes that still run (exited ones await PID 1's reaping: not running)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0]
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if Path(argv0.decode(errors="replace")).name == "systemd-nspawn" and state != "Z":
            pids.append(int(entry.name))
    return pids


@dataclass
class Stack:
    before: MachineState
    paths: StatePaths
    inventory: Inventory
    up_seconds: float
    public_key: str


@pytest.fixture(scope="module")
def stack():
    if os.geteuid() != 0:
        pytest.fail("the local droplet end-to-end test must run as root")
    paths = StatePaths.from_environment()
    if leftover_parts(paths):
        pytest.fail("a local stack exists; run `fab local.down` first (this test makes its own)")
    before = machine_state()
    started = time.monotonic()
    result = fab("local.up")
    up_seconds = time.monotonic() - started
    if result.returncode != 0:
        down = fab("local.down")
        pytest.fail(f"fab local.up failed: {result.stdout}{result.stderr}{down.stderr}")
    print(result.stdout)
    yield Stack(
        before=before,
        paths=paths,
        inventory=load_inventory(paths.inventory),
        up_seconds=up_seconds,
        public_key=paths.public_key.read_text().strip(),
    )
    if leftover_parts(paths):  # an earlier failure kept test_down from running
        fab("local.down")


def client_for(stack: Stack, address: str) -> paramiko.SSHClient:
    """SSH as the deploy user, accepting only the host key recorded at `up`."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(stack.paths.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        address,
        username=stack.inventory["ssh_user"],
        key_filename=stack.inventory["ssh_key_path"],
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client


def run(client: paramiko.SSHClient, command: str, timeout: float = 60) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out, err = stdout.read().decode(), stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


def host_addresses(stack: Stack) -> dict[str, str]:
    """name -> the address this machine reaches it on (the db by its VPC address)."""
    web = {h.name: h.public_ip for h in stack.inventory.web_hosts}
    return {**web, "db": stack.inventory["db_host"]}


@pytest.fixture(scope="module")
def web1(stack):
    client = client_for(stack, stack.inventory.web_hosts[0].public_ip)
    yield client
    client.close()


@pytest.fixture(scope="module")
def db(stack):
    client = client_for(stack, stack.inventory["db_host"])
    yield client
    client.close()


# ---------------------------------------------------------------------------------------------
# the droplet, as cloud-init made it


def test_inventory_is_private_and_complete(stack):
    mode = stat.S_IMODE(stack.paths.inventory.stat().st_mode)
    assert mode == 0o600
    data = json.loads(stack.paths.inventory.read_text())
    assert list(data) == [*INVENTORY_KEYS, *REDIS_KEYS]
    assert data["stack"] == "local" and data["db_port"] == POSTGRES_PORT
    assert stat.S_IMODE(stack.paths.key.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["web-1", "db"])
def test_deploy_user_has_the_user_data_key_and_passwordless_sudo(stack, name):
    with client_for(stack, host_addresses(stack)[name]) as client:
        assert run(client, "id -un")[1].strip() == "deploy"
        assert "sudo" in run(client, "id -nG")[1].split()
        code, _, err = run(client, "sudo -n true")
        assert code == 0, err
        keys = run(client, "cat ~/.ssh/authorized_keys")[1]
        assert stack.public_key in keys.splitlines()


@pytest.mark.parametrize("name", ["web-1", "db"])
def test_user_data_on_the_host_is_what_infra_renders(stack, name):
    expected = render_user_data(
        hostname=name, deploy_user="deploy", ssh_public_keys=[stack.public_key]
    )
    with client_for(stack, host_addresses(stack)[name]) as client:
        code, seen, err = run(client, "sudo -n cat /var/lib/cloud/instance/user-data.txt")
    assert code == 0, err
    assert seen == expected


@pytest.mark.parametrize("name", ["web-1", "db"])
def test_cloud_init_finished_without_errors_and_no_unit_failed(stack, name):
    with client_for(stack, host_addresses(stack)[name]) as client:
        report = json.loads(run(client, "cloud-init status --format json")[1])
        system = run(client, "systemctl is-system-running")[1].strip()
        failed = run(client, "systemctl --failed --no-legend --plain")[1].strip()
        datasource = run(client, "cloud-init query platform")[1].strip()
    assert report["status"] == "done" and report["errors"] == [], report
    assert system == "running", failed
    assert datasource == "nocloud"


def test_web_host_has_its_name_and_both_addresses(web1):
    assert run(web1, "hostname")[1].strip() == "web-1"
    lines = run(web1, "ip -4 -o addr show")[1].splitlines()
    addresses = {line.split()[1].split("@")[0]: line.split()[3] for line in lines}
    assert addresses == {"lo": "127.0.0.1/8", "eth0": "198.18.0.11/24", "eth1": "198.18.1.11/24"}


def test_root_login_is_refused_even_with_an_authorized_key(stack, web1):
    # With the key in root's authorized_keys, only PermitRootLogin can refuse the login.
    code, _, err = run(
        web1,
        "sudo -n install -d -m 700 /root/.ssh && "
        "sudo -n cp ~/.ssh/authorized_keys /root/.ssh/authorized_keys",
    )
    assert code == 0, err
    try:
        client = paramiko.SSHClient()
        client.load_host_keys(str(stack.paths.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        with pytest.raises(paramiko.AuthenticationException):
            client.connect(
                "198.18.0.11",
                username="root",
                key_filename=str(stack.paths.key),
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
            )
        client.close()
    finally:
        run(web1, "sudo -n rm -f /root/.ssh/authorized_keys")


def test_password_login_is_refused_for_a_user_with_a_password(web1):
    code, _, err = run(
        web1,
        "sudo -n useradd --create-home pwprobe && echo 'pwprobe:Probe-Pass-1' | sudo -n chpasswd",
    )
    assert code == 0, err
    transport = paramiko.Transport(("198.18.0.11", 22))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as offered:
            transport.auth_none("pwprobe")
        assert "password" not in offered.value.allowed_types
        assert "keyboard-interactive" not in offered.value.allowed_types
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_password("pwprobe", "Probe-Pass-1")
    finally:
        transport.close()
        run(web1, "sudo -n userdel --remove pwprobe")


# ---------------------------------------------------------------------------------------------
# the managed-style database


@pytest.fixture(scope="module")
def psql_on_web1(stack, web1):
    """A real PostgreSQL client on web-1, installed with apt through this machine's NAT."""
    code, out, err = run(
        web1,
        "sudo -n env DEBIAN_FRONTEND=noninteractive sh -c "
        "'apt-get update -q && apt-get install -y -q --no-install-recommends postgresql-client'",
        timeout=600,
    )
    assert code == 0, (out + err)[-2000:]
    sftp = web1.open_sftp()
    sftp.putfo(io.BytesIO(stack.inventory["db_ca_cert"].encode()), "/tmp/db-ca.pem")
    sftp.close()
    return web1


def psql(client: paramiko.SSHClient, uri: str, sql: str) -> tuple[int, str, str]:
    return run(client, f"psql '{uri}' -X -A -t -c \"{sql}\"")


def test_db_accepts_tls_from_web_with_the_inventory_uri(stack, psql_on_web1):
    code, out, err = psql(
        psql_on_web1,
        stack.inventory["db_uri"],
        "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()",
    )
    assert code == 0, err
    assert out.strip() == "app|t"


def test_db_certificate_verifies_against_the_inventory_ca(stack, psql_on_web1):
    uri = stack.inventory["db_uri"].replace(
        "sslmode=require", "sslmode=verify-full&sslrootcert=/tmp/db-ca.pem"
    )
    code, out, err = psql(psql_on_web1, uri, "select current_database()")
    assert code == 0, err
    assert out.strip() == "app"


def test_db_refuses_a_connection_without_tls(stack, psql_on_web1):
    uri = stack.inventory["db_uri"].replace("sslmode=require", "sslmode=disable")
    code, _, err = psql(psql_on_web1, uri, "select 1")
    assert code != 0
    assert "pg_hba.conf rejects connection" in err and "no encryption" in err


def test_db_refuses_a_wrong_password(stack, psql_on_web1):
    uri = stack.inventory["db_uri"].replace("app:", "app:wrong", 1)
    code, _, err = psql(psql_on_web1, uri, "select 1")
    assert code != 0
    assert "password authentication failed" in err


def test_db_admin_exists_with_its_own_password(stack, psql_on_web1):
    password = json.loads((stack.paths.db / "credentials.json").read_text())["doadmin"]
    inv = stack.inventory
    uri = f"postgresql://doadmin:{password}@{inv['db_host']}:{inv['db_port']}/app?sslmode=require"
    sql = "select rolcreaterole from pg_roles where rolname = current_user"
    code, out, err = psql(psql_on_web1, uri, sql)
    assert code == 0, err
    assert out.strip() == "t"


def test_db_listens_only_on_the_vpc_address_at_the_managed_port(db):
    listening = run(db, "sudo -n ss -Hltn")[1].split()
    assert f"198.18.1.100:{POSTGRES_PORT}" in listening
    assert not any(word.endswith(":5432") for word in listening)


# ---------------------------------------------------------------------------------------------
# the cloud firewall, from this machine and from a web host


def tcp_outcome(address: str, port: int) -> str:
    """'open', 'closed' (allowed through, nothing listening) or 'blocked' (the firewall said no)."""
    try:
        with socket.create_connection((address, port), timeout=3):
            return "open"
    except ConnectionRefusedError:
        return "closed"
    except OSError as exc:
        if exc.errno == errno.EHOSTUNREACH:
            return "blocked"
        return f"unexpected: {exc}"


def allowed_web_ports() -> set[int]:
    rules = web_inbound_rules((ADMIN_CIDR,), behind_load_balancer=False)
    return {rule.ports[0] for rule in rules if rule.protocol == "tcp"}


@pytest.mark.parametrize(
    ("target", "port", "expected"),
    [
        ("web-1", 22, "open"),  # admin SSH
        ("web-1", 80, "closed"),  # allowed; a bare droplet has no web server yet
        ("web-1", 443, "closed"),
        ("web-1", 8080, "blocked"),
        ("web-1", 5432, "blocked"),
        ("web-1-vpc", 22, "open"),  # the firewall covers the VPC interface the same way
        ("web-1-vpc", 8080, "blocked"),
        ("db", POSTGRES_PORT, "blocked"),  # only the web tier may reach the database
        ("db", 22, "open"),  # local only: up configures the database over SSH
        ("db", 5432, "blocked"),
    ],
)
def test_firewall_from_this_machine(stack, target, port, expected):
    addresses = {**host_addresses(stack), "web-1-vpc": stack.inventory.web_hosts[0].private_ip}
    if target.startswith("web"):
        assert (port in allowed_web_ports()) == (expected != "blocked")
    assert tcp_outcome(addresses[target], port) == expected


def ping(address: str, timeout: float = 2) -> bool:
    """One ICMP echo from a raw socket (this machine has no ping binary)."""
    ident = os.getpid() & 0xFFFF

    def packet(checksum: int) -> bytes:
        return struct.pack("!BBHHH", 8, 0, checksum, ident, 1) + b"dropstack-ping"

    data = packet(0)  # an even number of bytes, as the 16-bit checksum needs
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    checksum = ~(total + (total >> 16)) & 0xFFFF
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet(checksum), (address, 0))
        except PermissionError:
            return False  # this machine's output chain refused to send it: blocked

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply, (source, _) = sock.recvfrom(1024)
            except TimeoutError:
                return False
            header = (reply[0] & 0x0F) * 4
            kind, _, _, reply_id, _ = struct.unpack("!BBHHH", reply[header : header + 8])
            if source == address and kind == 0 and reply_id == ident:
                return True
    return False


def test_icmp_reaches_web_hosts_but_not_the_database(stack):
    assert ping(stack.inventory.web_hosts[0].public_ip)
    assert not ping(stack.inventory["db_host"])


WEB_PROBE = """python3 -c '
import errno, socket, sys
address, port = sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection((address, port), timeout=3).close(); print("open")
except ConnectionRefusedError: print("closed")
except OSError as e: print("blocked" if e.errno == errno.EHOSTUNREACH else "unexpected %s" % e)
' {address} {port}"""


@pytest.mark.parametrize(
    ("address", "port", "expected"),
    [
        ("198.18.1.100", POSTGRES_PORT, "open"),  # web tier -> database: allowed both ways
        ("198.18.1.100", 22, "blocked"),  # the database's firewall admits the admin only
        (ROUTER_ADDRESS, 22, "blocked"),  # not in the web tier's outbound rules
        (ROUTER_ADDRESS, 8081, "blocked"),
        ("198.18.0.200", 80, "blocked"),  # allowed outbound, but the test range stays here
        (REDIS_ADDRESS, REDIS_PORT, "open"),  # web tier -> the managed Redis's TLS port
        (REDIS_ADDRESS, 6379, "blocked"),  # Redis's usual plain port: not even tried
    ],
)
def test_firewall_from_a_web_host(web1, address, port, expected):
    assert run(web1, WEB_PROBE.format(address=address, port=port))[1].strip() == expected


# ---------------------------------------------------------------------------------------------
# the managed Redis stand-in


@pytest.fixture(scope="module")
def redis_on_web1(stack, web1):
    """web-1 with the inventory's Redis CA as a file (provisioning puts it in /etc/dropstack)."""
    sftp = web1.open_sftp()
    sftp.putfo(io.BytesIO(stack.inventory["redis_ca_cert"].encode()), "/tmp/redis-ca.pem")
    sftp.close()
    return web1


def redis_ping(client: paramiko.SSHClient, stack: Stack, mode: str, password: str = "") -> dict:
    """AUTH + PING from web-1 with the system python3 (tests/redis_probe.py); the password on
    stdin, the inventory's unless given."""
    uri = urlsplit(stack.inventory["redis_uri"])
    command = ping_command("python3", uri.hostname, uri.port, "/tmp/redis-ca.pem", mode)
    stdin, stdout, _ = client.exec_command(shlex.join(command), timeout=30)
    stdin.write((password or unquote(uri.password)) + "\n")
    stdin.channel.shutdown_write()
    return parse(stdout.read().decode())


def redis_cli(stack: Stack, *args: str) -> str:
    """redis-cli inside the stand-in's own namespace (as `local.up` checks it), over TLS."""
    server = redis_setup.the_server(stack.paths)
    password = unquote(urlsplit(stack.inventory["redis_uri"]).password)
    command = [*redis.in_namespace(redis_setup.NETNS, redis.ping_command(server)[:-1]), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "REDISCLI_AUTH": password})  # fmt: skip
    return done.stdout.strip()


def test_redis_answers_tls_with_the_inventory_password(stack, redis_on_web1):
    assert stack.inventory["redis_uri"].startswith("rediss://default:")
    outcome = redis_ping(redis_on_web1, stack, "tls")
    assert outcome["connected"], outcome
    assert outcome["replies"] == ["+OK", "+PONG"]
    assert outcome["tls"] in ("TLSv1.2", "TLSv1.3")


def test_redis_refuses_a_wrong_password(stack, redis_on_web1):
    outcome = redis_ping(redis_on_web1, stack, "tls", password="wrong")
    assert outcome["replies"][0].startswith("-WRONGPASS"), outcome


def test_redis_gives_plain_text_no_answer(stack, redis_on_web1):
    outcome = redis_ping(redis_on_web1, stack, "plain")
    assert not outcome.get("replies"), outcome


def test_redis_listens_on_its_vpc_address_and_tls_port_only(stack):
    listening = subprocess.run(["ip", "netns", "exec", redis_setup.NETNS, "ss", "-Hltn"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert [line.split()[3] for line in listening.splitlines()] == [f"{REDIS_ADDRESS}:{REDIS_PORT}"]


def test_redis_is_closed_to_this_machine_and_the_database(stack, db):
    assert tcp_outcome(REDIS_ADDRESS, REDIS_PORT) == "blocked"
    probe = WEB_PROBE.format(address=REDIS_ADDRESS, port=REDIS_PORT)
    assert run(db, probe)[1].strip() == "blocked"


def test_a_stopped_redis_comes_back_on_up_with_its_password_and_data(stack, redis_on_web1):
    assert redis_cli(stack, "set", "dropstack-test", "kept") == "OK"
    time.sleep(1.5)  # the append-only file is synced every second (appendfsync everysec)
    for pid in redis_setup.stop():
        assert not alive(pid)
    result = fab("local.up")
    assert result.returncode == 0, result.stderr
    assert "the Redis stand-in" in result.stdout
    assert redis_ping(redis_on_web1, stack, "tls")["replies"] == ["+OK", "+PONG"]
    assert redis_cli(stack, "get", "dropstack-test") == "kept"


# ---------------------------------------------------------------------------------------------
# lifecycle


def test_second_up_says_running_and_succeeds(stack):
    result = fab("local.up")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout


def test_up_with_another_web_count_says_to_run_down(stack):
    result = fab("local.up", "--web-count", "2")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "fab local.down" in result.stderr


def test_status_shows_every_host_running_and_reachable(stack):
    result = fab("local.status")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:3]}
    assert rows["web-1"][1:] == ["198.18.0.11", "198.18.1.11", "running", "ok"]
    assert rows["db"][1:] == ["-", "198.18.1.100", "running", "ok"]


@pytest.mark.parametrize(("host", "expected"), [("web-1", "web-1"), ("db", "db")])
def test_ssh_task_opens_a_session_as_deploy(stack, host, expected):
    result = fab("local.ssh", "--host", host, "--command", "echo $(hostname) $(id -un)", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [expected, "deploy"]


def test_down_restores_the_machine(stack):
    result = fab("local.down")
    assert result.returncode == 0, result.stderr
    after = machine_state()
    assert after.netns == stack.before.netns
    assert after.links == stack.before.links
    assert after.nspawn == stack.before.nspawn
    assert not stack.paths.inventory.exists()
    assert not stack.paths.hosts.exists()
    assert not redis_setup.running() and not (stack.paths.root / "redis").exists()
    assert subprocess.run(
        ["nft", "list", "table", "inet", "dropstack"], capture_output=True
    ).returncode
    assert leftover_parts(stack.paths) == []
    # Kept: the key (like ~/.ssh) and the image cache.
    assert stack.paths.key.exists()
    assert all(image_dir(cache_root(), recipe).is_dir() for recipe in IMAGES.values())


def test_up_refuses_a_half_made_stack_and_down_cleans_it(stack):
    subprocess.run(["ip", "netns", "add", plan_stack(1).web[0].netns], check=True)
    try:
        result = fab("local.up")
        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0
        assert "half-made" in result.stderr and "fab local.down" in result.stderr
    finally:
        cleaned = fab("local.down")
    assert cleaned.returncode == 0, cleaned.stderr
    assert machine_state().netns == stack.before.netns


def test_down_twice_is_harmless(stack):
    result = fab("local.down")
    assert result.returncode == 0
    assert "nothing to do" in result.stdout
