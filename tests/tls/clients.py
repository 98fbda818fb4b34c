"""TLS clients both TLS suites use: one handshake with ``openssl s_client``, every TLS 1.2
cipher tried one by one, and Mozilla's intermediate lists they are held against.

tests/tls runs them against Nginx on loopback, tests/host against a host of the local stack.
"""

from __future__ import annotations

import socket
import ssl
import subprocess

# Mozilla's intermediate configuration, guideline 5.7 (nginx/tls.conf.j2 serves it).
INTERMEDIATE_TLS12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
}  # fmt: skip
INTERMEDIATE_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                      "TLS_CHACHA20_POLY1305_SHA256"}  # fmt: skip
# Every TLS 1.3 suite OpenSSL 3.0 can offer: the intermediate three and the two CCM ones.
TLS13_SUITES = [*sorted(INTERMEDIATE_TLS13), "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"]


def s_client(
    address: str, port: int, name: str, cafile: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """One handshake (SNI: ``name``), verifying the chain and the name against ``cafile``."""
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"{address}:{port}", "-servername", name,
         "-verify_hostname", name, "-CAfile", cafile, "-verify_return_error", *options],
        input="", capture_output=True, text=True, timeout=15,
    )  # fmt: skip


def handshake_ok(result: subprocess.CompletedProcess[str]) -> bool:
    # s_client prints "Verify return code: 0" even when no certificate came; a handshake that
    # happened names its cipher.
    out = result.stdout
    return (
        result.returncode == 0
        and "Cipher is " in out
        and "Cipher is (NONE)" not in out
        and "Verify return code: 0 (ok)" in out
    )


def accepted_tls12_ciphers(address: str, port: int, name: str, cafile: str) -> tuple[int, set]:
    """Every TLS 1.2 cipher this OpenSSL knows, one handshake each: how many were tried, and
    the ones the server accepted."""
    names = subprocess.run(
        ["openssl", "ciphers", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().split(":")  # fmt: skip
    tried, accepted = 0, set()
    for cipher in (n for n in names if not n.startswith("TLS_")):  # TLS 1.3 suites: TLS13_SUITES
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=cafile)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.set_ciphers(f"{cipher}:@SECLEVEL=0")
        except ssl.SSLError:
            continue  # this Python's OpenSSL cannot offer it at all
        tried += 1
        try:
            raw = socket.create_connection((address, port), timeout=5)
            with raw, context.wrap_socket(raw, server_hostname=name) as conn:
                accepted.add(conn.cipher()[0])
        except (ssl.SSLError, OSError):
            pass
    return tried, accepted
