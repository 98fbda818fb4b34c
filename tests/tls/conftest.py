"""The whole TLS flow on loopback, for real: Let's Encrypt's test CA (pebble) with its test DNS
server (pebble-challtestsrv), a real Nginx serving the rendered site, and real certbot.

The order is provisioning's: the site is first served over HTTP with the ACME webroot, certbot
(the very command ``fab provision`` runs, pointed at temporary directories) obtains the
certificate over HTTP-01 from pebble and its deploy hook installs it for Nginx, then the HTTPS
site is rendered, validated with ``nginx -t`` and the hook's certificate check, and reloaded.
The one change from a host: loopback ports instead of 80 and 443
(pebble's ``httpPort`` is the test Nginx's HTTP port). Everything is torn down afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from deploy.host_model import HostSettings
from deploy.local import acme
from deploy.provision import tls
from deploy.provision.templates import nginx_symlinks, render_site_files
from tests.deploy.test_templates import VPC, build_nginx_tree, nginx_t
from tests.loopback import (
    free_port,
    keep_nginx_temp_files_in,
    run_as_root,
    serve_app,
    stop,
    wait_for_port,
    world_readable_tempdir,
)

DOMAIN = "app.dropstack.test"


@dataclass
class LocalCa:
    """pebble and challtestsrv, started from deploy/local/acme.py's builders."""

    ca: acme.AcmeCa
    pebble: subprocess.Popen | None = None
    dns: subprocess.Popen | None = None

    @property
    def acme(self) -> tls.Acme:
        """What the inventory would say: ``acme_directory`` and ``acme_ca_cert``."""
        return tls.Acme(self.ca.directory_url, Path(self.ca.listener_ca).read_text())

    def listener_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca.listener_ca)

    def start_pebble(self) -> None:
        # No authorization reuse: each test's order is validated afresh (pebble reuses a valid
        # authorization half the time by default, which would hide a broken challenge).
        env = {**os.environ, **acme.PEBBLE_ENVIRONMENT, "PEBBLE_AUTHZREUSE": "0"}
        log = open(Path(self.ca.directory, "pebble.log"), "a")  # noqa: SIM115
        self.pebble = subprocess.Popen(acme.pebble_command(self.ca), env=env, stdout=log,
                                       stderr=subprocess.STDOUT)  # fmt: skip
        wait_for_port(self.ca.acme_port, self.pebble, "pebble")
        wait_for_port(self.ca.management_port, self.pebble, "pebble's management")

    def stop_pebble(self) -> None:
        if self.pebble:
            stop(self.pebble)

    def root(self) -> str:
        """Pebble's issuing root, from its management endpoint (new on every start)."""
        # https:// URLs this fixture builds, never input.
        url, context = self.ca.roots_url, self.listener_context()
        with urllib.request.urlopen(url, context=context, timeout=5) as response:  # noqa: S310
            return response.read().decode()

    def dns_request(self, path_and_body: tuple[str, bytes]) -> None:
        path, body = path_and_body
        request = urllib.request.Request(self.ca.dns_management_url + path, data=body)  # noqa: S310
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            assert response.status == 200


@dataclass
class TlsSite:
    """A real Nginx serving the rendered site on loopback, and certbot's directories."""

    root: Path
    settings: HostSettings  # as provisioning renders it (tls_certificate_ready per phase)
    http_port: int
    https_port: int
    ca: LocalCa
    dirs: tls.CertbotDirs
    nginx: subprocess.Popen | None = None
    issue_seconds: float = 0.0

    @property
    def nginx_args(self) -> list[str]:
        conf = Path(self.settings.nginx_dir, "nginx.conf")
        return ["-p", str(self.root), "-c", str(conf), "-e", str(self.root / "log/error.log")]

    def reload_command(self) -> list[str]:
        return ["nginx", *self.nginx_args, "-g", f"pid {self.root}/nginx.pid;", "-s", "reload"]

    def hook(self) -> str:
        """The deploy hook provisioning gives certbot (written with this site's paths)."""
        return tls.deploy_hook_path(self.settings)

    def certonly(self, domain: str = DOMAIN, directory: str | None = None):
        """The command ``fab provision`` runs (tls.certonly_command), pointed at this site."""
        s = replace(self.settings, domain=domain, tls_cert_dir=None)
        account = self.ca.acme if directory is None else replace(self.ca.acme, directory=directory)
        return run_as_root(tls.certonly_command(s, account, self.dirs, self.hook()), check=False)

    def force_renewal(self):
        command = tls.force_renewal_command(self.settings, self.ca.acme, self.dirs)
        return run_as_root(command, check=False)

    def write_site(self, settings: HostSettings) -> None:
        """Render and install every Nginx file, as provisioning does, with loopback ports."""
        for path, file in render_site_files(settings).items():
            target = Path(path)
            if target.is_relative_to(settings.nginx_dir):
                target.parent.mkdir(parents=True, exist_ok=True)
                text = file.content.replace("listen 80", f"listen 127.0.0.1:{self.http_port}")
                target.write_text(text.replace("listen 443", f"listen 127.0.0.1:{self.https_port}"))
        for link, target in nginx_symlinks(settings).items():
            if not Path(link).is_symlink():
                Path(link).symlink_to(target)
        self.settings = settings

    def switch_to_https(self) -> None:
        """What the "nginx site" step does once the certificate exists: render, nginx -t,
        reload."""
        self.write_site(replace(self.settings, tls_certificate_ready=True))
        result = nginx_t(self.root)
        assert result.returncode == 0, result.stderr
        check = run_as_root(tls.check_certificate_command(self.settings), check=False)
        assert check.returncode == 0, check.stderr
        run_as_root(self.reload_command())
        # A reload is asynchronous: wait until the new workers answer on 443.
        wait_for_port(self.https_port, self.nginx, "nginx, on the HTTPS port after the reload")

    def client_context(self) -> ssl.SSLContext:
        """A client trusting pebble's root only (never the machine's inherited bundles)."""
        context = ssl.create_default_context(cadata=self.ca.root())
        return context

    def served_certificate(self) -> dict:
        context = self.client_context()
        raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=5)
        with raw, context.wrap_socket(raw, server_hostname=DOMAIN) as conn:
            return conn.getpeercert()


@pytest.fixture(scope="session")
def tls_tools() -> None:
    missing = [t for t in ("pebble", "pebble-challtestsrv", "certbot", "nginx", "openssl")
               if not shutil.which(t)]  # fmt: skip
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed; bin/setup installs them")
    if os.geteuid() != 0:
        pytest.fail("these tests run as root, as CI does (Nginx switches to www-data)")


@pytest.fixture(scope="session")
def world_readable_dir(tls_tools) -> Iterator[Path]:
    with world_readable_tempdir("dropstack-tls-") as path:
        yield path


@pytest.fixture(scope="session")
def site(world_readable_dir: Path) -> Iterator[TlsSite]:
    root = world_readable_dir
    http_port, https_port = free_port(), free_port()
    ca_dir = root / "ca"
    ca_dir.mkdir()
    ca = acme.AcmeCa(
        str(ca_dir), acme_port=free_port(), management_port=free_port(), dns_port=free_port(),
        dns_management_port=free_port(), http_port=http_port,
    )  # fmt: skip
    (ca_dir / "listener.ext").write_text(acme.listener_extensions(ca))
    for command in acme.listener_certificate_commands(ca):
        run_as_root(command)
    Path(ca.config_path).write_text(acme.pebble_config(ca))
    local_ca = LocalCa(ca)
    site = None
    app = None
    try:
        dns_log = open(ca_dir / "challtestsrv.log", "w")  # noqa: SIM115
        local_ca.dns = subprocess.Popen(acme.challtestsrv_command(ca), stdout=dns_log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        wait_for_port(ca.dns_management_port, local_ca.dns, "pebble-challtestsrv")
        local_ca.start_pebble()
        local_ca.dns_request(acme.a_record_request(DOMAIN, "127.0.0.1"))

        # The host's first pass: the site over HTTP with the ACME webroot (tls_certificate_ready
        # False), exactly as the "tls certificate" step renders it before certbot runs.
        letsencrypt = root / "letsencrypt"
        dirs = tls.CertbotDirs(
            str(letsencrypt), str(root / "certbot-work"), str(root / "certbot-log")
        )
        http_only = HostSettings(
            vpc_cidr=VPC, app_root=str(root / "srv/dropstack"), listen_ipv6=False, domain=DOMAIN,
            tls_certificate_ready=False, config_dir=str(root / "etc-dropstack"),
            # wrk sends the address as its SNI; a host's server_name lists its address too.
            extra_server_names=("127.0.0.1",),
        )  # fmt: skip
        http_only = build_nginx_tree(root, http_only)
        http_only = replace(http_only, tls_cert_dir=f"{letsencrypt}/live/{DOMAIN}")
        Path(http_only.acme_webroot).mkdir(mode=0o755)
        Path(http_only.config_dir).mkdir()
        keep_nginx_temp_files_in(root, Path(http_only.nginx_dir, "nginx.conf"))
        site = TlsSite(root, http_only, http_port, https_port, local_ca, dirs)
        site.write_site(http_only)
        # The "certbot's certificate authority" step: the CA bundle certbot is given, and the
        # deploy hook.
        for file in tls.acme_files(http_only, local_ca.acme):
            if file.path.startswith(http_only.config_dir):
                Path(file.path).write_text(file.content)
                Path(file.path).chmod(int(file.mode, 8))
        assert nginx_t(root).returncode == 0, nginx_t(root).stderr

        app = serve_app(http_only.paths.live_socket)
        site.nginx = subprocess.Popen(
            ["nginx", *site.nginx_args, "-g", f"daemon off; pid {root}/nginx.pid;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_for_port(http_port, site.nginx, "nginx")
        started = time.monotonic()
        result = site.certonly()
        site.issue_seconds = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        site.switch_to_https()
        yield site
    finally:
        # Whatever was started, even when setup failed half-way.
        if site and site.nginx:
            stop(site.nginx)
        if app:
            app.shutdown()
            app.server_close()
        local_ca.stop_pebble()
        if local_ca.dns:
            stop(local_ca.dns)
