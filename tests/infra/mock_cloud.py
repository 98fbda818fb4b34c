"""Runs the real Pulumi program (infra/__main__.py) on Pulumi's mock runtime and records it.

``RecordingMocks`` answers like DigitalOcean would (ids, addresses, hosts, ports) and keeps every
registration with its inputs, in order; ``run_program`` sets the stack configuration the way the
engine passes it (strings, JSON for lists) and returns what was declared and exported.
"""

from __future__ import annotations

import json
import runpy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.sync_await import _sync_await

# Pulumi runs `main: infra/` the way runpy.run_path runs a directory: infra/ goes first on
# sys.path and infra/__main__.py executes as __main__. The tests do exactly that.
PROGRAM_DIR = Path(__file__).resolve().parents[2] / "infra"
PROJECT = "dropstack"
VPC_ID = "5a4981aa-9653-4bd1-bef5-d6bff52042e4"
VPC_CIDR = "10.110.16.0/20"
LB_IP = "192.0.2.200"
RESERVED_IP = "192.0.2.250"
CA_CERT = "-----BEGIN CERTIFICATE-----\nMIIBmockmockmock\n-----END CERTIFICATE-----\n"
DB_PASSWORD = "p@ss/w:rd?&="  # characters that must be percent-encoded in a URI
VALKEY_PASSWORD = "vk/p@ss:w#rd"  # pragma: allowlist secret (a made-up mock value)
SPACES_ACCESS_KEY = "DO00MOCKACCESSKEY"
SPACES_SECRET_KEY = "mock-spaces-secret/key+"  # pragma: allowlist secret (a made-up mock value)


@dataclass(frozen=True)
class Options:
    """The resource options the engine received with a registration (what mocks never see)."""

    protect: bool = False
    retain_on_delete: bool = False
    ignore_changes: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()


@dataclass
class Registration:
    typ: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    urn: str = ""
    options: Options = field(default_factory=Options)

    @property
    def parent_types(self) -> list[str]:
        """The types of the resource's ancestors, outermost first, from its URN."""
        return self.urn.split("::")[2].split("$")[:-1]


@dataclass
class ProgramRun:
    resources: list[Registration]
    calls: list[tuple[str, dict]]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    error: Exception | None = None

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str) -> Registration:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
        return found[0]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Registration] = []
        self.calls: list[tuple[str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        number = len(self.resources) + 1
        resource_id, outputs = _cloud_side(args.typ, args.name, dict(args.inputs), number)
        self.resources.append(
            Registration(args.typ, args.name, resource_id, dict(args.inputs), outputs)
        )
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        self.calls.append((args.token, dict(args.args)))
        if args.token == "digitalocean:index/getDatabaseCa:getDatabaseCa":
            cluster = args.args["clusterId"]
            return {"certificate": CA_CERT, "clusterId": cluster, "id": cluster}
        raise NotImplementedError(f"the program should not call {args.token}")


def _cloud_side(typ: str, name: str, inputs: dict, number: int) -> tuple[str, dict]:
    """The id and output properties DigitalOcean would return (Pulumi's camelCase names)."""
    out = dict(inputs)
    kind = typ.rsplit(":", 1)[-1]
    if kind == "Vpc":
        out.update(ipRange=VPC_CIDR, vpcUrn=f"do:vpc:{VPC_ID}")
        return VPC_ID, out
    if kind == "Droplet":
        droplet_id = str(400000 + number)
        index = int(name.rsplit("-", 1)[-1])
        out.update(
            ipv4Address=f"192.0.2.{index}",
            ipv4AddressPrivate=f"10.110.16.{index + 1}",
            dropletUrn=f"do:droplet:{droplet_id}",
        )
        return droplet_id, out
    if kind == "SshKey":
        out.update(fingerprint=f"aa:bb:cc:{number:02d}")
        return str(9000 + number), out
    if kind == "LoadBalancer":
        lb_id = f"lb-{number:04d}-uuid"
        out.update(ip=LB_IP, loadBalancerUrn=f"do:loadbalancer:{lb_id}", status="active")
        return lb_id, out
    if kind == "ReservedIp":
        out.update(ipAddress=RESERVED_IP, reservedIpUrn=f"do:floatingip:{RESERVED_IP}")
        return RESERVED_IP, out
    if kind == "Domain":
        out.update(domainUrn=f"do:domain:{inputs['name']}", ttl=1800)
        return inputs["name"], out
    if kind == "DatabaseCluster":
        host = f"{name}-do-user-1-0.b.db.ondigitalocean.com"
        # Valkey answers on 25061 as user "default", TLS only; PostgreSQL on 25060 as doadmin.
        valkey = inputs.get("engine") == "valkey"
        out.update(
            host=host,
            privateHost=f"private-{host}",
            port=25061 if valkey else 25060,
            user="default" if valkey else "doadmin",
            password=VALKEY_PASSWORD if valkey else "admin-secret",
            database="" if valkey else "defaultdb",
            clusterUrn=f"do:dbaas:{name}-uuid",
        )
        return f"{name}-uuid", out
    if kind == "DatabaseUser":
        out.update(password=DB_PASSWORD, role="normal")
        return f"{name}-id", out
    if kind == "DatabaseConnectionPool":
        host = inputs["clusterId"].removesuffix("-uuid")
        out.update(privateHost=f"private-{host}-do-user-1-0.b.db.ondigitalocean.com", port=25061)
        return f"{name}-id", out
    if kind == "UptimeCheck":
        # A bridged provider's state carries the id among the properties, as the engine then
        # hands them to a stack policy.
        out.update(id=f"{name}-uuid")
        return f"{name}-uuid", out
    if kind == "MonitorAlert":
        out.update(uuid=f"{name}-uuid")
        return f"{name}-uuid", out
    if kind == "SpacesBucket":
        region = inputs["region"]
        out.update(
            bucketDomainName=f"{inputs['name']}.{region}.digitaloceanspaces.com",
            endpoint=f"{region}.digitaloceanspaces.com",
            bucketUrn=f"do:space:{inputs['name']}",
        )
        return inputs["name"], out
    if kind == "SpacesKey":
        out.update(accessKey=SPACES_ACCESS_KEY, secretKey=SPACES_SECRET_KEY)
        return SPACES_ACCESS_KEY, out
    if kind == "Project":
        return f"project-{number:04d}-uuid", out
    return f"{name}-id", out


class RecordingMonitor(MockMonitor):
    """The mock monitor, also keeping each RegisterResource request's options by (type, name)."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.options: dict[tuple[str, str], Options] = {}

    def RegisterResource(self, request):
        self.options[(request.type, request.name)] = Options(
            protect=request.protect,
            retain_on_delete=request.retainOnDelete,
            ignore_changes=tuple(request.ignoreChanges),
            dependencies=tuple(request.dependencies),
        )
        return super().RegisterResource(request)


def engine_config(config: Mapping[str, object]) -> dict[str, str]:
    """Config as the engine hands it to a Python program: strings, JSON for lists."""
    encoded = {}
    for key, value in config.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | tuple):
            text = json.dumps(list(value))
        else:
            text = str(value)
        encoded[f"{PROJECT}:{key}"] = text
    return encoded


def run_program(
    config: Mapping[str, object], *, stack: str = "test", secrets: tuple[str, ...] = ()
) -> ProgramRun:
    """Execute infra/__main__.py under mocks with ``config`` (keys without the namespace);
    ``secrets`` are the keys the stack stores encrypted."""
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    runtime_settings.reset_options(project=PROJECT, stack=stack)  # forgets the previous root stack
    pulumi.runtime.set_all_config(
        engine_config(config), secret_keys=[f"{PROJECT}:{key}" for key in secrets]
    )
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    run = ProgramRun(resources=mocks.resources, calls=mocks.calls)

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(PROGRAM_DIR), run_name="__main__")

    try:
        with warnings.catch_warnings():
            # The provider SDK warns about its own deprecated modules when the runtime loads them.
            warnings.filterwarnings(
                "ignore", category=DeprecationWarning, module="pulumi_digitalocean"
            )
            program()
    except pulumi.RunError as error:
        run.error = error
        return run
    urns = {(u.split("::")[2].split("$")[-1], u.split("::")[3]): u for u in monitor.resources}
    for registration in run.resources:
        registration.urn = urns[(registration.typ, registration.name)]
        registration.options = monitor.options[(registration.typ, registration.name)]
    for key, value in runtime_settings.get_root_resource().outputs.items():
        output = pulumi.Output.from_input(value)
        run.outputs[key] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            run.secret_outputs.add(key)
    return run
