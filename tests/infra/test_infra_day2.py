"""Day-2 infrastructure on the real program: alerts as code, the uptime check, the off-site backup
bucket and its key, point-in-time restore into a new cluster, and the uptime policy."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import StackValidationArgs, StackValidationPolicy
from pulumi_policy.policy import PolicyResource

from infra import alert_policy
from infra.backups import lifecycle_rules, spaces_endpoint
from infra.database import RestorePoint, restored_cluster_name
from infra.policy import rules
from infra.policy.policies import POLICIES
from infra.settings import SettingsError, parse_settings
from tests.infra.mock_cloud import (
    LB_IP,
    SPACES_ACCESS_KEY,
    SPACES_SECRET_KEY,
    ProgramRun,
    run_program,
)
from tests.infra.sample_config import ALERT_EMAIL, valid_config
from tests.infra.test_infra_policy import analyzer  # noqa: F401  (the served pack fixture)

MONITOR_ALERT = "digitalocean:index/monitorAlert:MonitorAlert"
UPTIME_CHECK = "digitalocean:index/uptimeCheck:UptimeCheck"
UPTIME_ALERT = "digitalocean:index/uptimeAlert:UptimeAlert"
SPACES_BUCKET = "digitalocean:index/spacesBucket:SpacesBucket"
SPACES_KEY = "digitalocean:index/spacesKey:SpacesKey"
DB_CLUSTER = "digitalocean:index/databaseCluster:DatabaseCluster"
DB_FIREWALL = "digitalocean:index/databaseFirewall:DatabaseFirewall"
DB_DATABASE = "digitalocean:index/databaseDb:DatabaseDb"
DB_USER = "digitalocean:index/databaseUser:DatabaseUser"
LOAD_BALANCER = "digitalocean:index/loadBalancer:LoadBalancer"
WEB_TAG = "dropstack-test-web"
WEBHOOK = (
    "https://hooks.slack.com/services/T000/B000/secret-token"  # pragma: allowlist secret (made up)
)
RESTORE_TIME = "2026-12-01T09:30:00Z"

SCENARIOS = {
    "one": {},
    "lb-domain": {"webCount": 3, "domain": "example.com"},
    "domain": {"domain": "example.com", "alertWindow": "10m", "uptimeRegions": ["eu_west"]},
    "tuned": {
        "webCount": 2,
        "alertCpuPercent": 70,
        "alertMemoryPercent": 75,
        "alertDiskPercent": 60,
        "alertLb5xxPercent": 5,
        "alertLbLatencyMs": 900,
        "uptimeLatencyMs": 1500,
        "uptimePeriod": "2m",
        "alertSlackWebhook": WEBHOOK,
        "alertSlackChannel": "#ops",
        "backupRegion": "ams3",
        "backupBucket": "acme-db-backups",
        "backupRetentionDays": 90,
    },
    "restore": {"restoreFromCluster": "dropstack-prod-db", "restoreToTime": RESTORE_TIME},
    "restore-latest-switched": {
        "restoreFromCluster": "dropstack-prod-db",
        "useRestoredDatabase": True,
        "dbPoolSize": 5,
    },
}


@pytest.fixture(scope="module")
def runs() -> dict[str, ProgramRun]:
    results = {
        name: run_program(valid_config(**extra), secrets=("alertSlackWebhook",))
        for name, extra in SCENARIOS.items()
    }
    assert {name: run.error for name, run in results.items()} == dict.fromkeys(SCENARIOS)
    return results


def revealed(value: object, *, secret: bool) -> object:
    """An input as the engine receives it, checking whether it arrived marked secret."""
    marked = isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig
    assert marked is secret, f"expected secret={secret}: {value!r}"
    return value["value"] if marked else value


def alerts_by_type(run: ProgramRun) -> dict[str, dict]:
    return {r.inputs["type"]: r.inputs for r in run.of_type(MONITOR_ALERT)}


# --- monitor alerts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "lb"), [("one", False), ("lb-domain", True), ("domain", False), ("tuned", True)]
)
def test_monitor_alerts_cover_droplets_database_and_the_load_balancer(runs, name, lb):
    run = runs[name]
    found = alerts_by_type(run)
    expected = {
        alert_policy.DROPLET_CPU,
        alert_policy.DROPLET_MEMORY,
        alert_policy.DROPLET_DISK,
        alert_policy.DATABASE_CPU,
        alert_policy.DATABASE_MEMORY,
        alert_policy.DATABASE_DISK,
    }
    if lb:
        expected |= {alert_policy.LB_5XX_RATE, alert_policy.LB_LATENCY}
    assert set(found) == expected
    cluster_id = run.one(DB_CLUSTER).id
    for typ, alert in found.items():
        assert alert["compare"] == "GreaterThan"
        assert alert["enabled"] is True
        assert alert["window"] == SCENARIOS[name].get("alertWindow", "5m")
        if typ.startswith("v1/insights/droplet/"):
            assert alert["tags"] == [WEB_TAG] and "entities" not in alert
        elif typ.startswith("v1/dbaas/"):
            assert alert["entities"] == [cluster_id] and "tags" not in alert
        else:
            assert alert["entities"] == [run.one(LOAD_BALANCER).id]


def test_default_thresholds(runs):
    values = {typ: alert["value"] for typ, alert in alerts_by_type(runs["lb-domain"]).items()}
    assert values == {
        alert_policy.DROPLET_CPU: 80,
        alert_policy.DROPLET_MEMORY: 90,
        alert_policy.DROPLET_DISK: 85,
        alert_policy.DATABASE_CPU: 80,
        alert_policy.DATABASE_MEMORY: 90,
        alert_policy.DATABASE_DISK: 85,
        alert_policy.LB_5XX_RATE: 1,
        alert_policy.LB_LATENCY: 2000,
    }


def test_thresholds_are_settings(runs):
    values = {typ: alert["value"] for typ, alert in alerts_by_type(runs["tuned"]).items()}
    assert values[alert_policy.DROPLET_CPU] == values[alert_policy.DATABASE_CPU] == 70
    assert values[alert_policy.DROPLET_MEMORY] == values[alert_policy.DATABASE_MEMORY] == 75
    assert values[alert_policy.DROPLET_DISK] == values[alert_policy.DATABASE_DISK] == 60
    assert (values[alert_policy.LB_5XX_RATE], values[alert_policy.LB_LATENCY]) == (5, 900)
    latency = [a for a in runs["tuned"].of_type(UPTIME_ALERT) if a.inputs["type"] == "latency"]
    assert [(a.inputs["threshold"], a.inputs["period"]) for a in latency] == [(1500, "2m")]


def test_every_alert_notifies_the_configured_recipients(runs):
    for name, slack in (("one", False), ("tuned", True)):
        run = runs[name]
        # With a webhook, the notification settings reach the state as a secret.
        for alert in run.of_type(MONITOR_ALERT):
            targets = revealed(alert.inputs["alerts"], secret=slack)
            assert targets["emails"] == [ALERT_EMAIL]
            assert targets.get("slacks") == (
                [{"channel": "#ops", "url": WEBHOOK}] if slack else None
            )
        for alert in run.of_type(UPTIME_ALERT):
            (notification,) = revealed(alert.inputs["notifications"], secret=slack)
            assert notification["emails"] == [ALERT_EMAIL]
            assert notification.get("slacks") == (
                [{"channel": "#ops", "url": WEBHOOK}] if slack else None
            )


def test_slack_only_alerts_need_no_email():
    run = run_program(
        valid_config(alertEmails=[], alertSlackWebhook=WEBHOOK, alertSlackChannel="#ops"),
        secrets=("alertSlackWebhook",),
    )
    assert run.error is None
    for alert in run.of_type(MONITOR_ALERT):
        targets = revealed(alert.inputs["alerts"], secret=True)
        assert "emails" not in targets
        assert targets["slacks"] == [{"channel": "#ops", "url": WEBHOOK}]


def test_descriptions_name_the_stack_and_threshold(runs):
    cpu = alerts_by_type(runs["one"])[alert_policy.DROPLET_CPU]
    assert cpu["description"] == "dropstack-test-alerts: web droplet CPU % > 80 over 5m"


def test_alerts_switched_off_declare_no_alert_and_no_check():
    run = run_program(valid_config(alerts=False, alertEmails=[]))
    assert run.error is None
    for typ in (MONITOR_ALERT, UPTIME_CHECK, UPTIME_ALERT):
        assert run.of_type(typ) == []


def test_alerts_without_recipient_are_refused():
    with pytest.raises(SettingsError, match=r"^dropstack:alertEmails: alerts are on and have"):
        parse_settings(valid_config(alertEmails=[]))


def test_a_spec_outside_digitaloceans_values_is_refused():
    with pytest.raises(ValueError, match="unknown type"):
        alert_policy.MonitorAlertSpec("x", "v1/insights/droplet/cpu_pct", 1, "5m", "web-tag", "x")
    with pytest.raises(ValueError, match="bad compare or window"):
        alert_policy.MonitorAlertSpec("x", alert_policy.DROPLET_CPU, 1, "15m", "web-tag", "x")
    with pytest.raises(ValueError, match="threshold and comparison go together"):
        alert_policy.UptimeAlertSpec("x", "latency", "5m", threshold=100)


# --- the uptime check -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "typ", "target"),
    [
        ("one", "http", "http://192.0.2.1"),
        ("tuned", "http", f"http://{LB_IP}"),
        ("domain", "https", "https://example.com"),
        ("lb-domain", "https", "https://example.com"),
    ],
)
def test_uptime_check_watches_the_sites_url(runs, name, typ, target):
    check = runs[name].one(UPTIME_CHECK)
    assert (check.inputs["type"], check.inputs["target"]) == (typ, target)
    assert check.inputs["target"] == runs[name].outputs["url"]
    assert check.inputs["regions"] == SCENARIOS[name].get(
        "uptimeRegions", ["us_east", "us_west", "eu_west", "se_asia"]
    )
    assert check.inputs["enabled"] is True


@pytest.mark.parametrize(("name", "tls"), [("one", False), ("domain", True), ("lb-domain", True)])
def test_uptime_alerts_down_latency_and_tls_expiry_with_a_domain(runs, name, tls):
    run = runs[name]
    check = run.one(UPTIME_CHECK)
    found = {a.inputs["type"]: a.inputs for a in run.of_type(UPTIME_ALERT)}
    assert set(found) == ({"down", "latency", "ssl_expiry"} if tls else {"down", "latency"})
    assert all(alert["checkId"] == check.id for alert in found.values())
    assert "threshold" not in found["down"] and "comparison" not in found["down"]
    assert (found["latency"]["threshold"], found["latency"]["comparison"]) == (2000, "greater_than")
    if tls:
        assert (found["ssl_expiry"]["threshold"], found["ssl_expiry"]["comparison"]) == (
            14,
            "less_than",
        )


# --- the backup bucket ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bucket", "region", "days"),
    [("one", "dropstack-test-backups", "fra1", 30), ("tuned", "acme-db-backups", "ams3", 90)],
)
def test_backup_bucket_is_private_versioned_and_expires_old_backups(
    runs, name, bucket, region, days
):
    created = runs[name].one(SPACES_BUCKET)
    assert created.inputs == {
        "name": bucket,
        "region": region,
        "acl": "private",
        "forceDestroy": False,
        "versioning": {"enabled": True},
        "lifecycleRules": [
            {
                "id": "expire-old-backups",
                "enabled": True,
                "abortIncompleteMultipartUploadDays": 1,
                "expiration": {"days": days},
                "noncurrentVersionExpiration": {"days": days},
            }
        ],
    }
    assert (created.options.protect, created.options.retain_on_delete) == (True, True)


def test_backup_key_may_read_and_write_only_its_bucket(runs):
    run = runs["tuned"]
    key = run.one(SPACES_KEY)
    assert key.inputs["grants"] == [{"bucket": "acme-db-backups", "permission": "readwrite"}]
    assert key.inputs["name"] == "dropstack-test-backups-key"
    assert not key.options.protect, "a key is rotated by replacing it; it holds no data"


def test_backup_bucket_protection_follows_protect_database():
    run = run_program(valid_config(protectDatabase=False))
    bucket = run.one(SPACES_BUCKET)
    assert (bucket.options.protect, bucket.options.retain_on_delete) == (False, False)


def test_backups_switched_off_declare_no_bucket():
    run = run_program(valid_config(backups=False))
    assert run.of_type(SPACES_BUCKET) == run.of_type(SPACES_KEY) == []


def test_backup_rules_are_data():
    assert spaces_endpoint("ams3") == "https://ams3.digitaloceanspaces.com"
    (rule,) = lifecycle_rules(7)
    assert (rule.expiration_days, rule.noncurrent_version_expiration_days) == (7, 7)


def test_backup_storage_offers_what_the_backup_job_needs(runs):
    """The component's outputs, exported for the backup job; the secret key only as a secret."""
    backups = [r for r in runs["tuned"].resources if r.typ == "dropstack:backups:BackupStorage"]
    assert len(backups) == 1
    key = runs["tuned"].one(SPACES_KEY)
    assert (key.outputs["accessKey"], key.outputs["secretKey"]) == (
        SPACES_ACCESS_KEY,
        SPACES_SECRET_KEY,
    )
    assert runs["tuned"].outputs["backup_secret_access_key"] == SPACES_SECRET_KEY
    assert "backup_secret_access_key" in runs["tuned"].secret_outputs


# --- point-in-time restore into a new cluster -------------------------------------------------


def test_restore_declares_a_new_cluster_and_keeps_the_old_one(runs):
    run = runs["restore"]
    clusters = {c.inputs["name"]: c for c in run.of_type(DB_CLUSTER)}
    assert set(clusters) == {"dropstack-test-db", "dropstack-test-db-r20261201093000"}
    original = clusters["dropstack-test-db"]
    restored = clusters["dropstack-test-db-r20261201093000"]
    assert "backupRestore" not in original.inputs
    assert restored.inputs["backupRestore"] == {
        "databaseName": "dropstack-prod-db",
        "backupCreatedAt": RESTORE_TIME,
    }
    for key in ("engine", "version", "size", "region", "nodeCount", "privateNetworkUuid"):
        assert restored.inputs[key] == original.inputs[key], key
    assert (restored.options.protect, restored.options.retain_on_delete) == (True, True)


def test_the_restored_cluster_is_firewalled_like_the_original(runs):
    run = runs["restore"]
    firewalls = {f.inputs["clusterId"]: f.inputs["rules"] for f in run.of_type(DB_FIREWALL)}
    assert firewalls == {c.id: [{"type": "tag", "value": WEB_TAG}] for c in run.of_type(DB_CLUSTER)}
    # Its database and roles come from the backup: declaring them again would collide.
    assert len(run.of_type(DB_DATABASE)) == len(run.of_type(DB_USER)) == 1


def test_until_switched_the_app_keeps_the_original_cluster(runs):
    run = runs["restore"]
    host = urlsplit(run.outputs["db_uri"]).hostname
    assert (
        host
        == run.outputs["db_host"]
        == "private-dropstack-test-db-do-user-1-0.b.db.ondigitalocean.com"
    )


def test_switching_moves_the_app_and_the_database_alerts(runs):
    run = runs["restore-latest-switched"]
    restored = next(c for c in run.of_type(DB_CLUSTER) if "backupRestore" in c.inputs)
    assert restored.inputs["name"] == "dropstack-test-db-restored"
    assert restored.inputs["backupRestore"] == {"databaseName": "dropstack-prod-db"}
    assert run.outputs["db_host"] == restored.outputs["privateHost"]
    uri = urlsplit(run.outputs["db_uri"])
    assert (uri.hostname, uri.port, uri.path) == (
        restored.outputs["privateHost"],
        25061,
        "/dropstack-pool",
    )
    assert uri.username == run.outputs["db_user"] == "dropstack"
    assert "db_uri" in run.secret_outputs
    pools = run.of_type("digitalocean:index/databaseConnectionPool:DatabaseConnectionPool")
    assert sorted(p.inputs["clusterId"] for p in pools) == sorted(
        c.id for c in run.of_type(DB_CLUSTER)
    )
    for typ in (alert_policy.DATABASE_CPU, alert_policy.DATABASE_MEMORY):
        assert alerts_by_type(run)[typ]["entities"] == [restored.id]


def test_restore_names_are_per_restore_point():
    assert restored_cluster_name("p-db", RestorePoint("src", "2026-12-01T09:30:00Z")) == (
        "p-db-r20261201093000"
    )
    assert restored_cluster_name("p-db", RestorePoint("src")) == "p-db-restored"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-12-01T09:30:00Z", "2026-12-01T09:30:00Z"),
        ("2026-12-01t10:30:00+01:00", "2026-12-01T09:30:00Z"),
        ("2026-12-01T09:30:00.250Z", "2026-12-01T09:30:00Z"),
        ("", ""),
    ],
)
def test_restore_time_is_normalised_to_utc(given, stored):
    settings = parse_settings(
        valid_config(restoreFromCluster="dropstack-prod-db", restoreToTime=given),
        now=datetime(2026, 12, 2, tzinfo=UTC),
    )
    assert settings.restore_to_time == stored


def test_a_restore_point_after_now_is_refused():
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(SettingsError, match=r"^dropstack:restoreToTime: .* is in the future"):
        parse_settings(
            valid_config(restoreFromCluster="c-db", restoreToTime="2026-12-01T09:00:01Z"),
            now=now,
        )
    assert parse_settings(
        valid_config(restoreFromCluster="c-db", restoreToTime="2026-12-01T09:00:00Z"), now=now
    ).restoring


# --- the uptime policy ------------------------------------------------------------------------

DOMAIN_POLICY = next(p for p in POLICIES if p.name == "domain-has-an-uptime-check")


def stack_reports(resources: list[tuple[str, str, dict]]) -> list[str]:
    reports: list[str] = []
    args = StackValidationArgs(
        [
            PolicyResource(typ, props, urn, urn, None, None, None, [], {})
            for typ, urn, props in resources
        ]
    )
    assert isinstance(DOMAIN_POLICY, StackValidationPolicy)
    DOMAIN_POLICY.validate(args, lambda message, urn: reports.append(message))
    return reports


DOMAIN_RESOURCE = (rules.DOMAIN, "urn:d", {"name": "example.com"})
CHECK = (
    rules.UPTIME_CHECK,
    "urn:c",
    {"id": "chk-1", "target": "https://example.com", "type": "https", "enabled": True},
)
DOWN = (rules.UPTIME_ALERT, "urn:a", {"checkId": "chk-1", "type": "down"})


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ([DOMAIN_RESOURCE, CHECK, DOWN], None),
        ([CHECK, DOWN], None),
        ([DOMAIN_RESOURCE], "has no enabled uptime check on https://example.com"),
        ([DOMAIN_RESOURCE, DOWN], "has no enabled uptime check"),
        ([DOMAIN_RESOURCE, CHECK], "has no alert for the site being down"),
        (
            [DOMAIN_RESOURCE, CHECK, (rules.UPTIME_ALERT, "urn:l", {"checkId": "chk-1",
                                                                    "type": "latency"})],
            "has no alert for the site being down",
        ),
        (
            [DOMAIN_RESOURCE, CHECK, (rules.UPTIME_ALERT, "urn:o", {"checkId": "other",
                                                                    "type": "down"})],
            "has no alert for the site being down",
        ),
        (
            [DOMAIN_RESOURCE, (rules.UPTIME_CHECK, "urn:c", {**CHECK[2], "enabled": False}), DOWN],
            "has no enabled uptime check",
        ),
        (
            [DOMAIN_RESOURCE, (rules.UPTIME_CHECK, "urn:c", {**CHECK[2],
                                                             "target": "http://192.0.2.1"}), DOWN],
            "has no enabled uptime check",
        ),
    ],
    ids=["ok", "no-domain", "no-check", "alert-only", "no-alert", "latency-only", "other-check",
         "disabled", "wrong-target"],
)  # fmt: skip
def test_uptime_rule(resources, message):
    found = rules.uptime_violations(resources)
    if message is None:
        assert found == []
    else:
        assert [m for _, m in found] and all(message in m for _, m in found), found
        assert stack_reports(resources), "the policy reports what the rule finds"


def _program_resources(run: ProgramRun) -> list[tuple[str, str, dict]]:
    return [(r.typ, r.urn, r.outputs) for r in run.resources if r.typ.startswith("digitalocean:")]


def test_the_programs_domain_stack_passes_and_fails_without_its_check(runs):
    resources = _program_resources(runs["lb-domain"])
    assert rules.uptime_violations(resources) == []
    assert stack_reports(resources) == []
    without_check = [r for r in resources if r[0] != rules.UPTIME_CHECK]
    assert stack_reports(without_check) != []
    without_alerts = [r for r in resources if r[0] != rules.UPTIME_ALERT]
    assert any("being down" in m for m in stack_reports(without_alerts))


def test_a_domain_stack_with_alerts_off_fails_the_policy():
    run = run_program(valid_config(domain="example.com", alerts=False, alertEmails=[]))
    assert run.error is None
    (message,) = stack_reports(_program_resources(run))
    assert "domain example.com has no enabled uptime check" in message


def _struct(props: dict) -> struct_pb2.Struct:
    return json_format.ParseDict(props, struct_pb2.Struct())


def test_served_pack_checks_uptime_in_the_engines_shape(analyzer):  # noqa: F811
    """AnalyzeStack as the engine sends it: outputs with camelCase names and ids."""

    def resource(typ, name, props):
        urn = f"urn:pulumi:prod::dropstack::{typ}::{name}"
        return analyzer_pb2.AnalyzerResource(
            type=typ, urn=urn, name=name, properties=_struct(props)
        )

    domain = resource(rules.DOMAIN, "dom", {"name": "example.com", "ttl": 1800})
    check = resource(
        rules.UPTIME_CHECK,
        "site",
        {"id": "4de7ac8b", "name": "site", "target": "https://example.com", "type": "https",
         "regions": ["eu_west"], "enabled": True},
    )  # fmt: skip
    down = resource(
        rules.UPTIME_ALERT,
        "site-down",
        {"id": "a1", "checkId": "4de7ac8b", "type": "down", "period": "5m",
         "notifications": [{"emails": ["ops@dropstack.test"]}]},
    )  # fmt: skip

    def policies(*resources):
        response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources))
        return [d.policyName for d in response.diagnostics]

    assert policies(domain, check, down) == []
    assert policies(domain, check) == ["domain-has-an-uptime-check"]
    assert policies(domain) == ["domain-has-an-uptime-check"]
