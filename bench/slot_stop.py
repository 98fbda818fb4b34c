"""How long a drained slot's Gunicorn takes to exit: ``python -m bench.slot_stop DATABASE_URL``.

Loopback only, no host needed: two real Gunicorns (the app with a Gunicorn config, 5 gthread
workers x 4 threads as on a 2-core host) on unix sockets, blue and green. ``load``: eight
client processes keep connections alive to blue, then move to green (the switch); once ``ss``
shows nothing connected to blue (the drain), blue's arbiter gets SIGTERM and the seconds until
it has exited are the figure (what ``systemctl stop`` waited for), while green keeps serving
the load. ``idle``: the same without clients. ``--config`` compares Gunicorn configs (a path,
e.g. an older app/gunicorn_conf.py). docs/releases.md has the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.unix_http import UnixHTTPConnection

REPO = Path(__file__).resolve().parents[1]
CLIENTS = 8
LOAD_SECONDS = 8


def start(slot: str, work: Path, database_url: str, config: str) -> tuple[subprocess.Popen, str]:
    sock = str(work / f"{slot}.sock")
    env = {**os.environ, "HOME": str(work), "DATABASE_URL": database_url,
           "DROPSTACK_ENV": "development", "DROPSTACK_RELEASE": slot,
           "GUNICORN_BIND": f"unix:{sock}", "WEB_CONCURRENCY": "5", "GUNICORN_THREADS": "4",
           "LOG_LEVEL": "warning"}  # fmt: skip
    env.pop("XDG_RUNTIME_DIR", None)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "-c", config, "app.wsgi:app"], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=(work / f"{slot}.log").open("w"),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = UnixHTTPConnection(sock)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return process, sock
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{slot} did not become ready: see {work}/{slot}.log")


def client(target: str, stop, counts) -> None:
    """Requests on one kept-alive connection, to whichever socket the target file names;
    failures are counted by kind (status or exception) and by slot (the socket's name)."""
    done, failed = 0, {}
    connection, current = None, None
    while not stop.is_set():
        path = Path(target).read_text()
        if path != current:
            if connection:
                connection.close()
            connection, current = UnixHTTPConnection(path), path
        slot = Path(path).stem
        try:
            connection.request("GET", "/readyz" if done % 2 else "/api/tasks")
            response = connection.getresponse()
            response.read()
            if response.status >= 500:
                kind = f"{slot} {response.status}"
                failed[kind] = failed.get(kind, 0) + 1
            done += 1
        except (OSError, http.client.HTTPException) as error:
            kind = f"{slot} {type(error).__name__}"
            failed[kind] = failed.get(kind, 0) + 1
            connection.close()
            connection, current = None, None
    if connection:
        connection.close()
    counts.put((done, failed))


def route(target: Path, sock: str) -> None:
    """Name the socket the clients use, atomically (as the deploy replaces live.sock): a
    client reading the file while it was rewritten in place got '' and counted a failure."""
    staged = target.with_suffix(".tmp")
    staged.write_text(sock)
    os.replace(staged, target)


def connected(sock: str) -> int:
    ss = ["ss", "-xH", "state", "connected", "src", sock]
    return len(subprocess.run(ss, capture_output=True, text=True).stdout.splitlines())


def one_stop(database_url: str, config: str, loaded: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="slot-stop-") as tmp:
        work = Path(tmp)
        blue, blue_sock = start("blue", work, database_url, config)
        green, green_sock = start("green", work, database_url, config)
        target = work / "live"
        route(target, blue_sock)
        stop, counts = mp.Event(), mp.Queue()
        clients = [mp.Process(target=client, args=(str(target), stop, counts))
                   for _ in range(CLIENTS if loaded else 0)]  # fmt: skip
        for process in clients:
            process.start()
        time.sleep(LOAD_SECONDS if loaded else 1)
        route(target, green_sock)  # the switch
        drain_started = time.monotonic()
        while connected(blue_sock) and time.monotonic() - drain_started < 15:
            time.sleep(0.05)
        drained = time.monotonic() - drain_started
        left = connected(blue_sock)
        stopping = time.monotonic()
        blue.send_signal(signal.SIGTERM)
        blue.wait(120)
        stopped = time.monotonic() - stopping
        stop.set()
        totals = [counts.get() for _ in clients]
        for process in clients:
            process.join()
        green.send_signal(signal.SIGTERM)
        green.wait(120)
    return {"drain_s": round(drained, 2), "left": left, "stop_s": round(stopped, 2),
            "exit": blue.returncode, "requests": sum(t[0] for t in totals),
            "failed": failures(t[1] for t in totals)}  # fmt: skip


def failures(per_client) -> dict[str, int]:
    merged: dict[str, int] = {}
    for counted in per_client:
        for kind, n in counted.items():
            merged[kind] = merged.get(kind, 0) + n
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slot_stop", description=__doc__)
    parser.add_argument("database_url")
    parser.add_argument("--config", action="append", help="Gunicorn -c (repeatable)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=("idle", "load", "both"), default="both")
    args = parser.parse_args(argv)
    configs = args.config or ["python:app.gunicorn_conf"]
    modes = ("idle", "load") if args.mode == "both" else (args.mode,)
    seconds: dict[tuple[str, str], list[float]] = {}
    for run in range(args.runs):
        for mode in modes:
            for config in configs:  # interleaved: a noisy machine hurts every config alike
                result = one_stop(args.database_url, config, mode == "load")
                seconds.setdefault((config, mode), []).append(result["stop_s"])
                print(json.dumps({"run": run, "mode": mode, "config": config, **result}))
    for (config, mode), values in seconds.items():
        print(f"{config:<40} {mode:<5} stop after drain: median {statistics.median(values):.2f}s "
              f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
