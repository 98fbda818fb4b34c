"""The site's steps: the Nginx site (validated with ``nginx -t`` before it is activated) and,
with a domain the host serves itself, certbot's CA, the certificate and its renewal. Pure steps
like ``operations``: facts in, ``Change`` objects out; ``operations.STEPS`` orders them."""

from __future__ import annotations

from dataclasses import replace

from deploy import shell
from deploy.host_model import HostSettings
from deploy.provision import facts as f
from deploy.provision import templates, tls
from deploy.provision.change import Change, Command, Target, Unsupported, file_changes, root


def nginx_activation(facts: f.HostFacts) -> tuple[Command, ...]:
    start = ["systemctl", "reload"] if facts.active("nginx") else ["systemctl", "enable", "--now"]
    return (root(["nginx", "-t"]), root([*start, "nginx"]))


def nginx_changes(t: Target, facts: f.HostFacts, s: HostSettings, summary: str) -> list[Change]:
    """The site's files from the templates, `nginx -t` before they stay, then a reload."""
    commands, detail = [], []
    for path in templates.nginx_obsolete_paths(s):
        if path in facts.present:
            commands.append(root(["rm", "-f", path]))
            detail.append(f"- {path}")
    for link, target in templates.nginx_symlinks(s).items():
        if facts.links.get(link) != target:
            commands.append(root(["ln", "-sfn", target, link]))
            detail.append(f"~ {link} -> {target}")
    files = file_changes(t, facts, templates.nginx_files(s), summary)
    if files:
        detail += files[0].detail
    if not (commands or files or not facts.active("nginx")):
        return []
    if not (commands or files):
        detail.append("~ nginx: inactive -> active")
    # The site names its certificate through a variable, so nginx -t no longer opens it: the
    # deploy hook's check does (present, readable by the workers, key matching).
    validate, validate_name = ["nginx", "-t"], "nginx -t"
    if s.tls:
        validate = shell.chain(validate, tls.check_certificate_command(s))
        validate_name = "nginx -t and the certificate check"
    return [
        Change(
            summary,
            commands=tuple(commands),
            files=files[0].files if files else (),
            validate=root(validate),
            validate_name=validate_name,
            then=nginx_activation(facts),
            detail=tuple(detail),
        )
    ]


def acme_settings(t: Target) -> tls.Acme:
    try:
        return tls.acme_from_inventory(t.inv)
    except tls.AcmeError as exc:
        raise Unsupported(str(exc)) from None


def acme_client(t: Target, facts: f.HostFacts) -> list[Change]:
    """certbot's CA bundle, the drop-in giving certbot's timer the same one (renewals go to
    the CA stored in the renewal configuration: the inventory's acme_directory), and the
    deploy hook that installs each certificate for Nginx."""
    files = tls.acme_files(t.settings, acme_settings(t))
    reload = (root(["systemctl", "daemon-reload"]),)
    return file_changes(t, facts, files, "certbot's CA and deploy hook", then=reload)


def tls_certificate(t: Target, facts: f.HostFacts) -> list[Change]:
    """First pass with a domain and no certificate yet: serve HTTP with the ACME webroot so
    certbot can prove the domain, then obtain it. certbot's timer renews it; its deploy hook
    installs it where Nginx reads it at each handshake (no reload). If certbot fails, the step
    fails with one line naming the domain and the cause, and the host keeps serving HTTP: the
    HTTPS site is only rendered (and checked) by a later step, once the certificate exists."""
    s = t.settings
    if not s.obtains_certificate or f"{s.tls_cert_dir}/fullchain.pem" in facts.present:
        return []
    http_only = replace(s, tls_certificate_ready=False)
    site = nginx_changes(t, facts, http_only, "nginx site over http for certbot")
    certbot = root(certbot_command(s, acme_settings(t)))
    detail = (*(site[0].detail if site else ()), f"+ certificate for {s.domain} (certbot)")
    if site:
        return [replace(site[0], then=(*site[0].then, certbot), detail=detail)]
    return [Change(f"certificate for {s.domain}", commands=(certbot,), detail=detail)]


def certbot_command(s: HostSettings, acme: tls.Acme) -> list[str]:
    """certbot certonly over HTTP-01 against the inventory's CA (tls.certonly_command)."""
    return tls.certonly_command(s, acme)


def tls_renewal(t: Target, facts: f.HostFacts) -> list[Change]:
    """Once certbot has the certificate: its renewals keep the key and run the deploy hook, not
    a reload (a lineage from before the hook said `nginx -t && systemctl reload nginx`), and
    Nginx's file exists (the hook writes it; a host from before the hook gets it here)."""
    s = t.settings
    if f"{s.tls_cert_dir}/fullchain.pem" not in facts.present:
        return []  # certbot failed or never ran: the certificate step said why
    changes = []
    wanted = tls.renewal_differences(s, facts.certbot_renewal)
    if wanted:
        path = tls.renewal_conf_path(s)
        changes.append(Change("certbot renews with the same key, without reloading nginx",
                              commands=(root(tls.renewal_settings_command(s, path)),),
                              detail=tuple(f"~ {path}: {line}" for line in wanted)))  # fmt: skip
    if s.tls_certificate_file not in facts.present:
        mode = f"0640 root:{s.web_group}"
        detail = f"+ {s.tls_certificate_file} (certbot's certificate and key, {mode})"
        changes.append(Change("certificate file for nginx",
                              commands=(root(tls.install_certificate_command(s)),),
                              detail=(detail,)))  # fmt: skip
    return changes


def nginx_site(t: Target, facts: f.HostFacts) -> list[Change]:
    s = t.settings
    if s.obtains_certificate and f"{s.tls_cert_dir}/fullchain.pem" not in facts.present:
        s = replace(s, tls_certificate_ready=False)
    return nginx_changes(t, facts, s, "nginx site")
