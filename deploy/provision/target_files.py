"""The desired state that depends on the target: directories, the app's environment file and
database CA, the OS hardening files, the deploy user's keys. Pure."""

from __future__ import annotations

import secrets

from deploy.host_model import HostSettings
from deploy.provision import desired
from deploy.provision.change import Target
from deploy.provision.files import RemoteFile
from deploy.secrets import plan as rotation


def directories(s: HostSettings, deploy_user: str) -> list[tuple[str, str, str, str]]:
    """(path, mode, owner, group) of the release layout. Code is not secret, so releases are
    world-readable (Nginx serves static files from them); the config dir is closed to others."""
    p = s.paths
    return [
        (p.root, "0755", "root", "root"),
        (p.releases_dir, "0755", deploy_user, deploy_user),
        (p.slots_dir, "0755", deploy_user, deploy_user),
        (p.config_dir, "0750", "root", s.app_user),
        (p.maintenance_dir, "0755", "root", "root"),
        (s.acme_webroot, "0755", "root", "root"),
    ]


def env_files(t: Target, existing_env: str) -> list[RemoteFile]:
    """The database CA and the app's environment file (with workers, REDIS_URL and the Redis
    CA when the inventory has one). SECRET_KEY is made once and kept; so
    are what `fab secrets.rotate` wrote: SECRET_KEY_FALLBACKS while set (the rotation's
    retire stage removes them, provisioning never does) and a rotated database password."""
    s, p = t.settings, t.settings.paths
    existing = desired.parse_env_file(existing_env)
    secret = existing.get("SECRET_KEY") or secrets.token_urlsafe(48)
    url = desired.app_database_url(t.inv["db_uri"], p.db_ca_cert)
    values = {
        "DROPSTACK_ENV": "production",
        "DATABASE_URL": url,
        "SECRET_KEY": secret,
        **rotation.kept_env_values(existing, url),
    }
    redis_ca = t.inv.data.get("redis_ca_cert") or ""
    if s.app.has_workers:
        values["REDIS_URL"] = app_redis_url(t.inv["redis_uri"], p.redis_ca_cert if redis_ca else "")
    return [
        RemoteFile(p.db_ca_cert, t.inv["db_ca_cert"], "0644", "root", s.app_user),
        *([RemoteFile(p.redis_ca_cert, redis_ca, "0644", "root", s.app_user)]
          if s.app.has_workers and redis_ca else []),
        RemoteFile(
            p.env_file, rotation.env_content(values), "0640", "root", s.app_user, secret=True
        ),
    ]  # fmt: skip


def app_redis_url(redis_uri: str, ca_path: str = "") -> str:
    """The inventory's rediss:// URI as the app gets it: the certificate verified (redis-py's
    default; Celery refuses rediss:// without ``ssl_cert_reqs``), against ``ca_path`` when the
    server's CA is not a public one (the local stand-in's) or the system store (DigitalOcean's
    Let's Encrypt certificate). redis-py, RQ and Celery read both query parameters."""
    if not redis_uri.startswith("rediss://"):
        raise ValueError("redis_uri: must start with rediss:// (a managed Redis is TLS only)")
    base, _, query = redis_uri.partition("?")
    params = [
        p for p in query.split("&") if p and not p.startswith(("ssl_cert_reqs=", "ssl_ca_certs="))
    ]
    params += ["ssl_cert_reqs=required", *([f"ssl_ca_certs={ca_path}"] if ca_path else [])]
    return f"{base}?{'&'.join(params)}"


def os_files(t: Target, operator_ip: str) -> dict[str, RemoteFile]:
    return desired.os_files(t.deploy_user, operator_ip)


def authorized_keys(t: Target) -> RemoteFile:
    """The deploy user's authorized_keys: exactly the stack's sshPublicKeys (rotating keys
    replaces no droplet; this step puts the new list on live hosts and removes old keys)."""
    user = t.deploy_user
    content = "".join(f"{key.strip()}\n" for key in t.inv["ssh_public_keys"])
    return RemoteFile(f"/home/{user}/.ssh/authorized_keys", content, "0600", user, user)
