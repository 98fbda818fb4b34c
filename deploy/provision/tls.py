"""The site's certificate: which ACME CA issues it, the certbot commands and what their
failures mean, and how long each certificate on a host has left.

Pure functions only. ``site_steps.tls_certificate`` and ``acme_client`` plan with them;
``fab status`` runs ``certificates_probe_command`` and reads it with ``parse_certificates``.

The CA comes from the inventory: ``acme_directory`` (an ACME directory URL; empty: Let's
Encrypt's production CA) and ``acme_ca_cert`` (the PEM that CA's API certificate chains to;
empty: the system's trust store). The local stack names its own ``pebble``, so certbot there
never talks to Let's Encrypt. certbot is always given its CA bundle explicitly: an inherited
REQUESTS_CA_BUNDLE (this project's build machines set one for package registries) must not
decide whom certbot trusts.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from deploy import shell
from deploy.host_model import HostSettings
from deploy.inventory import Inventory
from deploy.provision.files import RemoteFile

LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's and Ubuntu's trust store
CERTBOT_DROP_IN = "/etc/systemd/system/certbot.service.d/dropstack.conf"
LIVE_DIR = "/etc/letsencrypt/live"
# certbot renews a certificate 30 days before it expires (renew_before_expiry), and its timer
# tries twice a day; a certificate a day past that point has failed to renew at least twice.
RENEW_BEFORE_DAYS = 30
RENEWAL_GRACE_DAYS = 1


class AcmeError(ValueError):
    """An inventory value for the ACME CA is not allowed; one line naming the key."""


@dataclass(frozen=True)
class Acme:
    """Which CA certbot asks: its directory, and the PEM its API certificate chains to."""

    directory: str = LETS_ENCRYPT_DIRECTORY
    ca_cert: str = ""  # empty: the system trust store

    @property
    def is_lets_encrypt(self) -> bool:
        return self.directory == LETS_ENCRYPT_DIRECTORY


def acme_from_inventory(inv: Inventory) -> Acme:
    """The inventory's ``acme_directory`` and ``acme_ca_cert``, both optional ("" = default)."""
    directory = inv.data.get("acme_directory", "") or LETS_ENCRYPT_DIRECTORY
    ca_cert = inv.data.get("acme_ca_cert", "") or ""
    if not (isinstance(directory, str) and directory.startswith("https://")
            and len(directory.split()) == 1 and len(directory) < 300):  # fmt: skip
        raise AcmeError(f"acme_directory: {directory!r} is not an https:// ACME directory URL "
                        "(empty: Let's Encrypt)")  # fmt: skip
    if not isinstance(ca_cert, str) or (ca_cert and "-----BEGIN CERTIFICATE-----" not in ca_cert):
        raise AcmeError("acme_ca_cert: not a PEM certificate (empty: the system trust store)")
    return Acme(directory, ca_cert)


def ca_bundle_path(s: HostSettings, acme: Acme) -> str:
    """The CA bundle certbot trusts on the host: the inventory's PEM, or the system's."""
    return f"{s.config_dir}/acme-ca.pem" if acme.ca_cert else SYSTEM_CA_BUNDLE


def acme_files(s: HostSettings, acme: Acme) -> list[RemoteFile]:
    """The CA file (when the inventory names one), the drop-in that gives certbot's timer
    the same bundle, so renewals trust the CA the first certificate came from, and the deploy
    hook (``deploy_hook_file``)."""
    files = []
    if acme.ca_cert:
        pem = acme.ca_cert if acme.ca_cert.endswith("\n") else acme.ca_cert + "\n"
        files.append(RemoteFile(ca_bundle_path(s, acme), pem, "0644", "root", "root"))
    drop_in = (
        "# Managed by dropstack (fab provision). certbot trusts exactly this CA bundle when the\n"
        "# timer renews; the CA directory itself is stored in /etc/letsencrypt/renewal/.\n"
        "[Service]\n"
        f"Environment=REQUESTS_CA_BUNDLE={ca_bundle_path(s, acme)}\n"
    )
    files.append(RemoteFile(CERTBOT_DROP_IN, drop_in, "0644", "root", "root"))
    files.append(deploy_hook_file(s))
    return files


@dataclass(frozen=True)
class CertbotDirs:
    """certbot's --config-dir/--work-dir/--logs-dir; None on a host (certbot's defaults, under
    /etc/letsencrypt and /var). Tests point them into a temporary directory."""

    config: str
    work: str
    logs: str

    def options(self) -> list[str]:
        return ["--config-dir", self.config, "--work-dir", self.work, "--logs-dir", self.logs]


# Debian's nginx.conf: `user www-data;`. The workers read the certificate at each handshake.
NGINX_WORKER_USER = "www-data"


def deploy_hook_path(s: HostSettings) -> str:
    """What certbot runs after each issuance and renewal (stored in its renewal configuration
    as ``renew_hook``)."""
    return f"{s.config_dir}/certbot-deploy-hook"


def deploy_hook_file(s: HostSettings) -> RemoteFile:
    """The deploy hook: copy certbot's new certificate and key into the one file Nginx reads
    at each handshake, atomically, after checking it. No reload: Nginx names that file through
    a variable (site.conf), so new handshakes get the new certificate and no connection is
    closed. ``--check`` checks the installed file without changing anything."""
    if not s.domain:
        raise ValueError("deploy_hook_file needs a domain")
    text = DEPLOY_HOOK_SCRIPT.format(
        pem=shell.join([s.tls_certificate_file]),
        user=shell.join([NGINX_WORKER_USER]),
        group=shell.join([s.web_group]),
    )
    return RemoteFile(deploy_hook_path(s), text, "0755", "root", "root")


DEPLOY_HOOK_SCRIPT = r"""#!/bin/sh
# Managed by dropstack (fab provision); edits here are overwritten.
# certbot's deploy hook (renew_hook in /etc/letsencrypt/renewal/): install the renewed
# certificate and key, as one file, where Nginx's workers read them at each handshake.
# No reload: no kept-alive connection is closed by a renewal. See docs/tls.md, "Renewal".
set -eu
pem={pem}
user={user}
group={group}

# The file as Nginx's workers will read it: as the worker user, the certificate (with its
# chain) and the key parse, the key is the certificate's, and the certificate is in date.
check() {{
  runuser -u "$user" -- openssl x509 -noout -checkend 0 -in "$1" >/dev/null ||
    {{ echo "$1: no certificate in date that $user can read" >&2; return 1; }}
  cert_key=$(runuser -u "$user" -- openssl x509 -noout -pubkey -in "$1") &&
  key=$(runuser -u "$user" -- openssl pkey -pubout -in "$1") ||
    {{ echo "$1: no private key that $user can read" >&2; return 1; }}
  [ "$cert_key" = "$key" ] || {{ echo "$1: the key does not match the certificate" >&2; return 1; }}
}}

if [ "${{1:-}}" = "--check" ]; then check "$pem"; exit; fi

lineage=${{RENEWED_LINEAGE:?certbot sets RENEWED_LINEAGE}}
dir=$(dirname "$pem")
install -d -m 0750 -o root -g "$group" "$dir"
tmp=$(mktemp "$dir/.new.XXXXXX")  # 0600 while the key is written
trap 'rm -f "$tmp"' EXIT
cat "$lineage/fullchain.pem" "$lineage/privkey.pem" >"$tmp"
chgrp "$group" "$tmp"
chmod 0640 "$tmp"
check "$tmp"
if [ -f "$pem" ] && cmp -s "$tmp" "$pem"; then exit 0; fi
# rename(2): a handshake reads the old file or the new one, never a mix of two.
mv -f "$tmp" "$pem"
trap - EXIT
"""


def install_certificate_command(s: HostSettings) -> list[str]:
    """Run the deploy hook on certbot's current certificate (a host whose certificate predates
    the hook, or whose Nginx file is missing)."""
    return ["env", f"RENEWED_LINEAGE={s.tls_cert_dir}", deploy_hook_path(s)]


def check_certificate_command(s: HostSettings) -> list[str]:
    """The installed file exists, the worker user can read it, its key matches: what `nginx -t`
    can no longer tell, since the site names the file through a variable."""
    return [deploy_hook_path(s), "--check"]


def renewal_conf_path(s: HostSettings, config_dir: str = "/etc/letsencrypt") -> str:
    return f"{config_dir}/renewal/{s.domain}.conf"


def renewal_settings(s: HostSettings) -> dict[str, str]:
    """What certbot's renewal configuration must say: renew with the same key (so the file
    Nginx reads never pairs a new key with an old certificate, see docs/tls.md) and run this
    hook, not a reload."""
    return {"renew_hook": deploy_hook_path(s), "reuse_key": "True"}


def renewal_differences(s: HostSettings, conf: str) -> list[str]:
    """The ``[renewalparams]`` lines of certbot's renewal configuration that differ."""
    lines = (line.partition("=") for line in conf.splitlines())
    have = {name.strip(): value.strip() for name, equals, value in lines if equals}
    return [f"{k} = {v}" for k, v in renewal_settings(s).items() if have.get(k) != v]


def renewal_settings_command(s: HostSettings, path: str) -> list[str]:
    """Set the lines in place (certbot 2.1 has no `certbot reconfigure`); the rest is kept."""
    pairs = [word for item in renewal_settings(s).items() for word in item]
    return shell.script(RENEWAL_SETTINGS_SCRIPT, path, *pairs, name="renewal")


# $1 the file, then name/value pairs. A name's line is replaced, or added after
# [renewalparams]; the file is rewritten atomically.
RENEWAL_SETTINGS_SCRIPT = r"""file=$1; shift
tmp=$(mktemp "$file.XXXXXX")
cp -p "$file" "$tmp"
while [ $# -ge 2 ]; do
  name=$1; value=$2; shift 2
  if grep -q "^$name *=" "$tmp"; then
    sed -i "s|^$name *=.*|$name = $value|" "$tmp"
  else
    sed -i "/^\[renewalparams\]/a $name = $value" "$tmp"
  fi
done
mv -f "$tmp" "$file"
"""


def certonly_command(
    s: HostSettings, acme: Acme, dirs: CertbotDirs | None = None, hook: str | None = None
) -> list[str]:
    """Obtain the domain's certificate over HTTP-01 (webroot), as ``certify_script`` runs it."""
    if not s.domain:
        raise ValueError("certonly_command needs a domain")
    certbot = [
        "env", f"REQUESTS_CA_BUNDLE={ca_bundle_path(s, acme)}",
        "certbot", "certonly", "--non-interactive", "--agree-tos",
        "--register-unsafely-without-email", "--webroot", "-w", s.acme_webroot,
        "-d", s.domain, "--server", acme.directory, "--reuse-key",
        "--deploy-hook", hook if hook is not None else deploy_hook_path(s),
        *(dirs.options() if dirs else []),
    ]  # fmt: skip
    return certify_script(s.domain, acme.directory, certbot)


def force_renewal_command(
    s: HostSettings, acme: Acme, dirs: CertbotDirs | None = None
) -> list[str]:
    """Renew now against the CA stored in the renewal configuration, running its deploy hook.
    Not ``renew --dry-run``: that ignores the stored server and asks Let's Encrypt's staging CA.
    Without a terminal certbot renew first sleeps up to 8 minutes (spreading the timer's load on
    the CA); an operator's renewal should not."""
    certbot = ["env", f"REQUESTS_CA_BUNDLE={ca_bundle_path(s, acme)}",
               "certbot", "renew", "--non-interactive", "--force-renewal",
               "--no-random-sleep-on-renew", "--cert-name", s.domain or "",
               *(dirs.options() if dirs else [])]  # fmt: skip
    return certify_script(s.domain or "", acme.directory, certbot)


def certify_script(domain: str, server: str, certbot: list[str]) -> list[str]:
    """Run certbot; on failure print ONE line on stderr naming the domain and the cause (the
    step's error), with the CA's own words, instead of certbot's dozen lines of advice."""
    return shell.script(CERTIFY_SCRIPT, domain, server, *certbot, name="certify")


# $1 domain, $2 ACME directory, the rest: the certbot command. The case patterns are checked in
# order: the challenge results first, since their details also say "connection refused".
CERTIFY_SCRIPT = r"""domain=$1; server=$2; shift 2
out=$("$@" 2>&1); rc=$?
if [ "$rc" -eq 0 ]; then printf '%s\n' "$out"; exit 0; fi
detail=$(printf '%s\n' "$out" | sed -n 's/^ *Detail: *//p' | head -n 1)
if [ -z "$detail" ]; then
  detail=$(printf '%s\n' "$out" | sed -n '/^An unexpected error occurred:/{n;p;q;}')
fi
if [ -z "$detail" ]; then
  detail=$(printf '%s\n' "$out" | grep -v -e '^Ask for help' -e '^Saving debug' | grep . |
    tail -n 1)
fi
detail=$(printf '%s' "$detail" | sed 's/^Get "[^"]*": //' | tr -s ' \t' '  ' | cut -c 1-300)
case $out in
  *rateLimited*|*"too many "*|*"rate limit"*)
    cause="the CA refused: rate limited, retry after the time it names" ;;
  *"Type:   dns"*|*"DNS problem"*|*"could not resolve"*|*NXDOMAIN*)
    cause="the domain does not resolve: give it an A record for this host" ;;
  *"Type:   connection"*|*"Type:   unauthorized"*|*"Type:   incorrectResponse"*|*"Type:   caa"*)
    cause="the CA could not fetch the HTTP-01 challenge: the domain does not point at this"
    cause="$cause host, or port 80 is closed" ;;
  *CERTIFICATE_VERIFY_FAILED*|*SSLError*|*"certificate verify failed"*)
    cause="the ACME server $server is not trusted (acme_ca_cert)" ;;
  *"Connection refused"*|*"Max retries exceeded"*|*"Failed to establish"*|*"timed out"*|\
  *"Name or service not known"*|*"Temporary failure in name resolution"*|*"unreachable"*)
    cause="the ACME server $server cannot be reached (is the CA down?)" ;;
  *) cause="certbot failed" ;;
esac
printf 'certificate for %s not issued: %s: %s\n' "$domain" "$cause" "${detail:-no detail}" >&2
exit 1
"""


# --- fab status: days to expiry, and renewals that failed ---


def certificates_probe_command(live_dir: str = LIVE_DIR) -> list[str]:
    """One line per certificate certbot manages: ``name<TAB>notBefore=...<TAB>notAfter=...``.
    Run as root: /etc/letsencrypt/live is 0700."""
    return shell.script(CERTIFICATES_SCRIPT, live_dir, name="certificates")


CERTIFICATES_SCRIPT = r"""for d in "$1"/*/; do
  [ -f "${d}cert.pem" ] || continue
  dates=$(openssl x509 -noout -startdate -enddate -in "${d}cert.pem" | tr '\n' '\t')
  printf '%s\t%s\n' "$(basename "$d")" "$dates"
done
"""


@dataclass(frozen=True)
class CertificateState:
    name: str
    not_after: int  # seconds since the epoch
    days_left: int
    problem: str | None  # None: fine; else one line (expired, failed to renew, unreadable)

    def line(self) -> str:
        until = time.strftime("%Y-%m-%d", time.gmtime(self.not_after)) if self.not_after else "?"
        state = f"{self.days_left} days left (until {until})"
        return f"certificate {self.name}: {state}" + (f": {self.problem}" if self.problem else "")


def _openssl_time(value: str) -> int:
    # openssl prints e.g. "Mar  1 12:00:00 2031 GMT"
    return calendar.timegm(time.strptime(" ".join(value.split()), "%b %d %H:%M:%S %Y GMT"))


def parse_certificates(output: str, now: float) -> list[CertificateState]:
    """Read ``certificates_probe_command``'s output. A certificate is in trouble when it has
    expired, or when it is past the day certbot should have renewed it: the renewal failed."""
    states = []
    for line in output.splitlines():
        if not line.strip():
            continue
        name, *fields = line.split("\t")
        dates = dict(f.split("=", 1) for f in fields if "=" in f)
        try:
            start, end = _openssl_time(dates["notBefore"]), _openssl_time(dates["notAfter"])
        except (KeyError, ValueError):
            states.append(CertificateState(name, 0, 0, "unreadable: no validity dates"))
            continue
        days_left = int((end - now) // 86400)
        # Below 90 days of life the window shrinks to a third of it, so a short-lived
        # certificate is not flagged on the day it is issued.
        window = min(RENEW_BEFORE_DAYS, (end - start) / 86400 / 3)
        problem = None
        if end <= now:
            problem = "EXPIRED: certbot has not renewed it (journalctl -u certbot)"
        elif (end - now) / 86400 < window - RENEWAL_GRACE_DAYS:
            problem = (
                f"RENEWAL FAILED: certbot renews {window:.0f} days before expiry and has not "
                "(journalctl -u certbot; /var/log/letsencrypt/letsencrypt.log)"
            )
        states.append(CertificateState(name, end, days_left, problem))
    return states
