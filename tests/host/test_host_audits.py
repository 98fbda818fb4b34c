"""Independent auditors of a provisioned host: ssh-audit's hardened policy from this machine,
lynis on the host, and no pending security update (docs/security.md "Host baseline").

lynis is installed on the host for the audit and removed afterwards (only when this test
installed it): it is an auditor, not part of what a web host runs, and leaving it installed
would change the very host it measures. Its hardening index and findings go to
reports/lynis-<host>.json for bench/results and the docs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from deploy.provision import desired as ds
from deploy.provision import facts as f

REPO = Path(__file__).resolve().parents[2]
REPORTS = REPO / "reports"
SSH_AUDIT = Path(sys.executable).parent / "ssh-audit"
# The target is 80. Measured on the local droplet's host, two runs in a row: 81 (253 of
# 311 points, 252 tests). This floor catches a regression; docs/security.md lists the points
# that remain and why each stays.
LYNIS_MIN_INDEX = 81
LYNIS_TIMEOUT = 900


def test_ssh_audit_hardened_policy(web_host):
    result = subprocess.run(
        [str(SSH_AUDIT), "-P", ds.SSH_AUDIT_POLICY, "-p", "22", web_host.public_ip],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{web_host.name}: ssh-audit's {ds.SSH_AUDIT_POLICY!r} fails:\n{result.stdout[-3000:]}"
    )


def test_lynis_hardening_index(host, web_host):
    installed_here = not host.package("lynis").is_installed
    if installed_here:
        install = host.run("sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                           "--no-install-recommends lynis")  # fmt: skip
        assert install.rc == 0, f"cannot install lynis: {install.stderr[-500:]}"
    try:
        run = host.run(
            f"sudo -n timeout {LYNIS_TIMEOUT} lynis audit system --quick --no-colors "
            "--report-file /var/log/lynis-report.dat >/dev/null 2>&1; "
            "sudo -n cat /var/log/lynis-report.dat"
        )
        # The log holds each test's points: the partial ones are what stands below 100.
        log = host.run("sudo -n cat /var/log/lynis.log").stdout
    finally:
        if installed_here:
            host.run("sudo -n env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q lynis")
    report = f.parse_lynis_report(run.stdout)
    assert "hardening_index" in report, f"lynis wrote no report: {run.stderr[-500:]}"
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / f"lynis-{web_host.name}.json").write_text(
        json.dumps({"host": web_host.name, **report, **f.parse_lynis_points(log)}, indent=2) + "\n"
    )
    assert report["hardening_index"] >= LYNIS_MIN_INDEX, (
        f"{web_host.name}: lynis hardening index {report['hardening_index']} < "
        f"{LYNIS_MIN_INDEX}; findings in reports/lynis-{web_host.name}.json"
    )


def test_no_security_update_pending(host):
    """With the lists the host has (refreshed by provisioning and apt's daily timer, whose
    age is bounded here so stale lists cannot hide an update)."""
    age = host.run(
        "echo $(( $(date +%s) - $(stat -c %Y /var/lib/apt/lists/*InRelease | sort -n | tail -1) ))"
    ).stdout.strip()
    assert age.isdigit() and int(age) < 2 * 86400, (
        f"apt lists are {age}s old: apt-daily is not running"
    )
    pending = f.parse_security_updates(host.run("apt-get -s -o Debug::NoLocking=1 upgrade").stdout)
    assert not pending, f"security updates pending: {', '.join(pending)} (`fab provision`)"
