"""The host baseline (docs/security.md "Host baseline"): rendered files, the steps' plans from
facts, and a real sshd on loopback with the rendered settings, audited by ssh-audit's policy."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.inventory import Inventory
from deploy.provision import baseline
from deploy.provision import desired as ds
from deploy.provision import facts as f
from deploy.provision import operations as ops
from deploy.provision.files import RemoteFile
from deploy.shell import Raw, join

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_AUDIT = Path(sys.executable).parent / "ssh-audit"
BOUND_SECONDS = 60


def target(keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDropstackTestKeyOnly deploy",), **kw):
    inv = Inventory("test", {"ssh_user": "deploy", "ssh_public_keys": list(keys)})
    return ops.Target("web-1", settings=None, inv=inv, **kw)


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
