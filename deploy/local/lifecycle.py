"""Bringing the local stack up and down on this machine: the code that runs the pure modules' plans.

Everything the stack creates is named by ``network.largest_plan()`` (namespaces, links), the nft
table, or lives under the state directory, so ``down`` can find and remove all of it after any
kind of failure, and touches nothing else on the machine. The parts live by concern: ``state``
(paths, files, commands), ``machine`` (what exists here), ``access`` (SSH), ``database_setup``,
``teardown`` (``down``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import paramiko
from invoke.exceptions import UnexpectedExit

from deploy.local import acme_setup, database, hosts, nftables, redis_setup
from deploy.local.access import (
    ensure_key_pair,
    port_answers,
    quiet_paramiko,
    wait_for_cloud_init,
    wait_for_ssh,
)
from deploy.local.database_setup import configure_database
from deploy.local.image import IMAGES, cache_root
from deploy.local.image_cache import ensure_image, write_into_root
from deploy.local.load_balancer import haproxy_command, haproxy_config
from deploy.local.machine import (
    is_mounted,
    is_running,
    leftover_parts,
    load_balancers,
    nspawn_leaders,
    supervisors,
    unified_cgroup_root,
)
from deploy.local.network import (
    ADMIN_CIDR,
    VPC_CIDR,
    HostPlan,
    StackPlan,
    host_network_commands,
    plan_stack,
)
from deploy.local.outputs import local_inventory
from deploy.local.state import (
    DOWN_HINT,
    LocalStackError,
    StatePaths,
    exclusive,
    last_words,
    read,
    read_record,
    run,
    write_private,
)
from infra.firewall_rules import (
    POSTGRES_POOL_PORT,
    POSTGRES_PORT,
    REDIS_PORT,
    database_trusted_tags,
    web_inbound_rules,
    web_outbound_rules,
)

Say = Callable[[str], None]

WEB_TAG = "web"  # the tag infra/ gives web droplets; the database trusts it
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


# ---------------------------------------------------------------------------------------------
# up


def up(
    web_count: int, say: Say, db_pool: int = 0, load_balancer: bool | None = None,
    domain: str | None = None,
) -> None:  # fmt: skip
    """With a domain, the stack also gets its ACME CA (pebble) answering for it, and with a
    load balancer the balancer ends TLS with a certificate from that CA."""
    paths = StatePaths.from_environment()
    with exclusive(paths):
        _up(paths, plan_stack(web_count, load_balancer, acme=bool(domain)), say, db_pool, domain)


def _up(
    paths: StatePaths, plan: StackPlan, say: Say, db_pool: int = 0, domain: str | None = None
) -> None:
    started = time.monotonic()
    if _already_running(paths, plan, say, db_pool, domain):
        return
    if _restart_stopped(paths, plan, say, db_pool, domain):
        return
    leftovers = leftover_parts(paths)
    if leftovers:
        raise LocalStackError(
            f"a half-made local stack exists ({', '.join(leftovers[:3])}); {DOWN_HINT}"
        )
    nameservers = _host_nameservers()
    images = {role: ensure_image(recipe, cache_root(), say) for role, recipe in IMAGES.items()}
    warm_start = time.monotonic()
    public_key = ensure_key_pair(paths, say)
    stack_id = _write_record(paths, plan, images, db_pool, domain)

    say(f"network: namespaces and links for {', '.join(h.name for h in plan.namespaces)}")
    for host in plan.namespaces:
        for command in host_network_commands(host):
            run(command)
    IP_FORWARD.write_text("1\n")
    say("firewall: nft table inet dropstack (cloud firewall, NAT to package archives)")
    _apply_firewall(plan, nameservers, db_pool)
    ca = acme_setup.start_ca(paths, plan, domain, say) if domain else None
    redis_keys = redis_setup.create(paths, say)
    redis_setup.start(paths, plan.redis)

    for host in plan.hosts:
        say(f"{host.name}: fresh root on the {host.role} image, booting")
        _prepare_root(paths, host, images[host.role], public_key, stack_id, nameservers)
        _start_container(paths, host)
    with quiet_paramiko():
        wait_for_ssh(paths, plan)
        say(f"ssh: every host takes the deploy key ({time.monotonic() - warm_start:.1f} s)")
        for host in plan.hosts:
            wait_for_cloud_init(paths, host)

    pool = f", a {db_pool}-connection pool on 25061" if db_pool else ""
    say(f"db: configuring PostgreSQL like a managed database (TLS, 25060{pool}, trusted sources)")
    credentials = database.Credentials.generate()
    tls = database.make_tls_material(plan.db.private_ip)
    try:
        configure_database(paths, plan, credentials, tls, db_pool)
    except (UnexpectedExit, paramiko.SSHException, OSError) as exc:
        raise LocalStackError(
            f"db: configuring PostgreSQL failed: {last_words(exc)}; {DOWN_HINT}"
        ) from None
    if plan.lb:
        certificate = None
        if ca and domain:
            certificate = acme_setup.load_balancer_certificate(paths, ca, domain, say)
        tls_note = f", TLS for {domain} on 443" if certificate else ""
        say(f"lb: HAProxy at {plan.lb.public_ip}, health checks like DigitalOcean's{tls_note}")
        _start_load_balancer(paths, plan, certificate)
    _write_outputs(paths, plan, credentials, tls, db_pool, domain, redis_keys)
    now = time.monotonic()
    say(
        f"up: {len(plan.web)} web host(s) and db ready in {now - started:.1f} s "
        f"({now - warm_start:.1f} s after images); inventory {paths.inventory}"
    )


def _shape(record: dict) -> tuple[int, int, bool, str | None]:
    return (
        record["web_count"], record.get("db_pool", 0), record.get("load_balancer", False),
        record.get("domain"),
    )  # fmt: skip


def _already_running(
    paths: StatePaths, plan: StackPlan, say: Say, db_pool: int = 0, domain: str | None = None
) -> bool:
    record = read_record(paths)
    if not (record and is_running(paths, record)):
        return False
    wanted = (len(plan.web), db_pool, plan.lb is not None, domain)
    if _shape(record) != wanted:
        web, pool, lb, name = _shape(record)
        raise LocalStackError(
            f"a local stack with {web} web host(s), db pool {pool}, "
            f"{'a' if lb else 'no'} load balancer and domain {name or 'none'} is running; run "
            "`fab local.down` first to change --web-count, --db-pool, --load-balancer or --domain"
        )
    say(f"the local stack is already running ({len(plan.web)} web host(s)); `fab local.status`")
    return True


def _restart_stopped(
    paths: StatePaths, plan: StackPlan, say: Say, db_pool: int, domain: str | None = None
) -> bool:
    """A complete stack with hosts whose containers stopped (a hard kill, a power loss): boot
    them again on their own disks, as a droplet comes back after a power cycle; a stopped
    load balancer or CA too. True when that was the case and they are up."""
    record = read_record(paths)
    if not (record and paths.inventory.exists()):
        return False
    if _shape(record) != (len(plan.web), db_pool, plan.lb is not None, domain):
        return False
    stopped = [h for h in plan.hosts if not nspawn_leaders(h) and not supervisors(h)]
    mounted = all(is_mounted(paths.host_root(h)) for h in plan.hosts)
    intact = mounted and all(Path(n.netns_path).exists() for n in plan.namespaces)
    lb_down = plan.lb is not None and not load_balancers()
    ca_down = plan.acme is not None and not acme_setup.ca_running()
    redis_down = plan.redis is not None and not redis_setup.running()
    if not (stopped or lb_down or ca_down or redis_down) or not intact:
        return False
    started = time.monotonic()
    if ca_down and domain:
        # Pebble forgets everything when it stops: a new root, no accounts. Certificates
        # already issued keep working until renewed; the next renewal registers afresh.
        say("acme: pebble or challtestsrv is not running; starting both again (pebble keeps "
            "no state: a new issuing root, the DNS records added again)")  # fmt: skip
        acme_setup.start_ca(paths, plan, domain, say)
    if lb_down:
        say("lb: HAProxy is not running; starting it again")
        pem = paths.root / "lb" / "certificate.pem"
        _start_load_balancer(paths, plan, pem if domain and pem.exists() else None)
    if redis_down:
        say("redis: the stand-in is not running; starting it again on its files (same "
            "password and certificate, its queued jobs kept)")  # fmt: skip
        redis_setup.start(paths, plan.redis)
    for host in stopped:
        say(f"{host.name}: its container is not running; booting it again on its disk")
        _start_container(paths, host)
    with quiet_paramiko():
        if stopped:
            wait_for_ssh(paths, plan, only=stopped)
        for host in stopped:
            wait_for_cloud_init(paths, host)
    back = ", ".join(
        [h.name for h in stopped]
        + (["the load balancer"] if lb_down else [])
        + (["the local CA"] if ca_down else [])
        + (["the Redis stand-in"] if redis_down else [])
    )
    say(f"up: {back} back in {time.monotonic() - started:.1f} s")
    return True


def _host_nameservers() -> list[str]:
    nameservers = hosts.upstream_nameservers(
        read("/etc/resolv.conf"), read("/run/systemd/resolve/resolv.conf")
    )
    if not nameservers:
        raise LocalStackError(
            "no non-loopback IPv4 nameserver in /etc/resolv.conf or "
            "/run/systemd/resolve/resolv.conf; the hosts need one for apt"
        )
    return nameservers


def _write_record(
    paths: StatePaths, plan: StackPlan, images: dict[str, Path], db_pool: int = 0,
    domain: str | None = None,
) -> str:  # fmt: skip
    """Written before anything is made, so `down` knows what to restore after any failure."""
    record = {
        "web_count": len(plan.web),
        "db_pool": db_pool,
        "load_balancer": plan.lb is not None,
        "domain": domain,
        "stack_id": secrets.token_hex(4),
        "ip_forward_before": IP_FORWARD.read_text().strip(),
        # Who made it: bin/test clears only stacks it made itself, never a user's demo.
        "owner": os.environ.get("DROPSTACK_STACK_OWNER") or "user",
        "images": {role: str(path) for role, path in images.items()},
    }
    write_private(paths.record, json.dumps(record, indent=2) + "\n", mode=0o644)
    return record["stack_id"]


def _write_outputs(
    paths: StatePaths,
    plan: StackPlan,
    credentials: database.Credentials,
    tls: database.TlsMaterial,
    db_pool: int = 0,
    domain: str | None = None,
    redis_keys: redis_setup.RedisKeys | None = None,
) -> None:
    """The inventory last: its presence means the stack is complete."""
    passwords = {
        database.ADMIN_USER: credentials.admin_password,
        database.DB_USER: credentials.app_password,
    }
    write_private(paths.db / "ca.crt", tls.ca_cert_pem, mode=0o644)
    write_private(paths.db / "credentials.json", json.dumps(passwords, indent=2) + "\n")
    inventory = local_inventory(
        plan,
        key_path=paths.key,
        public_key=paths.public_key.read_text().strip(),
        app_password=credentials.app_password,
        admin_password=credentials.admin_password,
        ca_cert_pem=tls.ca_cert_pem,
        source=str(paths.inventory),
        pool_size=db_pool,
        domain=domain,
        redis_uri=redis_keys.uri if redis_keys else "",
        redis_ca_cert=redis_keys.ca_cert if redis_keys else "",
        **_acme_keys(paths, domain),
    )
    write_private(paths.inventory, json.dumps(inventory.data, indent=2) + "\n")


def _acme_keys(paths: StatePaths, domain: str | None) -> dict[str, str]:
    """The inventory's ACME keys: the stack's own pebble, so certbot never asks Let's Encrypt."""
    if not domain:
        return {}
    ca = acme_setup.the_ca(paths)
    return {"acme_directory": ca.directory_url, "acme_ca_cert": Path(ca.listener_ca).read_text()}


def _apply_firewall(plan: StackPlan, nameservers: list[str], db_pool: int = 0) -> None:
    pool_port = POSTGRES_POOL_PORT if db_pool else None
    text = nftables.ruleset(
        plan,
        # Behind a load balancer HTTP(S) reaches the droplets from it only (infra/ gives the
        # real firewall source_load_balancer_uids).
        web_inbound=web_inbound_rules((ADMIN_CIDR,), behind_load_balancer=plan.lb is not None),
        web_outbound=web_outbound_rules(VPC_CIDR, pool_port=pool_port, redis_port=REDIS_PORT),
        db_trusted_tags=database_trusted_tags(WEB_TAG),
        tag_addresses={WEB_TAG: [h.private_ip for h in plan.web]},
        resolvers=nameservers,
        db_ports=(POSTGRES_PORT, *((pool_port,) if pool_port else ())),
    )
    run(["nft", "-f", "/dev/stdin"], stdin=text)


def _start_load_balancer(paths: StatePaths, plan: StackPlan, certificate: Path | None) -> None:
    """HAProxy in the load balancer's namespace, detached, its config and log in the state dir;
    with a certificate it also ends TLS on 443."""
    lb_dir = paths.root / "lb"
    lb_dir.mkdir(parents=True, exist_ok=True)
    config = lb_dir / "haproxy.cfg"
    pem = str(certificate) if certificate else None
    config.write_text(haproxy_config(plan.lb, plan.web, certificate=pem))
    run(["haproxy", "-c", "-f", str(config)])
    log = (lb_dir / "haproxy.log").open("ab")
    subprocess.Popen(
        ["ip", "netns", "exec", plan.lb.netns,
         *haproxy_command(str(config), str(lb_dir / "haproxy.pid"))],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    # Up once its listener answers; an HAProxy that exits at start (a limit, a bad bind) says why.
    deadline = time.monotonic() + 10
    while not port_answers(plan.lb.public_ip, 80, timeout=0.5):
        if time.monotonic() > deadline:
            last = (lb_dir / "haproxy.log").read_text().strip().splitlines()[-1:] or ["no log"]
            raise LocalStackError(f"lb: HAProxy did not start: {last[0]}; {DOWN_HINT}")
        time.sleep(0.1)


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
    run(hosts.overlay_mount_command(image, host_dir))
    seed = hosts.seed_files(host, public_key=public_key, stack_id=stack_id, nameservers=nameservers)
    for path, content in seed.items():
        write_into_root(root, path, content, mode=0o600 if "/seed/" in path else 0o644)


def _start_container(paths: StatePaths, host: HostPlan) -> None:
    """Detached in its own session, so the container outlives this `fab` process, under the
    loop that boots it again after a reboot (hosts.supervised)."""
    log = paths.console_log(host).open("ab")
    process = subprocess.Popen(
        hosts.supervised(
            hosts.nspawn_command(host, paths.host_root(host)),
            hosts.host_cgroup(host, unified_cgroup_root()),
        ),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **hosts.NSPAWN_ENVIRONMENT},
    )
    log.close()
    (paths.host_dir(host) / "nspawn.pid").write_text(f"{process.pid}\n")
