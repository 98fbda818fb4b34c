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
    """The database CA and the app's environment file. SECRET_KEY is made once and kept; so
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
    return [
        RemoteFile(p.db_ca_cert, t.inv["db_ca_cert"], "0644", "root", s.app_user),
        RemoteFile(
            p.env_file, rotation.env_content(values), "0640", "root", s.app_user, secret=True
        ),
    ]


def os_files(t: Target, operator_ip: str) -> dict[str, RemoteFile]:
    return desired.os_files(t.deploy_user, operator_ip)


def authorized_keys(t: Target) -> RemoteFile:
    """The deploy user's authorized_keys: exactly the stack's sshPublicKeys (rotating keys
    replaces no droplet; this step puts the new list on live hosts and removes old keys)."""
    user = t.deploy_user
    content = "".join(f"{key.strip()}\n" for key in t.inv["ssh_public_keys"])
    return RemoteFile(f"/home/{user}/.ssh/authorized_keys", content, "0600", user, user)
