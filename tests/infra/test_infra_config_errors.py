"""A bad stack configuration stops the real program with one line per problem, naming the key,
before a single resource is declared."""

from __future__ import annotations

import pytest

from tests.infra.mock_cloud import run_program
from tests.infra.sample_config import ADMIN_KEY, valid_config

PRIVATE_KEY = "\n".join(
    [
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAA",
        "-----END OPENSSH PRIVATE KEY-----",
    ]
)

BAD_VALUES = [
    ("region", "mars1", "'mars1' is not a DigitalOcean region; use one of ams3, atl1"),
    ("region", "", "is not a DigitalOcean region"),
    ("dropletSize", "large", "'large' is not a droplet size slug DigitalOcean sells"),
    ("dropletSize", "db-s-1vcpu-1gb", "is not a droplet size slug"),
    # Shaped like a slug, but DigitalOcean sells no such plan (c- plans are c-2, c-4, ...).
    ("dropletSize", "c-2vcpu-4gb", "is not a droplet size slug DigitalOcean sells"),
    ("dropletSize", "s-3vcpu-7gb", "is not a droplet size slug"),
    ("dropletImage", "Debian 12", "is not an image provisioning supports; use one of debian-12"),
    ("dropletImage", "ubuntu-20-04-x64", "is not an image provisioning supports"),
    ("dropletImage", "debian-11-x64", "is not an image provisioning supports"),
    ("dropletImage", "centos-stream-9-x64", "is not an image provisioning supports"),
    ("dropletImage", "123456789", "is not an image provisioning supports"),
    ("webCount", 0, "0 is outside 1..10"),
    ("webCount", 11, "11 is outside 1..10"),
    ("webCount", "three", "'three' is not an integer from 1 to 10"),
    ("sshPublicKeys", [], "is empty"),
    ("sshPublicKeys", ["ssh-ed25519 AAAAnotbase64!"], "entry 1"),
    ("sshPublicKeys", [ADMIN_KEY, "hello world"], "entry 2 ('hello world') is not an OpenSSH"),
    ("sshPublicKeys", [PRIVATE_KEY], "entry 1 is a PRIVATE key"),
    ("sshPublicKeys", [ADMIN_KEY, ADMIN_KEY], "entry 2 repeats entry 1"),
    ("sshPublicKeys", ADMIN_KEY, "must be a list of OpenSSH public keys"),
    ("sshPrivateKeyPath", "~/.ssh/id_ed25519.pub", "is a public key"),
    ("adminCidrs", [], "is empty"),
    ("adminCidrs", ["10.0.0.300/32"], "'10.0.0.300/32' is not an IPv4/IPv6 address or CIDR"),
    ("adminCidrs", ["198.18.0.7/24"], "has host bits set; did you mean 198.18.0.0/24?"),
    ("adminCidrs", ["0.0.0.0/0"], "0.0.0.0/0 cover all of IPv4, which opens SSH to the whole"),
    ("adminCidrs", ["198.18.0.7/32", "::/0"], "cover all of IPv4 and IPv6, which opens SSH"),
    ("adminCidrs", ["0.0.0.0/1", "128.0.0.0/1"], "together cover all of IPv4"),
    ("adminCidrs", ["::ffff:0:0/96"], "cover all of IPv4"),
    ("adminCidrs", ["::/1", "8000::/1"], "cover all of IPv4 and IPv6"),
    ("adminCidrs", ["203.0.113.7/32"], "is a documentation example range"),
    ("adminCidrs", "198.18.0.7/32", "must be a list of CIDRs"),
    ("allowSshFromAnywhere", "yes", "'yes' is not true or false"),
    ("dbSize", "s-1vcpu-1gb", "'s-1vcpu-1gb' is not a database size slug like db-s-1vcpu-1gb"),
    ("dbVersion", "12", "'12' is not a PostgreSQL version DigitalOcean offers; use one of 14"),
    ("dbNodeCount", 0, "0 is outside 1..3"),
    ("dbNodeCount", 4, "4 is outside 1..3"),
    ("dbPoolSize", -1, "-1 is outside 0..6397 (0 means no connection pool)"),
    ("dbPoolSize", 100000, "100000 is outside 0..6397"),
    ("dbPoolSize", 23, "23 is more than db-s-1vcpu-1gb allows; use 0..22"),
    ("dbNodeCount", 2, "1 standby node(s), which DigitalOcean sells only on plans with 2 GB"),
    ("dbSize", "db-s-1vcpu-3gb", "is not a database size slug"),
    ("dbPoolMode", "pooled", "'pooled' is not a connection pool mode; use one of transaction"),
    ("domain", "https://example.com/", "is not a domain name like example.com"),
    ("domain", "localhost", "'localhost' is not a domain name"),
    ("domain", "exa_mple.com", "is not a domain name"),
    ("domain", "-example.com", "is not a domain name"),
    ("domain", "example.123", "ends in '123', which is not a top-level domain"),
    ("domain", "shop.example.c0m", "ends in 'c0m', which is not a top-level domain"),
    ("domain", "example.x", "ends in 'x', which is not a top-level domain"),
    ("domain", "example.xn--", "is not a domain name"),
    ("protectDatabase", "no", "'no' is not true or false"),
    ("existingSshKeyFingerprints", ["SHA256:abc"], "is not an MD5 fingerprint"),
    ("existingSshKeyFingerprints", ["00:" * 15 + "00"], "is not the fingerprint of any"),
    ("webcount", 2, "dropstack:webcount: unknown key; known keys are region,"),
    # Day-2 keys: alerts, backups, restore.
    ("alerts", "maybe", "'maybe' is not true or false"),
    ("alertEmails", [], "alerts are on and have nowhere to go; list the addresses"),
    ("alertEmails", ["ops"], "entry 1 ('ops') is not an e-mail address"),
    ("alertEmails", ["ops@localhost"], "is not an e-mail address"),
    ("alertEmails", ["you@example.com"], "is an example address (RFC 2606)"),
    ("alertEmails", "ops@dropstack.test", "must be a list of e-mail addresses"),
    ("alertSlackWebhook", "http://hooks.slack.com/x", "is not a Slack incoming-webhook URL"),
    ("alertSlackChannel", "#ops", "together; set alertSlackWebhook too, or neither"),
    ("alertSlackChannel", "#ops alerts", "is not a Slack channel name like #ops-alerts"),
    ("alertWindow", "15m", "'15m' is not a monitor alert window; use one of 5m, 10m, 30m, 1h"),
    ("alertCpuPercent", 0, "0 is outside 1..100 (percent CPU)"),
    ("alertMemoryPercent", 101, "101 is outside 1..100"),
    ("alertDiskPercent", "most", "'most' is not an integer from 1 to 100"),
    ("alertLb5xxPercent", "0.5", "'0.5' is not an integer from 1 to 100"),
    ("alertLbLatencyMs", 0, "0 is outside 1..60000 (milliseconds)"),
    ("uptimeRegions", ["eu_central"], "'eu_central' is not an uptime check region; use us_east"),
    ("uptimeRegions", [], "is empty; list one or more of us_east"),
    ("uptimePeriod", "4m", "'4m' is not an uptime alert period; use one of 2m, 3m, 5m"),
    ("uptimeLatencyMs", 60001, "60001 is outside 1..60000"),
    ("tlsExpiryDays", 0, "0 is outside 1..90 (days before expiry)"),
    ("backups", "sometimes", "'sometimes' is not true or false"),
    ("backupRegion", "nyc1", "'nyc1' has no Spaces; use one of ams3, atl1"),
    ("backupRegion", "mars1", "'mars1' has no Spaces"),
    ("backupBucket", "My_Backups", "is not a Spaces bucket name"),
    ("backupBucket", "ab", "is not a Spaces bucket name"),
    ("backupBucket", "a--b", "is not a Spaces bucket name"),
    ("backupRetentionDays", 0, "0 is outside 1..3650 (days)"),
    ("restoreFromCluster", "Prod DB", "is not a database cluster name"),
    ("restoreToTime", "2026-12-01 09:30", "is not an RFC 3339 timestamp with an offset"),
    ("restoreToTime", "2026-12-01T09:30:00", "is not an RFC 3339 timestamp with an offset"),
    ("restoreToTime", "2026-13-01T09:30:00Z", "is not an RFC 3339 timestamp"),
    ("restoreToTime", "2999-01-01T00:00:00Z", "2999-01-01T00:00:00Z is in the future"),
    ("useRestoredDatabase", True, "needs dropstack:restoreFromCluster, the name of the cluster"),
]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    BAD_VALUES,
    ids=[f"{key}={value!r}"[:40] for key, value, _ in BAD_VALUES],
)
def test_bad_value_stops_before_any_resource(key, value, message):
    run = run_program(valid_config(**{key: value}))
    assert run.error is not None, "the program accepted it"
    (line,) = str(run.error).splitlines()
    assert line.startswith(f"dropstack:{key}: ")
    assert message in line
    assert PRIVATE_KEY.splitlines()[1] not in line, "a private key must never be echoed"
    assert run.resources == []
    assert run.calls == []


@pytest.mark.parametrize("key", ["sshPublicKeys", "adminCidrs"])
def test_required_key_missing(key):
    config = valid_config()
    del config[key]
    run = run_program(config)
    assert str(run.error).startswith(f"dropstack:{key}: required; ")
    assert "pulumi config set --path" in str(run.error)
    assert run.resources == []


def test_every_problem_is_reported_at_once_one_line_each():
    run = run_program(
        valid_config(region="mars1", webCount=99, adminCidrs=["0.0.0.0/0"], dbNodeCount=7)
    )
    lines = str(run.error).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        "dropstack:region",
        "dropstack:webCount",
        "dropstack:adminCidrs",
        "dropstack:dbNodeCount",
    ]
    assert run.resources == []


def test_ssh_from_anywhere_needs_the_explicit_opt_in():
    run = run_program(valid_config(adminCidrs=["0.0.0.0/0"], allowSshFromAnywhere=True))
    assert run.error is None
    (firewall,) = [r for r in run.resources if r.typ == "digitalocean:index/firewall:Firewall"]
    (ssh,) = [r for r in firewall.inputs["inboundRules"] if r.get("portRange") == "22"]
    assert ssh["sourceAddresses"] == ["0.0.0.0/0"]


def test_a_stack_in_a_region_without_spaces_needs_a_backup_region():
    run = run_program(valid_config(region="nyc1"))
    (line,) = str(run.error).splitlines()
    assert line.startswith("dropstack:backupRegion: the stack's region nyc1 has no Spaces")
    assert run.resources == []
    assert run_program(valid_config(region="nyc1", backupRegion="nyc3")).error is None
    assert run_program(valid_config(region="nyc1", backups=False)).error is None


def test_a_slack_webhook_stored_in_clear_is_refused_and_never_echoed():
    # A made-up webhook; the scanner is told so on the next line.
    webhook = "https://hooks.slack.com/services/T0/B0/very-secret-token"  # pragma: allowlist secret
    config = valid_config(alertSlackWebhook=webhook, alertSlackChannel="#ops")
    run = run_program(config)
    (line,) = str(run.error).splitlines()
    assert line.startswith("dropstack:alertSlackWebhook: is stored in clear; ")
    assert "very-secret-token" not in str(run.error)
    assert run.resources == []
    assert run_program(config, secrets=("alertSlackWebhook",)).error is None
    bad = run_program(valid_config(alertSlackWebhook="https://evil.test/very-secret-token"))
    assert "very-secret-token" not in str(bad.error)


def test_stack_name_too_long_for_resource_names():
    run = run_program(valid_config(), stack="a-very-long-stack-name-for-a-tiny-app-x")
    assert str(run.error).startswith("stack 'a-very-long-stack-name-for-a-tiny-app-x': ")
    assert "at most 40 characters" in str(run.error)
    assert run.resources == []
