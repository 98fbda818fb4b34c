"""The operating system a provisioned host must have: packages, automatic security updates,
persistent logs and a synchronised clock (deploy/provision/desired.py, operations.py)."""

from __future__ import annotations

import pytest

from deploy.provision import desired as ds


def systemd_properties(host, unit: str, *names: str) -> dict[str, str]:
    props = " ".join(f"-p {name}" for name in names)
    out = host.run(f"systemctl show {props} {unit}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def last_setting(text: str, prefix: str, strip: str = "") -> str | None:
    """The value of the last line starting with ``prefix``: the one that wins."""
    values = [
        line[len(prefix) :].strip().strip(strip)
        for line in text.splitlines()
        if line.startswith(prefix)
    ]
    return values[-1] if values else None


@pytest.mark.parametrize("package", ds.packages_for(tls=True))
def test_package_installed(host, settings, package):
    if package not in ds.packages_for(tls=settings.obtains_certificate):
        pytest.skip(f"{package} is only installed on a host that gets its own certificate")
    assert host.package(package).is_installed, (
        f"{package} is not installed; `fab provision` installs {', '.join(ds.BASE_PACKAGES)}"
    )


@pytest.mark.parametrize(
    "key", ["APT::Periodic::Update-Package-Lists", "APT::Periodic::Unattended-Upgrade"]
)
def test_unattended_upgrades_enabled(host, key):
    """apt's merged configuration (every apt.conf.d file, not just ours) runs the daily job."""
    dump = host.run("apt-config dump").stdout
    value = last_setting(dump, f"{key} ", '";') or "(unset)"
    assert value == "1", (
        f"apt-config says {key} is {value}; security updates are not applied daily "
        '(/etc/apt/apt.conf.d/20auto-upgrades must set it to "1")'
    )


@pytest.mark.parametrize("timer", ["apt-daily.timer", "apt-daily-upgrade.timer"])
def test_apt_timer_running(host, timer):
    """The timers are what run unattended-upgrade; the settings do nothing without them."""
    service = host.service(timer)
    assert service.is_enabled and service.is_running, (
        f"{timer} is not enabled and active; unattended security updates never run"
    )


def test_journal_is_persistent(host):
    """Logs must survive a reboot: journald's effective Storage= is persistent and it really
    writes the system journal under /var/log/journal (not the volatile /run/log/journal)."""
    config = host.run("systemd-analyze cat-config systemd/journald.conf").stdout
    effective = last_setting(config, "Storage=") or "auto (default)"
    assert effective == "persistent", (
        f"journald's effective Storage= is {effective}; logs are lost at reboot"
    )
    assert host.file("/var/log/journal").is_directory, "/var/log/journal is missing"
    header = host.run("sudo -n journalctl --system --header --no-pager").stdout
    files = [line.split(":", 1)[1].strip() for line in header.splitlines() if "File path:" in line]
    assert files and all(f.startswith("/var/log/journal/") for f in files), (
        f"journald writes the system journal to {files or 'nothing'}, not /var/log/journal; "
        "restart systemd-journald after changing Storage="
    )


def test_clock_synchronised(host):
    """systemd-timesyncd is enabled; outside a container NTP is on and the clock synchronised.

    In a container (the local droplet is systemd-nspawn) the clock is the machine's own clock:
    systemd-timesyncd is skipped by its ConditionVirtualization=!container and timedated reports
    NTP=no there, so inside a container the test only requires timesyncd to be enabled and to
    be inactive for that reason (ConditionResult=no). On a droplet (`systemd-detect-virt
    --container` says none) it requires `timedatectl show` NTP=yes and NTPSynchronized=yes.
    """
    unit = systemd_properties(
        host, "systemd-timesyncd", "UnitFileState", "ActiveState", "ConditionResult"
    )
    assert unit.get("UnitFileState") == "enabled", (
        f"systemd-timesyncd is {unit.get('UnitFileState')}, not enabled; the clock will drift"
    )
    container = host.run("systemd-detect-virt --container").stdout.strip() or "none"
    if container != "none":
        assert unit.get("ActiveState") == "active" or unit.get("ConditionResult") == "no", (
            f"systemd-timesyncd is {unit.get('ActiveState')} in a {container} container for a "
            "reason other than its container condition; see `systemctl status systemd-timesyncd`"
        )
        return
    ntp = dict(
        line.split("=", 1)
        for line in host.run("timedatectl show -p NTP -p NTPSynchronized").stdout.splitlines()
        if "=" in line
    )
    assert ntp.get("NTP") == "yes", "timedatectl says NTP is off; `timedatectl set-ntp true`"
    assert ntp.get("NTPSynchronized") == "yes", (
        "the clock is not NTP-synchronised; check `timedatectl timesync-status` and that "
        "outbound UDP 123 is allowed"
    )
