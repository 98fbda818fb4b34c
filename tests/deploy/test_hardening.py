"""The host baseline (docs/security.md "Host baseline"): rendered files, the steps' plans from
facts, and a real sshd on loopback with the rendered settings, audited by ssh-audit's policy."""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from deploy import host_model
from deploy.inventory import Inventory, parse_inventory
from deploy.provision import baseline
from deploy.provision import desired as ds
from deploy.provision import facts as f
from deploy.provision import operations as ops
from deploy.provision.files import RemoteFile
from deploy.shell import Raw, join
from tests.deploy.test_secrets_plan import INVENTORY

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_AUDIT = Path(sys.executable).parent / "ssh-audit"
BOUND_SECONDS = 60


def target(keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDropstackTestKeyOnly deploy",), **kw):
    inv = Inventory("test", {"ssh_user": "deploy", "ssh_public_keys": list(keys)})
    return ops.Target("web-1", settings=None, inv=inv, **kw)


def target_with_settings() -> ops.Target:
    """A target with the host model, for what needs paths (the one probe's file list)."""
    inv = parse_inventory(INVENTORY, "test")
    return ops.Target("web-1", host_model.for_host({}, inv, inv.web_hosts[0]), inv)


def rsa_public_key(bits: int) -> str:
    def string(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    n = (1 << (bits - 1)) | 1
    blob = string(b"ssh-rsa") + string(b"\x01\x00\x01") + string(b"\x00" + n.to_bytes(bits // 8))
    return f"ssh-rsa {base64.b64encode(blob).decode()} test"


# --- sshd ---


def test_sshd_settings_name_only_the_wanted_host_keys_and_policy_lists():
    text = ds.sshd_settings("deploy")
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("HostKey ")] == [
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "HostKey /etc/ssh/ssh_host_rsa_key",
    ]
    assert "ecdsa" not in text and "AllowUsers deploy" in lines
    for keyword in ("KexAlgorithms", "Ciphers", "MACs", "HostKeyAlgorithms"):
        assert f"{keyword} {','.join(ds.SSHD_ALGORITHMS[keyword])}" in lines
    assert f"ModuliFile {ds.MODULI_FILE}" in lines and f"Banner {ds.BANNER_PATH}" in lines


def test_sshd_file_is_closed_to_other_users():
    assert ds.os_files("deploy")["sshd"].mode == "0600"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("ssh-ed25519 AAAA x", None),
        (rsa_public_key(4096), None),
        (rsa_public_key(2048), "2048-bit RSA key is below RequiredRSASize 3072"),
        ("ecdsa-sha2-nistp256 AAAA x", "ecdsa-sha2-nistp256 key would be refused"),
        ("garbage", "is not an OpenSSH public key line"),
    ],
)
def test_user_key_problem(key, problem):
    found = ds.user_key_problem(key)
    assert (found is None) if problem is None else (problem in found and "\n" not in found)


def test_sshd_step_refuses_to_lock_out_the_connecting_key():
    ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNh"
    t = target(keys=(f"{ecdsa} op", "ssh-ed25519 AAAAC3 other"), connecting_key=ecdsa)
    with pytest.raises(ops.Unsupported, match="would be locked out"):
        baseline.sshd_user_keys(t)
    baseline.sshd_user_keys(target(keys=(f"{ecdsa} op", "ssh-ed25519 AAAAC3 other")))


@pytest.mark.parametrize(
    ("keys", "removed", "made"),
    [
        (
            {"ssh_host_ecdsa_key": ("ecdsa", 256), "ssh_host_ed25519_key": ("ed25519", 256),
             "ssh_host_rsa_key": ("rsa", 3072)},
            ["/etc/ssh/ssh_host_ecdsa_key"],
            ["rsa"],
        ),
        ({"ssh_host_ed25519_key": ("ed25519", 256), "ssh_host_rsa_key": ("rsa", 4096)}, [], []),
        ({}, [], ["ed25519", "rsa"]),
    ],
)  # fmt: skip
def test_host_key_plan(keys, removed, made):
    commands, detail = ds.host_key_commands(keys)
    rm = [c[2] for c in commands if c[:2] == ["rm", "-f"] and c[2].endswith("_key")]
    generated = [c[c.index("-t") + 1] for c in commands if "ssh-keygen" in c]
    assert rm == removed and generated == made and len(detail) == len(removed) + len(made)


def test_host_key_plan_never_replaces_the_pinned_ed25519_key():
    commands, _ = ds.host_key_commands(
        {"ssh_host_ed25519_key": ("ed25519", 256), "ssh_host_rsa_key": ("rsa", 4096)}
    )
    assert commands == []


def test_parse_host_keys_reads_ssh_keygen_lines():
    text = "ssh_host_rsa_key 3072 (RSA)\nssh_host_ed25519_key 256 (ED25519)\nnoise\n"
    assert f.parse_host_keys(text) == {
        "ssh_host_rsa_key": ("rsa", 3072),
        "ssh_host_ed25519_key": ("ed25519", 256),
    }


def test_host_keys_probe_and_generation_on_this_machine(tmp_path):
    """The probe script and the generation command, run for real in a temporary directory."""
    for kind, (name, _) in {"ecdsa": ("ssh_host_ecdsa_key", 256), **ds.HOST_KEYS}.items():
        size = ["-b", "3072"] if kind == "rsa" else []
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *size, "-N", "", "-f",
                        str(tmp_path / name)], check=True)  # fmt: skip
    fact = f.ssh_host_keys(str(tmp_path))
    keys = fact.parse(subprocess.run(fact.command, capture_output=True, text=True).stdout)
    assert keys["ssh_host_rsa_key"] == ("rsa", 3072) and "ssh_host_ecdsa_key" in keys
    commands, _ = ds.host_key_commands(keys)
    for command in commands:
        moved = [str(t).replace("/etc/ssh", str(tmp_path)) for t in command]
        subprocess.run(["sh", "-c", join([Raw(t) if t == "&&" else t for t in moved])], check=True)
    # No passphrase: sshd must load it unattended.
    subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(tmp_path / "ssh_host_rsa_key")],
                   check=True, capture_output=True)  # fmt: skip
    after = fact.parse(subprocess.run(fact.command, capture_output=True, text=True).stdout)
    assert after == {"ssh_host_ed25519_key": ("ed25519", 256), "ssh_host_rsa_key": ("rsa", 4096)}


def test_moduli_filter_keeps_only_strong_groups(tmp_path):
    source = "#comment\n2023 2 6 100 2047 5 AAA\n2023 2 6 100 3071 2 BBB\n2023 2 6 100 8191 2 CCC\n"
    (tmp_path / "moduli").write_text(source)
    command = ds.moduli_command()
    script, args = command[2], [str(tmp_path / "moduli"), str(tmp_path / "out")]
    subprocess.run(["sh", "-c", script, "x", str(ds.MODULI_MIN_BITS), *args], check=True)
    assert (tmp_path / "out").read_text() == "#comment\n2023 2 6 100 3071 2 BBB\n" + (
        "2023 2 6 100 8191 2 CCC\n"
    )
    state = f.moduli_state(str(tmp_path / "out"), ds.MODULI_MIN_BITS)
    out = subprocess.run(state.command, capture_output=True, text=True).stdout
    assert state.parse(out) == (2, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="sshd -D needs root for privilege separation")
def test_rendered_sshd_passes_ssh_audit_policy_on_loopback(tmp_path):
    """A real sshd with exactly the rendered settings (paths moved into tmp_path), its host
    keys made as provisioning makes them and its moduli filtered as provisioning filters them;
    ssh-audit's built-in policy must pass (exit 0). `sshd -t` validates the file first."""
    for kind, (name, bits) in ds.HOST_KEYS.items():
        command = ds.new_host_key_command(kind, bits, str(tmp_path / name))
        subprocess.run(["sh", "-c", join(command)], check=True)
    script = ds.moduli_command()[2]
    subprocess.run(["sh", "-c", script, "x", str(ds.MODULI_MIN_BITS), ds.MODULI_SOURCE,
                    str(tmp_path / "moduli")], check=True)  # fmt: skip
    (tmp_path / "banner").write_text(ds.LOGIN_BANNER)
    config = ds.sshd_settings(
        "deploy", key_dir=str(tmp_path), moduli=str(tmp_path / "moduli"),
        banner=str(tmp_path / "banner"),
    )  # fmt: skip
    config += f"PidFile {tmp_path}/sshd.pid\nListenAddress 127.0.0.1\n"
    (tmp_path / "sshd_config").write_text(config)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    check = subprocess.run([SSHD, "-t", "-f", str(tmp_path / "sshd_config")],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, f"sshd -t rejects the rendered settings: {check.stderr}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(tmp_path / "sshd_config"), "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        audit = subprocess.run(
            [str(SSH_AUDIT), "-P", ds.SSH_AUDIT_POLICY, "-p", str(port), "127.0.0.1"],
            capture_output=True, text=True, timeout=BOUND_SECONDS,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert audit.returncode == 0, f"ssh-audit policy failed:\n{audit.stdout}"
    assert "Passed" in audit.stdout


def test_the_policy_name_is_built_into_the_pinned_ssh_audit():
    listed = subprocess.run([str(SSH_AUDIT), "-L"], capture_output=True, text=True).stdout
    assert f'"{ds.SSH_AUDIT_POLICY}"' in listed


# --- kernel parameters ---


def test_sysctl_files_render_every_key():
    network = ds.sysctl_file(ds.SYSCTL_NETWORK, "x")
    assert "net.ipv4.conf.all.accept_redirects = 0\n" in network
    assert "net.ipv4.tcp_syncookies = 1\n" in network and "kernel." not in network
    kernel = ds.sysctl_file(ds.SYSCTL_KERNEL, "x")
    assert "kernel.kptr_restrict = 2\n" in kernel and "fs.suid_dumpable = 0\n" in kernel
    assert "kernel.modules_disabled" not in kernel  # would stop nftables loading its modules


def test_parse_sysctl_and_differences():
    running = f.parse_sysctl("net.ipv4.tcp_syncookies = 1\nnet.ipv4.conf.all.rp_filter = 0\n")
    wanted = {"net.ipv4.tcp_syncookies": "1", "net.ipv4.conf.all.rp_filter": "1", "x.y": "0"}
    assert ds.sysctl_differences(wanted, running) == ["net.ipv4.conf.all.rp_filter", "x.y"]


def _states(files: list[RemoteFile]) -> dict[str, str]:
    return {file.path: file.state for file in files}


def test_kernel_parameters_in_a_container_install_the_files_and_load_nothing():
    # /proc/sys is read-only in the local droplet's containers: loading would fail every key.
    facts = f.HostFacts(container="systemd-nspawn")
    (change,) = baseline.kernel_parameters(target(), facts)
    assert not [c for c in change.then if "sysctl" in " ".join(c)]
    assert {file.path for file in change.files} == {ds.SYSCTL_NETWORK_PATH, ds.SYSCTL_KERNEL_PATH}
    assert baseline.kernel_parameters(target(), f.HostFacts(
        container="systemd-nspawn", files=_states(baseline.sysctl_files()))) == []  # fmt: skip


def test_kernel_parameters_repair_running_values_when_files_match():
    files = baseline.sysctl_files()
    right = {**ds.SYSCTL_NETWORK, **ds.SYSCTL_KERNEL}
    facts = f.HostFacts(files=_states(files), sysctl=right)
    assert baseline.kernel_parameters(target(), facts) == []
    drifted = f.HostFacts(files=_states(files), sysctl={**right, "kernel.kptr_restrict": "0"})
    (change,) = baseline.kernel_parameters(target(), drifted)
    assert change.files == () and "~ kernel.kptr_restrict: 0 -> 2" in change.detail


# --- files ---


def test_login_banner_carries_the_words_auditors_look_for():
    words = ("authorised", "monitored", "logged", "law", "consent")
    assert all(word in ds.LOGIN_BANNER.lower() for word in words)


def test_core_dumps_are_off_everywhere():
    limits, coredump = baseline.core_dump_files()
    assert "* hard core 0" in limits.content and "Storage=none" in coredump.content


LOGIN_DEFS = """\
# comment PASS_MAX_DAYS 1
PASS_MAX_DAYS\t99999
PASS_MIN_DAYS\t0
UMASK\t\t022
UMASK 077
ENCRYPT_METHOD SHA512
"""


def test_edit_login_defs_sets_keys_in_place_and_keeps_the_rest():
    edited = ds.edit_login_defs(LOGIN_DEFS)
    lines = edited.splitlines()
    assert lines[0] == "# comment PASS_MAX_DAYS 1"
    assert "PASS_MAX_DAYS\t365" in lines and "UMASK\t027" in lines
    assert sum(line.startswith("UMASK") for line in lines) == 1
    assert "SHA_CRYPT_MIN_ROUNDS\t65536" in lines  # absent before: appended
    assert ds.edit_login_defs(edited) == edited  # idempotent


def test_password_policy_diffs_login_defs_against_the_hosts_copy():
    host_copy = RemoteFile(ds.LOGIN_DEFS_PATH, LOGIN_DEFS)
    facts = f.HostFacts(login_defs=LOGIN_DEFS, files=_states([host_copy]))
    (change, *_) = baseline.password_policy(target(), facts)
    assert any(line == "+PASS_MAX_DAYS\t365" for line in change.detail)
    assert any(line == "-PASS_MAX_DAYS\t99999" for line in change.detail)


def test_password_ages_only_for_accounts_with_a_password():
    files = baseline.password_files(LOGIN_DEFS)
    shadow = f.parse_shadow_ages("root:n:19000:0:99999:7:\nalice:y:19000:0:99999:7:\n")
    facts = f.HostFacts(login_defs=LOGIN_DEFS, files=_states(files), passwords=shadow)
    (change,) = baseline.password_policy(target(), facts)
    assert [c[-1] for c in change.commands] == ["chage -M 365 -m 1 -W 14 alice"]


def test_audit_rules_watch_privilege_use():
    rules = ds.AUDIT_RULES
    for fragment in ("-w /usr/bin/sudo -p x", "-w /usr/bin/su -p x", "-w /etc/sudoers -p wa",
                     "-w /etc/shadow -p wa", "-w /usr/bin/passwd -p x"):  # fmt: skip
        assert fragment in rules


def test_audit_rules_are_not_loaded_in_a_container():
    (change,) = baseline.audit_rules(target(), f.HostFacts(container="systemd-nspawn"))
    assert change.then == ()
    on_droplet = baseline.audit_rules(target(), f.HostFacts(container="none"))
    assert any("augenrules" in " ".join(c) for c in on_droplet[0].then)
    assert any("auditd" in ch.summary for ch in on_droplet[1:])


def test_modprobe_file_disables_unused_protocols_as_lynis_reads_it():
    lines = ds.modprobe_file().splitlines()
    for module in ("dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core"):
        assert f"install {module} /bin/true" in lines


@pytest.mark.parametrize(
    ("fstab", "expected"),
    [
        ("", ds.FSTAB_SHM + "\n"),
        ("UUID=x / ext4 defaults 0 1\n", "UUID=x / ext4 defaults 0 1\n" + ds.FSTAB_SHM + "\n"),
        ("tmpfs /dev/shm tmpfs defaults 0 0\n", ds.FSTAB_SHM + "\n"),
        (ds.FSTAB_SHM + "\n", ds.FSTAB_SHM + "\n"),
    ],
)
def test_edit_fstab_shm(fstab, expected):
    assert ds.edit_fstab_shm(fstab) == expected
    assert all(option in ds.FSTAB_SHM for option in ds.SHM_OPTIONS)


def test_temp_mounts_only_on_a_droplet():
    assert baseline.temp_mounts(target(), f.HostFacts(container="systemd-nspawn")) == []
    changes = baseline.temp_mounts(target(), f.HostFacts(container="none", fstab=""))
    assert "nosuid,nodev" in changes[0].files[0].content
    assert ops.root(["systemctl", "enable", "tmp.mount"]) in changes[0].then
    assert changes[1].files[0].path == "/etc/fstab"


def test_file_modes_fix_only_present_files():
    modes = {"/etc/crontab": "644 root root", "/etc/cron.d": "absent",
             "/etc/ssh/sshd_config": "600 root root"}  # fmt: skip
    (change,) = baseline.file_modes(target(), f.HostFacts(modes=modes))
    assert change.commands == (ops.root(["chmod", "600", "/etc/crontab"]),)


def test_security_updates_parsed_from_the_security_archive_only():
    text = (
        "Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12.15/oldstable [amd64])\n"
        "Inst zlib1g [1:1.2.13] (1:1.2.13+deb12u1 Debian:12.15/oldstable, "
        "Debian-Security:12/oldstable-security [amd64]) []\n"
        "Conf zlib1g (1:1.2.13+deb12u1 Debian-Security:12/oldstable-security [amd64])\n"
    )
    assert f.parse_security_updates(text) == ("zlib1g",)
    (change,) = baseline.security_updates(target(), f.HostFacts(security_updates=("zlib1g",)))
    assert "--only-upgrade" in change.commands[0][-1] and "zlib1g" in change.commands[0][-1]


def test_openssh_upgraded_when_it_lacks_a_policy_kex():
    have = frozenset(ds.SSHD_ALGORITHMS["KexAlgorithms"])
    assert baseline.openssh_for_policy(target(), f.HostFacts(ssh_kex=have)) == []
    older = have - {"sntrup761x25519-sha512"}
    (change,) = baseline.openssh_for_policy(target(), f.HostFacts(ssh_kex=older))
    assert "sntrup761x25519-sha512" in change.detail[0]


def test_hardening_packages_are_installed():
    assert {"auditd", "libpam-pwquality", "debsums", "apt-show-versions"} <= set(
        ds.packages_for(tls=False)
    )


def test_baseline_steps_run_before_sshd_reads_their_files():
    names = [name for name, _ in ops.STEPS]
    for step in ("login banner", "ssh host keys", "ssh moduli"):
        assert names.index(step) < names.index("sshd hardening")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("hardening_index=81\nlynis_tests_done=250\nwarning[]=X-1|msg|-|-|\n",
      {"hardening_index": 81, "tests": 250, "warnings": [{"test": "X-1", "message": "msg"}],
       "suggestions": []})],
)  # fmt: skip
def test_parse_lynis_report(text, expected):
    assert f.parse_lynis_report(text) == expected


# --- lynis's remaining findings (docs/security.md "lynis findings that remain") ---


def test_needrestart_only_lists_and_is_configured_before_install():
    assert "$nrconf{restart} = 'l';" in ds.NEEDRESTART_CONF.splitlines()
    assert ds.NEEDRESTART_CONF_PATH.startswith("/etc/needrestart/conf.d/")
    assert ds.NEEDRESTART_CONF_PATH.endswith(".conf")  # needrestart.conf reads conf.d/*.conf
    names = [name for name, _ in ops.STEPS]
    assert names.index("needrestart list-only, acct condition") < names.index("apt packages")
    (change,) = baseline.before_packages(target(), f.HostFacts())
    assert {file.path for file in change.files} == {ds.NEEDRESTART_CONF_PATH, ds.ACCT_DROPIN_PATH}
    assert ops.root(["systemctl", "daemon-reload"]) in change.then
    files = baseline.preinstall_files()
    assert baseline.before_packages(target(), f.HostFacts(files=_states(files))) == []


def test_process_accounting_is_skipped_in_a_container_and_runs_elsewhere():
    assert "ConditionVirtualization=!container" in ds.ACCT_DROPIN.splitlines()
    skipped = {"acct.service": {"UnitFileState": "enabled", "ActiveState": "inactive",
                                "ConditionResult": "no"}}  # fmt: skip
    assert baseline.process_accounting(target(), f.HostFacts(units=skipped)) == []
    stopped = {"acct.service": {"UnitFileState": "disabled", "ActiveState": "inactive"}}
    (change,) = baseline.process_accounting(target(), f.HostFacts(units=stopped))
    assert change.commands == (ops.root(["systemctl", "enable", "--now", "acct"]),)


def test_compilers_are_restricted_to_root_by_a_statoverride():
    asm = "/usr/bin/x86_64-linux-gnu-as"
    (change,) = baseline.compilers_root_only(
        target(), f.HostFacts(compilers={asm: "755 root root"})
    )
    command = change.commands[0][-1]
    assert "dpkg-statoverride --update --add root root" in command and asm in command
    assert change.detail == (f"~ {asm}: 755 -> 750 (dpkg-statoverride)",)
    restricted = f.HostFacts(compilers={asm: "750 root root"})
    assert baseline.compilers_root_only(target(), restricted) == []
    assert baseline.compilers_root_only(target(), f.HostFacts()) == []  # no compiler at all


def test_compilers_probe_resolves_links_on_this_machine(tmp_path):
    real = tmp_path / "x86_64-linux-gnu-as"
    real.write_text("")
    real.chmod(0o755)
    (tmp_path / "as").symlink_to(real.name)
    fact = f.compilers([str(tmp_path / "as"), str(tmp_path / "cc")])
    out = subprocess.run(fact.command, capture_output=True, text=True, check=False).stdout
    mode_owner = fact.parse(out)[str(real)].split()
    assert list(fact.parse(out)) == [str(real)] and mode_owner[0] == "755"


SYSSTAT_DEFAULT = '#\n# Default settings for /etc/init.d/sysstat\n#\nENABLED="false"\n\n'


def test_edit_sysstat_default_sets_enabled_only():
    edited = ds.edit_sysstat_default(SYSSTAT_DEFAULT)
    assert edited == SYSSTAT_DEFAULT.replace('"false"', '"true"')
    assert ds.edit_sysstat_default(edited) == edited
    assert ds.edit_sysstat_default("# nothing\n") == '# nothing\nENABLED="true"\n'


def test_sysstat_is_enabled_in_the_hosts_copy_and_its_timers_run():
    assert baseline.sysstat_collecting(target(), f.HostFacts()) == []  # not installed yet
    host_copy = RemoteFile(ds.SYSSTAT_DEFAULT_PATH, SYSSTAT_DEFAULT)
    facts = f.HostFacts(sysstat_default=SYSSTAT_DEFAULT, files=_states([host_copy]))
    changes = baseline.sysstat_collecting(target(), facts)
    assert '+ENABLED="true"' in changes[0].detail and '-ENABLED="false"' in changes[0].detail
    assert [c.commands[0][-1].split()[-1] for c in changes[1:]] == list(ds.SYSSTAT_UNITS)
    running = {u: {"UnitFileState": "enabled", "ActiveState": "active"} for u in ds.SYSSTAT_UNITS}
    done = baseline.sysstat_file(SYSSTAT_DEFAULT)
    facts = f.HostFacts(sysstat_default=done.content, files=_states([done]), units=running)
    assert baseline.sysstat_collecting(target(), facts) == []


def test_chkrootkit_reports_to_the_journal_not_by_mail():
    lines = ds.CHKROOTKIT_DROPIN.splitlines()
    # An empty ExecStart= first: a oneshot's ExecStart lines add up otherwise.
    assert lines.index("ExecStart=") < lines.index("ExecStart=/usr/sbin/chkrootkit -q")
    (change, timer) = baseline.rootkit_scan(target(), f.HostFacts())
    assert change.files[0].path == ds.CHKROOTKIT_DROPIN_PATH
    assert timer.commands == (ops.root(["systemctl", "enable", "--now", "chkrootkit.timer"]),)


def lynis_aide_checks(conf: str) -> tuple[str, bool]:
    """What lynis 3.0.8 reads from aide.conf (FINT-4316, FINT-4402): the database it checks
    for, and whether SHA-256 or SHA-512 makes the checksums."""
    database = next(line for line in conf.splitlines() if line.startswith("database_in="))
    strong = any(
        re.search(r"= .*(sha256|sha512)", line)
        for line in conf.splitlines()
        if not line.startswith("#")
    )
    return database.split(":", 1)[1], strong


def test_aide_watches_the_system_and_not_the_releases():
    conf = ds.AIDE_CONF
    assert lynis_aide_checks(conf) == (ds.AIDE_DB, True)
    selections = [line.split()[0] for line in conf.splitlines() if line.startswith("/")]
    for path in ("/etc", "/usr/bin", "/usr/sbin", "/usr/lib", "/boot", r"/root/\.ssh"):
        assert path in selections
    assert not [s for s in selections if s.startswith(("/srv", "/var", "/tmp", "/proc"))]
    assert "Checksums = sha512" in conf.splitlines()  # one hash: the check stays cheap
    assert baseline.aide_config_file().mode == "0600"  # hashes of /etc/shadow's neighbours


def test_aide_database_is_made_after_a_config_check():
    (config, units) = baseline.file_integrity(target(), f.HostFacts())
    assert config.validate == ops.root(["aide", "--config-check", "--config", ds.AIDE_CONF_PATH])
    assert config.then == (ops.root(ds.aide_init_command()),)
    assert units.validate_name == "systemd-analyze verify"
    assert ops.root(["systemctl", "enable", "--now", "dropstack-aide-check.timer"]) in units.then
    files = [baseline.aide_config_file(), *baseline.aide_unit_files()]
    timer = {"dropstack-aide-check.timer": {"UnitFileState": "enabled", "ActiveState": "active"}}
    no_db = f.HostFacts(files=_states(files), units=timer)
    (init,) = baseline.file_integrity(target(), no_db)
    assert init.commands == (ops.root(ds.aide_init_command()),)
    done = replace(no_db, baseline_present=frozenset({ds.AIDE_DB}))
    assert baseline.file_integrity(target(), done) == []


def test_aide_init_replaces_the_database_whole(tmp_path):
    """The init command on this machine, with a stand-in aide that writes the new database."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "aide"
    fake.write_text(f"#!/bin/sh\necho new > {tmp_path}/db/aide.db.new\n")
    fake.chmod(0o755)
    command = ds.aide_init_command()
    command[-2] = str(tmp_path / "db/aide.db")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(command, check=True, env=env)
    db = tmp_path / "db/aide.db"
    assert db.read_text() == "new\n" and not (tmp_path / "db/aide.db.new").exists()
    assert f"{db.stat().st_mode & 0o777:o}" == "600"
    assert f"{db.parent.stat().st_mode & 0o777:o}" == "700"


def aide_unit_root(root: Path) -> list[str]:
    """A root for `systemd-analyze --root=`: the distribution's units, ours, a stand-in aide."""
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for file in baseline.aide_unit_files():
        path = root / file.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.content)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/bin/aide").write_text("#!/bin/sh\nexit 0\n")
    (root / "usr/bin/aide").chmod(0o755)
    return [file.path.rsplit("/", 1)[1] for file in baseline.aide_unit_files()]


def test_aide_check_units_pass_systemd_analyze_verify(tmp_path):
    names = aide_unit_root(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={tmp_path}", *names],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_aide_check_is_sandboxed(tmp_path):
    """It reads everything as root, so what it may do besides reading is what is bounded."""
    name = aide_unit_root(tmp_path)[0]
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={tmp_path}", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    match = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 3.0


def test_idle_shell_timeout_as_lynis_reads_it():
    lines = ds.TMOUT_PROFILE.splitlines()
    assert f"TMOUT={ds.TMOUT_SECONDS}" in lines and "readonly TMOUT" in lines
    assert ds.TMOUT_PATH.startswith("/etc/profile.d/") and ds.TMOUT_PATH.endswith(".sh")
    result = subprocess.run(
        ["bash", "-c", '. "$1"; TMOUT=0', "bash", "/dev/stdin"],
        input=ds.TMOUT_PROFILE, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "readonly" in result.stderr  # a login cannot lift it


@pytest.mark.parametrize(
    ("have", "changed"),
    [("755 deploy deploy", True), ("750 deploy deploy", False), ("700 deploy deploy", False),
     ("770 deploy deploy", True), ("absent", False)],
)  # fmt: skip
def test_home_directory_modes(have, changed):
    changes = baseline.home_directories(target(), f.HostFacts(modes={"/home/deploy": have}))
    assert bool(changes) is changed
    if changed:
        assert changes[0].commands == (ops.root(["chmod", "g-w,o-rwx", "/home/deploy"]),)


def test_fail2ban_moves_its_settings_to_jail_local():
    old = ds.RETIRED_FAIL2BAN_JAILS[0]
    unit = {"fail2ban.service": {"UnitFileState": "enabled", "ActiveState": "active"}}
    (change,) = ops.fail2ban(target(), f.HostFacts(present=frozenset({old}), units=unit))
    assert change.commands == (ops.root(["rm", "-f", old]),)
    assert change.files[0].path == "/etc/fail2ban/jail.local"
    assert change.then == (ops.root(["systemctl", "reload-or-restart", "fail2ban"]),)
    jail = change.files[0]
    moved = f.HostFacts(present=frozenset({old}), units=unit, files=_states([jail]))
    (only_rm,) = ops.fail2ban(target(), moved)
    assert only_rm.files == () and only_rm.commands == (ops.root(["rm", "-f", old]),)
    assert ops.fail2ban(target(), replace(moved, present=frozenset())) == []


def test_every_new_baseline_file_is_probed():
    paths = set(ops.wanted_paths(target_with_settings()))
    for path in (ds.NEEDRESTART_CONF_PATH, ds.ACCT_DROPIN_PATH, ds.CHKROOTKIT_DROPIN_PATH,
                 ds.AIDE_CONF_PATH, ds.TMOUT_PATH, ds.SYSSTAT_DEFAULT_PATH,
                 "/etc/systemd/system/dropstack-aide-check.timer"):  # fmt: skip
        assert path in paths


def test_aide_runs_after_every_step_that_writes_the_hosts_configuration():
    names = [name for name, _ in ops.STEPS]
    aide = names.index("file integrity (AIDE)")
    assert names[aide + 1 :] == ["backup job and timer"]


LYNIS_LOG = """\
2026-12-05 16:55:01 Performing test ID ACCT-9622 (Check for available Linux accounting information)
2026-12-05 16:55:01 Hardening: assigned partial number of hardening points (2 of 3). Currently having 150 points (out of 190)
2026-12-05 16:55:02 Performing test ID ACCT-9628 (Check for auditd)
2026-12-05 16:55:02 Hardening: assigned maximum number of hardening points for this item (4). Currently having 154 points (out of 194)
"""  # noqa: E501


def test_parse_lynis_points_names_what_was_not_full():
    assert f.parse_lynis_points(LYNIS_LOG) == {
        "points": 154, "total": 194, "partial": [{"test": "ACCT-9622", "points": 2, "max": 3}]
    }  # fmt: skip
