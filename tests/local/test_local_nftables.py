"""The nft table is generated from infra's firewall rules; read it as a set of chains."""

import os
import re
import shutil
import subprocess

import pytest

from deploy.local.network import ADMIN_CIDR, VPC_CIDR, plan_stack
from deploy.local.nftables import ruleset
from infra.firewall_rules import (
    FirewallRule,
    database_trusted_tags,
    web_inbound_rules,
    web_outbound_rules,
)

RESOLVERS = ["10.255.255.53"]


def make(
    web_count=2, admin=(ADMIN_CIDR,), outbound=None, resolvers=RESOLVERS, db_ports=(25060,),
    lb=False,
):  # fmt: skip
    plan = plan_stack(web_count, load_balancer=lb)
    return ruleset(
        plan,
        db_ports=db_ports,
        web_inbound=web_inbound_rules(admin, behind_load_balancer=lb),
        web_outbound=outbound if outbound is not None else web_outbound_rules(VPC_CIDR),
        db_trusted_tags=database_trusted_tags("web"),
        tag_addresses={"web": [h.private_ip for h in plan.web]},
        resolvers=resolvers,
    )


def chains(text):
    """chain name -> its rule lines, from the generated table."""
    found = {}
    for name, body in re.findall(r"\tchain (\w+) \{\n(.*?)\n\t\}", text, re.S):
        found[name] = [line.strip() for line in body.splitlines() if line.strip()]
    return found


def test_one_table_replaced_atomically():
    text = make()
    assert "table inet dropstack {" in text
    assert "delete table inet dropstack" in text  # re-applying replaces, never appends
    assert set(chains(text)) == {
        "forward", "output", "input", "web_inbound", "web_outbound",
        "db_inbound", "db_outbound", "leave_machine", "postrouting",
        "spaces_inbound", "spaces_outbound", "redis_inbound", "redis_outbound",
    }  # fmt: skip


def test_web_inbound_is_the_cloud_rules_then_reject():
    rules = chains(make())["web_inbound"]
    assert rules == [
        'ip saddr { 198.18.0.1/32 } tcp dport 22 accept comment "ssh from admin networks"',
        'tcp dport 80 accept comment "http"',
        'tcp dport 443 accept comment "https"',
        'meta l4proto { icmp, ipv6-icmp } accept comment "ping and path-MTU discovery"',
        "reject with icmpx type admin-prohibited",
    ]


def test_admin_cidrs_come_from_the_rules():
    rules = chains(make(admin=("198.18.0.1/32", "198.18.0.7/32")))["web_inbound"]
    assert rules[0].startswith("ip saddr { 198.18.0.1/32, 198.18.0.7/32 } tcp dport 22 accept")


def test_web_outbound_allows_only_the_outbound_rules():
    rules = chains(make())["web_outbound"]
    assert (
        'ip daddr { 198.18.1.0/24 } tcp dport 25060 return comment "postgresql inside the vpc"'
        in rules
    )
    assert 'tcp dport 443 return comment "https (apt, certbot)"' in rules
    assert rules[-1] == "reject with icmpx type admin-prohibited"
    assert len(rules) == len(web_outbound_rules(VPC_CIDR)) + 1


def test_a_narrower_outbound_rule_set_narrows_the_chain():
    only_db = (FirewallRule("tcp", "25060", "db", addresses=(VPC_CIDR,)),)
    rules = chains(make(outbound=only_db))["web_outbound"]
    assert rules == [
        'ip daddr { 198.18.1.0/24 } tcp dport 25060 return comment "db"',
        "reject with icmpx type admin-prohibited",
    ]


def test_database_port_only_from_web_hosts_vpc_addresses():
    rules = chains(make(web_count=2))["db_inbound"]
    assert rules[0].startswith("tcp dport { 25060 } ip saddr { 198.18.1.11, 198.18.1.12 } accept")
    assert rules[1].startswith("tcp dport 22 ip saddr 198.18.0.1/32 accept")
    assert rules[-1] == "reject with icmpx type admin-prohibited"
    assert len(rules) == 3


def test_a_pool_port_opens_to_the_same_sources_only():
    rules = chains(make(web_count=2, db_ports=(25060, 25061)))["db_inbound"]
    assert rules[0].startswith(
        "tcp dport { 25060, 25061 } ip saddr { 198.18.1.11, 198.18.1.12 } accept"
    )


def test_database_opens_nothing():
    assert chains(make())["db_outbound"] == [
        'reject with icmpx type admin-prohibited comment "a managed database opens nothing"'
    ]


def test_every_link_is_dispatched_to_its_role():
    forward = chains(make(web_count=2))["forward"]
    web = '{ "ds-web1-pub", "ds-web1-vpc", "ds-web2-pub", "ds-web2-vpc" }'
    assert f"iifname {web} jump web_outbound" in forward
    assert f"oifname {web} jump web_inbound" in forward
    assert 'iifname { "ds-db-vpc" } jump db_outbound' in forward
    assert 'oifname { "ds-db-vpc" } jump db_inbound' in forward
    output = chains(make(web_count=2))["output"]
    assert f"oifname {web} jump web_inbound" in output  # this machine is filtered like the world


def test_leaving_the_machine_is_dns_to_the_resolvers_and_http_only():
    rules = chains(make())["leave_machine"]
    assert rules[0] == "ip daddr 198.18.0.0/15 reject with icmpx type admin-prohibited"
    assert "meta l4proto { tcp, udp } th dport 53 ip daddr { 10.255.255.53 } accept" in rules
    assert rules[-1] == "reject with icmpx type admin-prohibited"
    assert not any("53" in r for r in chains(make(resolvers=[]))["leave_machine"])


def test_nat_only_for_the_test_range():
    assert chains(make())["postrouting"][1] == (
        'ip saddr 198.18.0.0/15 ip daddr != 198.18.0.0/15 oifname != "ds-*" masquerade'
    )


def test_load_balancer_rules_are_refused_locally():
    plan = plan_stack(1)
    with pytest.raises(ValueError, match="no load balancer"):
        ruleset(
            plan,
            web_inbound=web_inbound_rules((ADMIN_CIDR,), behind_load_balancer=True),
            web_outbound=(),
            db_trusted_tags=("web",),
            tag_addresses={"web": ["198.18.1.11"]},
            resolvers=RESOLVERS,
        )


def test_unknown_tag_is_an_error():
    with pytest.raises(ValueError, match="tag 'api'"):
        ruleset(
            plan_stack(1),
            web_inbound=(),
            web_outbound=(),
            db_trusted_tags=("api",),
            tag_addresses={"web": ["198.18.1.11"]},
            resolvers=RESOLVERS,
        )


def test_ipv6_peers_get_ip6_matches():
    rule = FirewallRule("tcp", "22", "v6 admin", addresses=("198.18.0.1/32", "2001:db8::/64"))
    plan = plan_stack(1)
    text = ruleset(
        plan,
        web_inbound=(rule,),
        web_outbound=(),
        db_trusted_tags=("web",),
        tag_addresses={"web": ["198.18.1.11"]},
        resolvers=RESOLVERS,
    )
    assert chains(text)["web_inbound"][:2] == [
        'ip saddr { 198.18.0.1/32 } tcp dport 22 accept comment "v6 admin"',
        'ip6 saddr { 2001:db8::/64 } tcp dport 22 accept comment "v6 admin"',
    ]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="nft -c needs root and nftables"
)
def test_the_kernel_accepts_the_ruleset(tmp_path):
    path = tmp_path / "dropstack.nft"
    path.write_text(make(web_count=10))
    result = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_behind_the_load_balancer_http_reaches_droplets_from_it_only():
    rules = chains(make(web_count=3, lb=True))
    assert 'ip saddr { 198.18.1.2/32 } tcp dport 80 accept comment "http"' in rules["web_inbound"]
    assert 'tcp dport 80 accept comment "http"' not in rules["web_inbound"]
    assert rules["lb_outbound"][0].startswith(
        "tcp dport 80 ip daddr { 198.18.1.11, 198.18.1.12, 198.18.1.13 } return"
    )
    assert rules["lb_outbound"][-1].startswith("reject")
    assert rules["lb_inbound"][0].startswith("tcp dport { 80, 443 } accept")
    assert 'iifname { "ds-lb-pub", "ds-lb-vpc" } jump lb_outbound' in rules["forward"]


def test_a_rule_naming_a_load_balancer_needs_one():
    import pytest

    with pytest.raises(ValueError, match="has no load balancer"):
        plan = plan_stack(2, load_balancer=False)
        ruleset(
            plan, web_inbound=web_inbound_rules((ADMIN_CIDR,), behind_load_balancer=True),
            web_outbound=web_outbound_rules(VPC_CIDR), db_trusted_tags=("web",),
            tag_addresses={"web": [h.private_ip for h in plan.web]}, resolvers=RESOLVERS,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("service", "link"), [("spaces", "ds-spaces-pub"), ("redis", "ds-redis-vpc")]
)
def test_every_service_is_filtered_both_ways_for_hosts_and_this_machine(service, link):
    """Packets to a service pass its inbound chain, from it its outbound chain, whether they
    cross the machine (forward) or start or end on it (output, input)."""
    found = chains(make(web_count=2))
    links = f'{{ "{link}" }}'
    assert f"oifname {links} jump {service}_inbound" in found["forward"]
    assert f"iifname {links} jump {service}_outbound" in found["forward"]
    assert f"oifname {links} jump {service}_inbound" in found["output"]
    assert f"iifname {links} jump {service}_outbound" in found["input"]
