"""The firewall rule data the cloud firewall and the local droplet are both built from."""

from __future__ import annotations

import pytest

from infra.firewall_rules import (
    ANYWHERE,
    POSTGRES_POOL_PORT,
    POSTGRES_PORT,
    FirewallRule,
    database_trusted_tags,
    web_inbound_rules,
    web_outbound_rules,
)

ADMINS = ("198.18.0.7/32",)


def by_port(rules):
    return {(rule.protocol, rule.port_range): rule for rule in rules}


@pytest.mark.parametrize("behind_lb", [False, True])
def test_ssh_only_from_admins(behind_lb):
    ssh = by_port(web_inbound_rules(ADMINS, behind_load_balancer=behind_lb))[("tcp", "22")]
    assert ssh.addresses == ADMINS
    assert not ssh.load_balancer


def test_http_from_anywhere_without_load_balancer():
    rules = by_port(web_inbound_rules(ADMINS, behind_load_balancer=False))
    for port in ("80", "443"):
        assert rules[("tcp", port)].addresses == ANYWHERE
        assert not rules[("tcp", port)].load_balancer


def test_http_only_from_the_load_balancer_behind_one():
    rules = by_port(web_inbound_rules(ADMINS, behind_load_balancer=True))
    for port in ("80", "443"):
        assert rules[("tcp", port)].load_balancer
        assert rules[("tcp", port)].addresses == ()


def test_outbound_database_only_inside_the_vpc():
    rules = by_port(web_outbound_rules("10.110.16.0/20"))
    assert rules[("tcp", str(POSTGRES_PORT))].addresses == ("10.110.16.0/20",)
    assert ("tcp", str(POSTGRES_POOL_PORT)) not in rules
    assert set(rules) == {
        ("udp", "53"),
        ("tcp", "53"),
        ("udp", "123"),
        ("tcp", "80"),
        ("tcp", "443"),
        ("tcp", "25060"),
        ("icmp", ""),
    }


def test_outbound_pool_port_is_opt_in_and_inside_the_vpc():
    plain = web_outbound_rules("10.110.16.0/20")
    pooled = web_outbound_rules("10.110.16.0/20", pool_port=POSTGRES_POOL_PORT)
    added = [rule for rule in pooled if rule not in plain]
    assert [(r.protocol, r.port_range, r.addresses) for r in added] == [
        ("tcp", "25061", ("10.110.16.0/20",))
    ]


def test_database_trusts_the_web_tag_only():
    assert database_trusted_tags("dropstack-prod-web") == ("dropstack-prod-web",)


def test_rule_validation():
    assert FirewallRule("tcp", "20-30", "x", addresses=ANYWHERE).ports == (20, 30)
    assert FirewallRule("icmp", "", "x", addresses=ANYWHERE).ports == ()
    with pytest.raises(ValueError, match="protocol"):
        FirewallRule("sctp", "1", "x", addresses=ANYWHERE)
    with pytest.raises(ValueError, match="no peer"):
        FirewallRule("tcp", "1", "x")
