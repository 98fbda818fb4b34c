"""Where the CPU goes during a throughput run: Nginx's processes and a Gunicorn unit's on the
web host, wrk on this machine, and the whole machine's busy share. The host and this machine
share one kernel (nspawn containers), so the figures add up against the same two cores.

Pure functions: the probe command run on the host, and the arithmetic on what it and
``/proc/stat`` print."""

from __future__ import annotations

import json
import shlex

# Run on the host as root with the units as arguments; prints {"hz": .., "nginx": ticks,
# "<unit>": ticks}: user+system clock ticks of every process named nginx, and of each unit's
# main process and its children (Gunicorn's arbiter and workers).
PROBE = """\
import json, os, subprocess, sys
def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            head, _, tail = f.read().rpartition(")")
    except OSError:
        return None
    fields = tail.split()
    return head.partition("(")[2], int(fields[1]), int(fields[11]) + int(fields[12])
procs = {p: s for p in os.listdir("/proc") if p.isdigit() and (s := stat(p))}
out = {"hz": os.sysconf("SC_CLK_TCK")}
out["nginx"] = sum(t for name, _, t in procs.values() if name == "nginx")
for unit in sys.argv[1:]:
    show = ["systemctl", "show", "-p", "MainPID", "--value", unit]
    main = int(subprocess.run(show, capture_output=True, text=True).stdout.strip() or 0)
    out[unit] = sum(t for p, (_, ppid, t) in procs.items() if main and main in (int(p), ppid))
print(json.dumps(out))
"""


def probe_command(units: list[str]) -> str:
    return " ".join(["python3", "-c", shlex.quote(PROBE), *(shlex.quote(u) for u in units)])


def parse_probe(output: str) -> dict[str, float]:
    """The probe's line as CPU seconds per process group."""
    data = json.loads(output.strip().splitlines()[-1])
    hz = data.pop("hz")
    return {name: ticks / hz for name, ticks in data.items()}


def machine_ticks(proc_stat: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat's first line; idle and iowait are idle."""
    fields = [int(x) for x in proc_stat.splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(busy / total, 3) if total else 0.0


def per_request_ms(before: dict[str, float], after: dict[str, float], requests: int) -> dict:
    """CPU milliseconds per request for each group present in both samples."""
    if not requests:
        return {}
    return {
        name: round((after[name] - before[name]) * 1000 / requests, 3)
        for name in after
        if name in before
    }
