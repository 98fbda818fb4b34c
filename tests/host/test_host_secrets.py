"""The app's secrets (SECRET_KEY, the database password) stay in the env file.

The secrets are read on the host, as root, by a script that reports only where a secret was
found (pid and command name, journal unit), never the secret: neither the test output, the
JUnit XML nor any command line ever carries a secret value.
"""

from __future__ import annotations

import inspect
import json
import shlex

import pytest

from deploy.provision.desired import parse_env_file

# Runs on the host under sudo: argv[1] is the env file, argv[2] where to look. The env file is
# read with provisioning's own parser, its source shipped inside the script.
FIND_SECRETS = (
    "import json, os, subprocess, sys, urllib.parse\n\n"
    + inspect.getsource(parse_env_file)
    + r"""
env = parse_env_file(open(sys.argv[1], encoding="utf-8").read())
secrets = {}
if env.get("SECRET_KEY"):
    secrets["SECRET_KEY"] = env["SECRET_KEY"]
password = urllib.parse.urlsplit(env.get("DATABASE_URL", "")).password
if password:
    secrets["the DATABASE_URL password"] = urllib.parse.unquote(password)
hits = {name: [] for name in secrets}

def check(text, where):
    for name, value in secrets.items():
        if value in text and where not in hits[name]:
            hits[name].append(where)

if sys.argv[2] == "cmdline":
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ")
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        check(args.decode(errors="replace"), f"pid {pid} ({comm})")
else:
    # The whole journal's messages through grep, the secret handed over on a pipe (a grep
    # pattern argument would put it on a command line); counts per syslog identifier.
    for name, value in secrets.items():
        read_end, write_end = os.pipe()
        os.write(write_end, value.encode() + b"\n")
        os.close(write_end)
        found = subprocess.run(
            f"journalctl --no-pager -o short | grep -F -f /dev/fd/{read_end} "
            "| awk '{print $5}' | sed 's/\\[[0-9]*\\]//; s/:$//' | sort | uniq -c",
            shell=True, pass_fds=(read_end,), capture_output=True, text=True,
        ).stdout
        os.close(read_end)
        for line in found.splitlines():
            count, where = line.split(None, 1)
            hits[name].append(f"journal: {where} ({count} lines)")
print(json.dumps({"checked": sorted(secrets), "hits": hits}))
"""
)
EXPECTED_SECRETS = ["SECRET_KEY", "the DATABASE_URL password"]
PLACES = {"cmdline": "process command lines", "journal": "the journal"}


def test_env_file_readable_only_by_root_and_app(host, settings):
    with host.sudo():
        env = host.file(settings.env_file)
        facts = (env.exists, env.is_file) + ((env.user, env.group, env.mode) if env.exists else ())
    assert facts[:2] == (True, True), f"{settings.env_file} is missing; run `fab provision`"
    _, _, user, group, mode = facts
    assert (user, group) == ("root", settings.app_user), (
        f"{settings.env_file} is owned by {user}:{group}; must be root:{settings.app_user}"
    )
    assert mode == 0o640, (
        f"{settings.env_file} is {mode:04o}; must be 0640 so only root and "
        f"{settings.app_user} can read the secrets"
    )
    assert not mode & 0o007, f"{settings.env_file} is world-accessible ({mode:04o})"


@pytest.mark.parametrize("where", PLACES)
def test_secrets_not_leaked(host, settings, where):
    command = (
        f"sudo -n python3 -c {shlex.quote(FIND_SECRETS)} {shlex.quote(settings.env_file)} {where}"
    )
    result = host.run(command)
    # stderr is the script's traceback, which shows code, never the secrets' values.
    assert result.rc == 0, f"could not search {PLACES[where]}: {result.stderr.strip()[-300:]}"
    report = json.loads(result.stdout)
    assert report["checked"] == sorted(EXPECTED_SECRETS), (
        f"{settings.env_file} lacks {set(EXPECTED_SECRETS) - set(report['checked'])}; "
        "nothing to search for (run `fab provision`)"
    )
    leaks = {name: places for name, places in report["hits"].items() if places}
    assert not leaks, f"secrets found in {PLACES[where]} (values not shown): " + "; ".join(
        f"{name} in {', '.join(places[:10])}" for name, places in leaks.items()
    )
