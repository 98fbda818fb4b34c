"""The local stack's network plan: addresses, names and the ip commands, without root."""

import ipaddress

import pytest

from deploy.local.network import (
    ADMIN_CIDR,
    DB_ADDRESS,
    MAX_WEB_COUNT,
    PUBLIC_SUBNET,
    ROUTER_ADDRESS,
    TEST_RANGE,
    VPC_CIDR,
    host_network_commands,
    largest_plan,
    plan_stack,
)


def test_web_hosts_get_public_and_vpc_addresses_in_order():
    plan = plan_stack(3)
    assert [h.name for h in plan.web] == ["web-1", "web-2", "web-3"]
    assert [h.public_ip for h in plan.web] == ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
    assert [h.private_ip for h in plan.web] == ["198.18.1.11", "198.18.1.12", "198.18.1.13"]
    assert [h.netns for h in plan.web] == ["ds-web-1", "ds-web-2", "ds-web-3"]


def test_database_is_only_on_the_vpc():
    db = plan_stack(1).db
    assert db.public_ip is None
    assert db.private_ip == DB_ADDRESS == "198.18.1.100"
    assert db.ssh_address == DB_ADDRESS
    assert [link.root_name for link in db.links] == ["ds-db-vpc"]


def test_every_address_is_in_the_test_range_and_its_subnet():
    test_range = ipaddress.ip_network(TEST_RANGE)
    for host in largest_plan().hosts:
        for link in host.links:
            address = ipaddress.ip_address(link.address)
            assert address in test_range
            assert address != ipaddress.ip_address(ROUTER_ADDRESS)
    for host in largest_plan().web:
        assert ipaddress.ip_address(host.public_ip) in ipaddress.ip_network(PUBLIC_SUBNET)
        assert ipaddress.ip_address(host.private_ip) in ipaddress.ip_network(VPC_CIDR)
    assert ADMIN_CIDR == "198.18.0.1/32"


def test_interface_names_fit_the_kernel_limit_and_are_unique():
    names = [n for h in largest_plan().hosts for n in h.root_link_names]
    assert all(len(n) <= 15 for n in names), names  # IFNAMSIZ - 1
    assert len(set(names)) == len(names)
    assert all(n.startswith("ds-") for n in names)


@pytest.mark.parametrize("count", [0, -1, MAX_WEB_COUNT + 1])
def test_web_count_is_bounded(count):
    with pytest.raises(ValueError, match="web count must be"):
        plan_stack(count)


def test_largest_plan_names_every_possible_host():
    assert len(largest_plan().web) == MAX_WEB_COUNT
    assert largest_plan().hosts[-1].name == "db"


def test_host_commands_build_a_routed_link_per_interface():
    commands = [" ".join(c) for c in host_network_commands(plan_stack(1).web[0])]
    assert commands[0] == "ip netns add ds-web-1"
    assert "ip link add ds-web1-pub type veth peer name eth0 netns ds-web-1" in commands
    assert "ip link add ds-web1-vpc type veth peer name eth1 netns ds-web-1" in commands
    assert "ip -n ds-web-1 addr add 198.18.0.11/24 dev eth0" in commands
    assert "ip -n ds-web-1 addr add 198.18.1.11/24 dev eth1" in commands
    assert "ip route add 198.18.1.11/32 dev ds-web1-vpc" in commands
    assert "sysctl -q -w net.ipv4.conf.ds-web1-pub.proxy_arp=1" in commands
    assert commands[-1] == "ip -n ds-web-1 route add default via 198.18.0.1 dev eth0 onlink"
    # Routed, not bridged: nothing here makes a bridge.
    assert not any("bridge" in c for c in commands)


def test_database_default_route_goes_through_this_machine_on_its_vpc_link():
    commands = [" ".join(c) for c in host_network_commands(plan_stack(1).db)]
    assert commands[-1] == "ip -n ds-db route add default via 198.18.0.1 dev eth0 onlink"
    assert "ip -n ds-db addr add 198.18.1.100/24 dev eth0" in commands


def test_unknown_host_names_the_ones_there_are():
    with pytest.raises(KeyError, match="web-1, db"):
        plan_stack(1).host("web-2")
