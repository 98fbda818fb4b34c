"""The result document bench/ writes (JSON) and the table it prints; pure functions.

The document is what ``bench/results/latest.json`` holds: one section per benchmark, each made
of plain numbers (seconds, requests, milliseconds) so it can be compared between runs. A section
that could not be measured holds ``{"error": "..."}`` and its rows say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SCHEMA = 1
SECTIONS = ("deploy_timings", "zero_downtime", "throughput", "multi_host", "renewal")

TIMING_LABELS = {
    "local_up": "fab local.up (warm image cache)",
    "provision_first": "fab provision, first run",
    "provision_again": "fab provision, again (no changes)",
    "deploy_first": "fab deploy, first release",
    "deploy_code_change": "fab deploy, code-only change",
    "deploy_unchanged": "fab deploy, unchanged tree",
    "rollback": "fab rollback",
    "rollback_warm": "fab rollback into the warm slot",
    "rollback_cold": "fab rollback, its slot started afresh",
}
SWITCH_LABELS = {
    "dropstack_deploy": "fab deploy (blue/green)",
    "dropstack_rollback": "fab rollback into the warm slot",
    "dropstack_rollback_started": "fab rollback, its slot started afresh",
    "gunicorn_reload": "Gunicorn reload (HUP), in place",
    "naive_restart": "naive: stop, reinstall, start",
}
CLIENT_LABELS = {"keepalive": "keep-alive", "close": "conn/request"}
ENDPOINT_LABELS = {
    "nginx_outside": "Nginx, from this machine",
    "nginx": "Nginx, inside the host",
    "direct": "Gunicorn direct, inside the host",
}


def document(measured_at: str, machine: Mapping, revision: str, sections: Mapping) -> dict:
    """The whole result: when, on what, of which commit, and every section in a fixed order."""
    return {
        "schema": SCHEMA,
        "measured_at": measured_at,
        "machine": dict(machine),
        "revision": revision,
        **{name: sections.get(name, {"error": "not run"}) for name in SECTIONS},
    }


def run_entry(doc: Mapping, sections: Sequence[str]) -> dict:
    """Which run measured which sections: when, at what commit, how long it took."""
    return {
        "measured_at": doc.get("measured_at"),
        "revision": doc.get("revision"),
        "total_seconds": doc.get("total_seconds"),
        "sections": list(sections),
    }


def merge(previous: Mapping | None, current: Mapping, ran: Sequence[str]) -> dict:
    """The result of a run of some sections (``--only``) over the previous result: the
    sections it ran are its own, the others keep the previous figures, and ``runs`` says which
    run measured which section. A previous result of another schema is not merged."""
    if not previous or previous.get("schema") != current.get("schema"):
        return dict(current)
    earlier = previous.get("runs") or [
        run_entry(previous, [n for n in SECTIONS if "error" not in (previous.get(n) or {})])
    ]
    runs = []
    for run in earlier:
        kept = [n for n in run.get("sections", []) if n not in ran]
        if kept:
            runs.append({**run, "sections": kept})
    merged = dict(current)
    for name in SECTIONS:
        if name not in ran and name in previous:
            merged[name] = previous[name]
    merged["runs"] = [*runs, run_entry(current, ran)]
    return merged


def seconds(value: float) -> str:
    return f"{value:.1f} s"


def timed(entry: Mapping) -> str:
    runs = entry["runs"]
    failed = len(entry.get("failed_attempts") or [])
    retries = f"; {failed} failed attempt{'s' * (failed > 1)}, retried" if failed else ""
    if len(runs) == 1:
        return seconds(runs[0]) + (f" ({retries[2:]})" if retries else "")
    shown = ", ".join(f"{r:.1f}" for r in runs)
    return f"{seconds(entry['median'])} (median of {len(runs)}: {shown}{retries})"


def ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _error_rows(section: str, data: Mapping) -> list[tuple[str, str, str]] | None:
    if "error" in data:
        return [(section, "not measured", data["error"])]
    return None


def timing_rows(data: Mapping) -> list[tuple[str, str, str]]:
    rows = []
    for key, label in TIMING_LABELS.items():
        if key in data:
            rows.append(("deploy timings", label, timed(data[key])))
            switches = data[key].get("switch_runs")
            if switches and key.startswith("rollback"):
                # The part that moves traffic, from the run's step log (fab_output).
                shown = ", ".join(f"{s:.2f}" for s in switches)
                median_ = data[key]["switch_median"]
                rows.append(
                    ("deploy timings", f"{label}: its switch steps",
                     f"{median_:.2f} s (median of {len(switches)}: {shown})")
                )  # fmt: skip
    return rows


def switch_rows(data: Mapping) -> list[tuple[str, str, str]]:
    rows = []
    for key, label in SWITCH_LABELS.items():
        run = data.get(key)
        if not run:
            continue
        if "error" in run:
            rows.append(("zero downtime", label, f"not measured: {run['error']}"))
            continue
        total = run["total"]
        kinds = ", ".join(
            f"{CLIENT_LABELS.get(kind, kind)} {c['failed']}/{c['requests']}"
            for kind, c in run["clients"].items()
        )
        rows.append(
            ("zero downtime", f"{label}: failed / sent",
             f"{total['failed']} / {total['requests']} ({kinds})")
        )  # fmt: skip
        latency = "; ".join(
            f"{CLIENT_LABELS.get(kind, kind)} {ms(c['latency_ms']['p50'])} / "
            f"{ms(c['latency_ms']['p99'])}"
            for kind, c in run["clients"].items()
        )
        rows.append(("zero downtime", f"{label}: p50 / p99", latency))
        during = run.get("during")
        if during:
            p99 = ms(during["p99_ms"]) if during["p99_ms"] is not None else "no response"
            rows.append(
                ("zero downtime", f"{label}: while it ran: failed / sent, p99",
                 f"{during['failed']} / {during['requests']}, p99 {p99}")
            )  # fmt: skip
        took = seconds(run["seconds"])
        if run.get("reload_seconds") is not None:
            took += f" (the reload itself {seconds(run['reload_seconds'])})"
        rows.append(("zero downtime", f"{label}: took", took))
    return rows


def throughput_rows(data: Mapping) -> list[tuple[str, str, str]]:
    rows = []
    for path, figures in data.get("endpoints", {}).items():
        for key, label in ENDPOINT_LABELS.items():
            run = figures.get(key)
            if not run:
                continue
            rows.append(
                ("throughput", f"GET {path}: {label}",
                 f"{run['requests_per_second']:.0f} req/s, p99 {ms(run['latency_ms']['p99'])}"
                 + (f", {run['failed']} failed" if run["failed"] else ""))
            )  # fmt: skip
            used = run.get("cpu_ms_per_request")
            if used and key != "nginx_outside":
                parts = ", ".join(f"{part} {value:.2f}" for part, value in used.items())
                rows.append(("throughput", f"GET {path}: {label}, CPU ms/request", parts))
        if figures.get("ratio") is not None:
            rows.append(
                ("throughput", f"GET {path}: Nginx / direct (inside the host)",
                 f"{figures['ratio']:.2f} (target >= 0.85)")
            )  # fmt: skip
    return rows


MODE_LABELS = {"rolling": "one host at a time", "batch": "--batch N-1"}
PER_HOST_TARGET = {"batch": "target <= 1 s"}  # issue 18


def multi_host_rows(data: Mapping) -> list[tuple[str, str, str]]:
    if "stacks" in data:
        return host_curve_rows(data)
    return three_host_rows(data)


def host_curve_rows(data: Mapping) -> list[tuple[str, str, str]]:
    """Per host count: its stack's set-up (unless reused) and the code-only deploys per mode;
    then what each further host costs per mode."""
    rows = []
    for key, stack in sorted(data["stacks"].items(), key=lambda item: int(item[0])):
        hosts = int(key)
        name = f"{hosts} host{'s' * (hosts > 1)}"
        if "error" in stack:
            rows.append(("multi-host", f"{name}: not measured", stack["error"]))
            continue
        labels = {
            "local_up": f"{name}: fab local.up" + (f" --web-count {hosts}" if hosts > 1 else ""),
            "provision_first": f"{name}: fab provision (parallel)",
            "deploy_first": f"{name}: fab deploy, first release",
        }
        rows += [("multi-host", label, timed(stack[k])) for k, label in labels.items()
                 if k in stack]  # fmt: skip
        if stack.get("reused_stack"):
            rows.append(("multi-host", f"{name}: stack", "reused from the benchmarks before"))
        for mode, label in MODE_LABELS.items():
            if mode in stack:
                flag = f" --batch {hosts - 1}" if mode == "batch" else ""
                rows.append(
                    ("multi-host", f"{name}: fab deploy{flag}, code-only ({label})",
                     timed(stack[mode]))
                )  # fmt: skip
        if stack.get("seconds") is not None:
            rows.append(("multi-host", f"{name}: this stack took", seconds(stack["seconds"])))
    for mode, cost in (data.get("per_extra_host") or {}).items():
        target = f" ({PER_HOST_TARGET[mode]})" if mode in PER_HOST_TARGET else ""
        shown = "not enough host counts" if cost is None else f"{cost:+.2f} s"
        rows.append(
            ("multi-host", f"each further host, {MODE_LABELS.get(mode, mode)}", shown + target)
        )
    return rows


def three_host_rows(data: Mapping) -> list[tuple[str, str, str]]:
    """Results from before the host-count curve: three hosts rolling against web-1 alone."""
    count = data.get("web_count", 3)
    labels = {
        "local_up": f"fab local.up --web-count {count}",
        "provision_first": f"fab provision, {count} hosts (parallel)",
        "deploy_first": f"fab deploy, first release, {count} hosts",
        "deploy_all": f"fab deploy, code-only, {count} hosts rolling",
        "deploy_one": "fab deploy, code-only, --hosts web-1",
    }
    rows = [("multi-host", label, timed(data[key])) for key, label in labels.items() if key in data]
    if data.get("ratio") is not None:
        rows.append(("multi-host", f"{count} hosts / 1 host", f"{data['ratio']:.2f}x"))
    return rows


def certificate(entry: Mapping) -> str:
    verified = "verifies" if entry.get("verified") else f"does NOT verify: {entry.get('error')}"
    return f"serial {entry.get('serial')}, chain {verified} against the local CA's root"


def renewal_rows(data: Mapping) -> list[tuple[str, str, str]]:
    """The forced renewal under HTTPS load: failures per client (with wrk's socket errors, which
    it never retries, apart), latency, its duration and the certificate before and after."""
    rows = []
    total = data["total"]
    kinds = ", ".join(
        f"{CLIENT_LABELS.get(kind, kind)} {c['failed']}/{c['requests']}"
        + (f" ({c['socket_errors']} socket errors)" if c.get("socket_errors") else "")
        for kind, c in data["clients"].items()
    )
    rows.append(("renewal", "forced renewal under load: failed / sent",
                 f"{total['failed']} / {total['requests']} ({kinds})"))  # fmt: skip
    latency = "; ".join(
        f"{CLIENT_LABELS.get(kind, kind)} {ms(c['latency_ms']['p50'])} / "
        f"{ms(c['latency_ms']['p99'])}"
        for kind, c in data["clients"].items()
    )
    rows.append(("renewal", "p50 / p99 (HTTPS)", latency))
    during = data.get("during")
    if during:
        p99 = ms(during["p99_ms"]) if during["p99_ms"] is not None else "no response"
        rows.append(("renewal", "while certbot ran: failed / sent, p99",
                     f"{during['failed']} / {during['requests']}, p99 {p99}"))  # fmt: skip
    rows.append(("renewal", "certbot renew --force-renewal took", seconds(data["renewal_seconds"])))
    for key, label in (("certificate_before", "before"), ("certificate_after", "after")):
        if key in data:
            rows.append(("renewal", f"certificate served {label}", certificate(data[key])))
    if not data.get("new_certificate_served", True):
        rows.append(("renewal", "new certificate served", "NO: 443 still serves the old one"))
    return rows


ROW_BUILDERS = {
    "deploy_timings": timing_rows,
    "zero_downtime": switch_rows,
    "throughput": throughput_rows,
    "multi_host": multi_host_rows,
    "renewal": renewal_rows,
}


def table_rows(doc: Mapping) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for name in SECTIONS:
        data = doc.get(name) or {"error": "not run"}
        section = name.replace("_", " ")
        rows += _error_rows(section, data) or ROW_BUILDERS[name](data)
    return rows


def render_text(rows: list[tuple[str, str, str]]) -> str:
    """Aligned columns for a terminal."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in rows)


def render_markdown(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| benchmark | measure | result |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c.replace('|', '/')} |" for a, b, c in rows]
    return "\n".join(lines)
