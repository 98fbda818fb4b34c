"""The pure part of secret rotation: stages, env file edits, and what provisioning keeps."""

import itertools
import secrets

import pytest

from deploy import host_model
from deploy.inventory import parse_inventory
from deploy.provision import desired, operations
from deploy.secrets import plan

OLD, NEW = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
URL = "postgresql://app:old%2Fpw@db.internal:25061/app-pool?sslmode=verify-full&sslrootcert=/c"
INVENTORY = {
    "stack": "t", "region": "ams3", "vpc_cidr": "10.110.0.0/20", "web_names": ["web-1", "web-2"],
    "web_public_ips": ["203.0.113.7", "203.0.113.8"], "web_private_ips": ["10.0.0.7", "10.0.0.8"],
    "ssh_user": "deploy", "ssh_key_path": "", "ssh_public_keys": ["ssh-ed25519 AAAA op"],
    "load_balancer_ip": "", "domain": "", "url": "http://203.0.113.7", "db_host": "db.internal",
    "db_port": 25061, "db_name": "app", "db_user": "app",
    "db_uri": "postgresql://app:inventory-pw@db.internal:25061/app-pool?sslmode=require",
    "db_ca_cert": "CA", "db_admin_uri": "postgresql://doadmin:pw@db:25060/app?sslmode=require",
    "backup_endpoint": "", "backup_bucket": "", "backup_region": "", "backup_access_key_id": "",
    "backup_secret_access_key": "",
}  # fmt: skip


def env_text(**values) -> str:
    base = {"DROPSTACK_ENV": "production", "DATABASE_URL": URL, "SECRET_KEY": OLD}
    return plan.env_content({**base, **values})


@pytest.mark.parametrize(
    ("hosts", "keep_old", "retire_only", "stages"),
    [
        (1, False, False, ["sign", "retire"]),
        (3, False, False, ["accept", "sign", "retire"]),
        (1, True, False, ["sign"]),
        (2, True, False, ["accept", "sign"]),
        (2, False, True, ["retire"]),
    ],
)
def test_stages(hosts, keep_old, retire_only, stages):
    assert plan.secret_key_stages(hosts, keep_old, retire_only) == stages


def test_every_stage_keeps_both_keys_verifiable_until_retire():
    """Walked stage by stage: whatever any host signs with, every host verifies it, at every
    point where hosts may be in the stage before or after (a rollout is host by host)."""
    stages = plan.secret_key_stages(3)
    states = [{"SECRET_KEY": OLD, plan.FALLBACKS: None}]
    states += [plan.secret_key_values(stage, OLD, NEW) for stage in stages]
    for before, after in itertools.pairwise(states):
        if after[plan.FALLBACKS] is None and after["SECRET_KEY"] == NEW:
            continue  # the retire stage: the old key stops working, by design
        for signer in (before, after):
            for verifier in (before, after):
                known = {verifier["SECRET_KEY"], verifier[plan.FALLBACKS]}
                assert signer["SECRET_KEY"] in known, (before, after)
    assert states[-1] == {"SECRET_KEY": NEW, plan.FALLBACKS: None}


def test_edits_change_only_the_named_keys_in_provisionings_order():
    text = env_text(API_WRITE_TOKEN="tok")
    signed = plan.edited(text, plan.secret_key_values("sign", OLD, NEW))
    values = desired.parse_env_file(signed)
    assert list(values) == ["DROPSTACK_ENV", "DATABASE_URL", "SECRET_KEY", plan.FALLBACKS,
                            "API_WRITE_TOKEN"]  # fmt: skip
    assert (values["SECRET_KEY"], values[plan.FALLBACKS]) == (NEW, OLD)
    assert values["DATABASE_URL"] == URL and values["API_WRITE_TOKEN"] == "tok"
    retired = desired.parse_env_file(
        plan.edited(signed, plan.secret_key_values("retire", OLD, NEW))
    )
    assert plan.FALLBACKS not in retired and retired["SECRET_KEY"] == NEW


def test_the_password_is_replaced_and_nothing_else():
    rotated = plan.with_password(URL, "n3w/p@ss")
    assert rotated == URL.replace("old%2Fpw", "n3w%2Fp%40ss")
    assert plan.password_of(rotated) == "n3w/p@ss"
    values = plan.database_url_values(env_text(), "fresh", "2026-12-02T10:00:00+00:00")
    assert plan.password_of(values["DATABASE_URL"]) == "fresh"
    assert values[plan.ROTATED_MARK] == "2026-12-02T10:00:00+00:00"
    with pytest.raises(plan.RotationError, match="DATABASE_URL is not set"):
        plan.database_url_values("SECRET_KEY=x\n", "fresh", "now")


@pytest.mark.parametrize(
    ("envs", "fragment"),
    [
        ({"web-1": {"SECRET_KEY": OLD}, "web-2": {}}, "web-2: its env file has no SECRET_KEY"),
        ({"web-1": {"SECRET_KEY": OLD, plan.FALLBACKS: NEW}}, "web-1: SECRET_KEY_FALLBACKS is set"),
    ],
)
def test_a_rotation_refuses_to_start_on_an_unfinished_one(envs, fragment):
    refusal = plan.refuse_to_start(envs)
    assert refusal and fragment in refusal and OLD not in refusal and NEW not in refusal


def test_the_read_back_check():
    assert plan.secret_key_check({"SECRET_KEY": NEW}, OLD, NEW, "retire") is None
    assert plan.secret_key_check({"SECRET_KEY": NEW, plan.FALLBACKS: OLD}, OLD, NEW, "sign") is None
    assert "still set" in plan.secret_key_check(
        {"SECRET_KEY": NEW, plan.FALLBACKS: OLD}, OLD, NEW, "retire"
    )
    assert "not the new key" in plan.secret_key_check({"SECRET_KEY": OLD}, OLD, NEW, "retire")


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        ('FATAL:  password authentication failed for user "app"', True),
        ("connection failed: FATAL: SASL authentication failed", True),
        ("connection to server at 127.0.0.1 port 5 failed: Connection refused", False),
    ],
)
def test_a_refused_login_is_told_from_an_unreachable_server(message, refused):
    assert plan.login_refused(message) is refused


# --- provisioning keeps what the rotation wrote ---


def provisioned_env(existing: str) -> dict[str, str]:
    inv = parse_inventory(INVENTORY, "test")
    target = operations.Target("web-1", host_model.for_host({}, inv, inv.web_hosts[0]), inv)
    env = next(f for f in operations.env_files(target, existing) if f.secret)
    return desired.parse_env_file(env.content), env.content


def test_provisioning_keeps_the_fallbacks_and_writes_the_same_bytes():
    existing = plan.edited(provisioned_env("")[1], plan.secret_key_values("sign", OLD, NEW))
    values, content = provisioned_env(existing)
    assert (values["SECRET_KEY"], values[plan.FALLBACKS]) == (NEW, OLD)
    assert content == existing, "a rotated file must not show up as drift"


def test_provisioning_keeps_a_rotated_password_and_else_the_inventorys():
    fresh, _ = provisioned_env("")
    assert plan.password_of(fresh["DATABASE_URL"]) == "inventory-pw"
    rotated = plan.edited(
        provisioned_env("")[1], plan.database_url_values(provisioned_env("")[1], "rotated", "t")
    )
    values, content = provisioned_env(rotated)
    assert plan.password_of(values["DATABASE_URL"]) == "rotated"
    assert values["DATABASE_URL"] == plan.with_password(fresh["DATABASE_URL"], "rotated")
    assert content == rotated
    # Without the mark, the host's differing password is the inventory's business again.
    unmarked = plan.edited(rotated, {plan.ROTATED_MARK: None})
    assert plan.password_of(provisioned_env(unmarked)[0]["DATABASE_URL"]) == "inventory-pw"
