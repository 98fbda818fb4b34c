"""The local stack with a domain, as data: the CA's namespace and firewall chains, the
inventory's ACME keys, the load balancer ending TLS (a config the real haproxy accepts), the
certbot command for its certificate over DNS-01, and the droplets behind it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy import host_model
from deploy.inventory import ACME_KEYS, INVENTORY_KEYS, parse_inventory
from deploy.local import acme
from deploy.local.load_balancer import certificate_command, haproxy_config, intermediate_ciphers
from deploy.local.network import ACME_ADDRESS, largest_plan, plan_stack, site_address
from deploy.local.outputs import local_inventory
from deploy.provision import operations, site_steps
from deploy.provision.templates import render_site_files
from deploy.provision.tls import LETS_ENCRYPT_DIRECTORY, CertbotDirs
from deploy.shell import join
from tests.local.test_local_nftables import chains
from tests.local.test_local_nftables import make as make_ruleset

DOMAIN = "app.dropstack.test"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_the_ca_has_its_own_namespace_only_with_a_domain():
    assert plan_stack(1).acme is None
    plan = plan_stack(1, acme=True)
    assert plan.acme and plan.acme.netns == "ds-acme" and plan.acme.public_ip == ACME_ADDRESS
    assert plan.acme in plan.namespaces and plan.acme not in plan.hosts
    assert largest_plan().acme is not None  # `down` removes it whatever was made


@pytest.mark.parametrize(("web_count", "expected"), [(1, "198.18.0.11"), (2, "198.18.0.2")])
def test_the_domain_points_at_the_web_host_or_the_load_balancer(web_count, expected):
    assert site_address(plan_stack(web_count, acme=True)) == expected


def acme_ruleset(web_count=1, lb=False):
    from deploy.local import nftables
    from deploy.local.network import ADMIN_CIDR, VPC_CIDR
    from infra.firewall_rules import database_trusted_tags, web_inbound_rules, web_outbound_rules

    plan = plan_stack(web_count, load_balancer=lb or None, acme=True)
    return nftables.ruleset(
        plan,
        web_inbound=web_inbound_rules((ADMIN_CIDR,), behind_load_balancer=plan.lb is not None),
        web_outbound=web_outbound_rules(VPC_CIDR),
        db_trusted_tags=database_trusted_tags("web"),
        tag_addresses={"web": [h.private_ip for h in plan.web]},
        resolvers=["10.255.255.53"],
    )


def test_the_ca_is_reachable_only_as_needed():
    found = chains(acme_ruleset())
    assert found["acme_inbound"] == [
        'tcp dport 443 ip saddr { 198.18.0.1, 198.18.0.11 } accept comment "the ACME API: '
        'certbot on the web hosts and this machine"',
        "tcp dport { 15000, 8055 } ip saddr 198.18.0.1/32 accept comment \"pebble's and "
        "challtestsrv's management: this machine only\"",
        "meta l4proto icmp accept",
        "reject with icmpx type admin-prohibited",
    ]
    assert found["acme_outbound"][0].startswith("tcp dport 80 ip daddr 198.18.0.11 return")
    assert found["acme_outbound"][-1].startswith("reject")
    for chain, jump in (("forward", "acme_outbound"), ("forward", "acme_inbound"),
                        ("output", "acme_inbound"), ("input", "acme_outbound")):  # fmt: skip
        assert any(f"jump {jump}" in line for line in found[chain]), (chain, jump)
    assert "acme_inbound" not in chains(make_ruleset())


def test_behind_a_load_balancer_the_ca_validates_at_the_balancer():
    assert "ip daddr 198.18.0.2 return" in chains(acme_ruleset(2))["acme_outbound"][0]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="nft -c needs root")
def test_nft_accepts_the_table_with_the_ca(tmp_path):
    path = tmp_path / "t.nft"
    path.write_text(acme_ruleset(3).replace("delete table inet dropstack\n", ""))
    done = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_local_ca_listens_like_lets_encrypt_on_443():
    ca = acme.local_ca("/var/lib/dropstack/local/acme", ACME_ADDRESS)
    assert ca.directory_url == "https://198.18.0.3:443/dir"
    assert ca.roots_url == "https://198.18.0.3:15000/roots/0"
    assert acme.pebble_command(ca)[-1] == "198.18.0.3:53"
    assert acme.is_ca_process_of(acme.pebble_command(ca), ACME_ADDRESS)
    assert acme.is_ca_process_of(acme.challtestsrv_command(ca), ACME_ADDRESS)
    assert not acme.is_ca_process_of(acme.pebble_command(acme.AcmeCa("/x")), ACME_ADDRESS)


def test_inventory_with_a_domain_names_https_and_the_local_ca():
    plan = plan_stack(1, acme=True)
    inv = local_inventory(
        plan, key_path=Path("/k"), public_key="ssh-ed25519 AAAA", app_password="pw",
        admin_password="apw", ca_cert_pem=PEM, source="test", domain=DOMAIN,
        acme_directory="https://198.18.0.3:443/dir", acme_ca_cert=PEM,
    )  # fmt: skip
    assert list(inv.data) == [*INVENTORY_KEYS, *ACME_KEYS]
    assert inv["domain"] == DOMAIN and inv["url"] == f"https://{DOMAIN}"
    assert inv["acme_directory"] == "https://198.18.0.3:443/dir"
    # Read back as every task reads it: the keys survive parse_inventory.
    again = parse_inventory(json.loads(json.dumps(inv.data)), "again")
    assert again["acme_ca_cert"] == PEM


def test_an_inventory_without_acme_keys_means_lets_encrypt():
    from deploy.provision.tls import acme_from_inventory
    from tests.deploy.test_host_model import INVENTORY

    inv = parse_inventory(INVENTORY, "test")
    assert "acme_directory" not in inv.data
    assert acme_from_inventory(inv).directory == LETS_ENCRYPT_DIRECTORY


def lb_config(tmp_path=None):
    plan = plan_stack(3, acme=True)
    return haproxy_config(plan.lb, plan.web, certificate="/var/lib/x/certificate.pem")


def test_the_balancer_ends_tls_on_443_and_forwards_http_to_port_80():
    text = lb_config()
    assert "bind 198.18.0.2:443 ssl crt /var/lib/x/certificate.pem alpn http/1.1" in text
    https = text.split("frontend https_443")[1].split("\n\n")[0]
    assert "X-Forwarded-Proto https" in https and "default_backend web" in https
    assert re.findall(r"server web-\d \S+:(\d+) check", text) == ["80", "80", "80"]


def test_http_on_the_balancer_redirects_to_https():
    http = lb_config().split("frontend http_80")[1].split("\n\n")[0]
    assert "http-request redirect scheme https code 301" in http
    without = haproxy_config(plan_stack(2).lb, plan_stack(2).web)
    assert "redirect" not in without and ":443" not in without and "ssl-default" not in without


def test_the_balancer_speaks_mozillas_intermediate_tls():
    text = lb_config()
    assert f"ssl-default-bind-ciphers {intermediate_ciphers()}\n" in text
    assert intermediate_ciphers().startswith("ECDHE-ECDSA-AES128-GCM-SHA256:")
    assert "ssl-min-ver TLSv1.2 no-tls-tickets" in text
    assert "ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:" in text


def test_the_health_check_stays_on_http_readyz():
    assert "http-check send meth GET uri /readyz" in lb_config()


def test_the_real_haproxy_accepts_the_tls_config(tmp_path):
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", f"/CN={DOMAIN}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    pem = tmp_path / "certificate.pem"
    pem.write_text(cert.read_text() + key.read_text())
    config = tmp_path / "haproxy.cfg"
    config.write_text(lb_config().replace("/var/lib/x/certificate.pem", str(pem)))
    done = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr


def test_the_balancers_certificate_comes_from_the_local_ca_over_dns01():
    ca = acme.local_ca("/s/acme", ACME_ADDRESS)
    command = certificate_command(ca, DOMAIN, CertbotDirs("/c", "/w", "/l"), "/p.pem", "/h.pid")
    text = join(command)
    assert "--server https://198.18.0.3:443/dir" in text
    assert "REQUESTS_CA_BUNDLE=/s/acme/listener-ca.pem" in text
    assert "--manual --preferred-challenges dns" in text
    assert "letsencrypt.org" not in text and "--dry-run" not in text
    assert command[:2] == ["sh", "-c"] and "not issued" in command[2]  # one line on failure


@pytest.mark.parametrize("action", ["set", "clear"])
def test_the_dns_hook_posts_the_txt_record_to_challtestsrv(tmp_path, action):
    """The hook, run with a stand-in curl that records what it was given."""
    (tmp_path / "curl").write_text('#!/bin/sh\ncat > "$0.body"; echo "$@" > "$0.args"\n')
    (tmp_path / "curl").chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "CERTBOT_DOMAIN": DOMAIN,
           "CERTBOT_VALIDATION": "token-42"}  # fmt: skip
    ca = acme.local_ca("/s/acme", ACME_ADDRESS)
    subprocess.run(acme.dns_hook_command(ca, action), env=env, check=True)
    body = json.loads((tmp_path / "curl.body").read_text())
    assert body["host"] == f"_acme-challenge.{DOMAIN}."
    assert body.get("value") == ("token-42" if action == "set" else None)
    assert (tmp_path / "curl.args").read_text().split()[-1] == (
        f"http://198.18.0.3:8055/{action}-txt"
    )


def droplet_behind_the_balancer():
    from tests.deploy.test_host_model import INVENTORY

    inv = parse_inventory(
        {**INVENTORY, "domain": DOMAIN, "load_balancer_ip": "203.0.113.9"}, "test"
    )
    return host_model.for_host({}, inv, inv.web_hosts[0])


def test_droplets_behind_a_tls_balancer_get_no_certificate():
    s = droplet_behind_the_balancer()
    assert s.tls_at_load_balancer and not s.tls and not s.obtains_certificate and s.sends_hsts
    steps = [step for _, step in operations.steps_for(s)]
    assert site_steps.tls_certificate not in steps and site_steps.acme_client not in steps


def test_droplets_behind_a_tls_balancer_send_hsts_and_pass_on_its_scheme():
    files = {
        path: f.content for path, f in render_site_files(droplet_behind_the_balancer()).items()
    }
    site = next(text for path, text in files.items() if path.endswith("sites-available/dropstack"))
    headers = next(text for path, text in files.items() if path.endswith("headers.conf"))
    assert "Strict-Transport-Security" in headers
    assert "listen 443" not in site and "return 301" not in site
    assert "proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;" in site
    assert "acme-challenge" not in site
