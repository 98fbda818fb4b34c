"""Maintenance mode: ``fab maintenance.on [--message ...]`` and ``fab maintenance.off``.

While the flag file ``HostLayout.maintenance_flag`` exists, Nginx answers every app request
with 503, ``Retry-After`` and the maintenance page (``page.html``, or ``page.json`` for API
clients), except health checks and the ``maintenance_bypass`` addresses (nginx/site.conf.j2).
Nginx checks the flag on every request, so switching is creating or removing one file: no
reload, no dropped keep-alive connection, and nothing touches ``live.sock``, so deploys and
migrations run as usual meanwhile.

Pure functions build the pages and plan the changes (provisioning's ``Change``); the tasks at
the bottom only probe, apply and print. The message travels to the host over SFTP inside the
page files, never on a command line; it is HTML-escaped in the page and JSON-encoded in JSON.
"""

from __future__ import annotations

import json
import unicodedata

from fabric import task
from invoke.exceptions import Exit, Failure, UnexpectedExit

from deploy import host_model, shell
from deploy.host_model import HostLayout, HostSettings, SettingsError
from deploy.inventory import InventoryError
from deploy.provision.change import Change
from deploy.provision.files import RemoteFile, differing, file_states_command, parse_file_states
from deploy.provision.templates import render
from deploy.steps import HostLog, StepFailed, last_words, run_on_hosts, say
from deploy.targets import HostUnreachable, connect, resolve_inventory, select_hosts

DEFAULT_MESSAGE = "The site is down for maintenance and will be back shortly."
MAX_MESSAGE_LENGTH = 500
TARGET_HELP = {
    "stack": "Pulumi stack whose outputs name the hosts (default: the local droplet)",
    "inventory": "inventory JSON file instead of a stack",
    "hosts": "comma-separated web host names (default: all)",
}


class MaintenanceError(ValueError):
    """A maintenance request cannot be done as asked; ``str()`` is one line."""


def check_message(message: str) -> str:
    """The message as shown: one line of printable text, at most MAX_MESSAGE_LENGTH long."""
    text = message.strip() or DEFAULT_MESSAGE
    if len(text) > MAX_MESSAGE_LENGTH:
        raise MaintenanceError(
            f"--message: {len(text)} characters; at most {MAX_MESSAGE_LENGTH} are allowed"
        )
    # Control characters (newlines, escapes) would break the one-line page and the JSON reader's
    # expectations; Unicode category C* is every one of them.
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise MaintenanceError("--message: control characters (newlines, tabs) are not allowed")
    return text


def page_files(settings: HostSettings, message: str) -> tuple[RemoteFile, RemoteFile]:
    """The HTML and JSON pages, root:root 0644 so Nginx's workers can read them."""
    p = settings.paths
    html = render("maintenance.html.j2", settings, message=message)
    body = json.dumps({"error": "maintenance", "message": message}, ensure_ascii=False) + "\n"
    return RemoteFile(p.maintenance_page("html"), html), RemoteFile(
        p.maintenance_page("json"), body
    )


def probe_command(layout: HostLayout) -> list[str]:
    """One read-only probe: the pages' checksums and modes, and whether the flag exists."""
    paths = [layout.maintenance_page("html"), layout.maintenance_page("json")]
    return file_states_command([*paths, layout.maintenance_flag])


def flag_is_on(layout: HostLayout, states: dict[str, str]) -> bool:
    return states.get(layout.maintenance_flag, "absent") != "absent"


def on_command(layout: HostLayout) -> list[str]:
    """Create the flag. ``touch`` creates the file in one step, and Nginx only asks whether
    it exists, so there is no moment at which a reader sees a half-made switch."""
    return shell.as_root(["touch", layout.maintenance_flag])


def off_command(layout: HostLayout) -> list[str]:
    return shell.as_root(["rm", "-f", layout.maintenance_flag])


def directory_command(layout: HostLayout) -> list[str]:
    """The maintenance directory, for hosts provisioned before it was part of the layout."""
    return shell.as_root(["install", "-d", "-m", "0755", layout.maintenance_dir])


def plan_on(settings: HostSettings, message: str, states: dict[str, str]) -> list[Change]:
    """Pages first, then the flag: the flag never points at a missing or stale page."""
    layout = settings.paths
    changes = []
    pages = differing(page_files(settings, message), states)
    if pages:
        changes.append(
            Change(
                "maintenance pages",
                commands=(tuple(directory_command(layout)),),
                files=tuple(pages),
            )
        )
    if not flag_is_on(layout, states):
        changes.append(Change("maintenance flag on", commands=(tuple(on_command(layout)),)))
    return changes


def plan_off(layout: HostLayout, states: dict[str, str]) -> list[Change]:
    """Only the flag goes; the pages stay for the next ``on`` (which rewrites them anyway)."""
    if not flag_is_on(layout, states):
        return []
    return [Change("maintenance flag off", commands=(tuple(off_command(layout)),))]


# --- the tasks: probe, apply, print ---


def _switch(c, stack: str, inventory: str, hosts: str, task_name: str, plan) -> None:
    # Here, not at the top: `fab` imports every task module on every run, and provisioning's
    # operations (with Jinja, psycopg, Pulumi's settings) would slow every `fab rollback`.
    from deploy.provision import apply

    try:
        inv = resolve_inventory(stack, inventory)
        targets = {w.name: w for w in select_hosts(inv, hosts)}
    except InventoryError as exc:
        raise Exit(f"dropstack: {exc}", code=1) from None

    def work(name: str) -> HostLog:
        web = targets[name]
        settings = host_model.for_host(c.config, inv, web)
        log = HostLog(name, task_name)
        conn = connect(inv, web, c.config)
        try:
            layout = settings.paths
            states = parse_file_states(apply.run(conn, probe_command(layout)).stdout)
            changes = plan(settings, states)
            log.step(task_name, lambda: apply.apply_changes(conn, changes, inv))
            return log
        except (UnexpectedExit, Failure) as exc:
            reason = last_words(exc.result.stderr or exc.result.stdout)
            raise StepFailed(name, task_name, reason) from None
        finally:
            conn.close()

    # Every host at once: a stack behind a load balancer should switch as one.
    outcomes = run_on_hosts(list(targets), work, parallel=True)
    failures = [str(o) for o in outcomes.values() if isinstance(o, BaseException)]
    if failures:
        raise Exit("\n".join(f"dropstack: {task_name} failed: {f}" for f in failures), code=1)


@task(
    name="on",
    help={
        **TARGET_HELP,
        "message": f"one line shown on the page and in the JSON (default: {DEFAULT_MESSAGE!r})",
    },
)
def maintenance_on(c, message="", stack="", inventory="", hosts=""):
    """Answer every app request with 503 and the maintenance page; health checks and the
    maintenance_bypass addresses still reach the app. No Nginx reload."""
    try:
        text = check_message(message)
        _switch(c, stack, inventory, hosts, "maintenance on", lambda s, st: plan_on(s, text, st))
    except (MaintenanceError, SettingsError, HostUnreachable) as exc:
        raise Exit(f"dropstack: {exc}", code=1) from None
    say(f"maintenance on: {text}")


@task(name="off", help=TARGET_HELP)
def maintenance_off(c, stack="", inventory="", hosts=""):
    """Serve the app again (remove the flag). No Nginx reload."""
    try:
        _switch(c, stack, inventory, hosts, "maintenance off", lambda s, st: plan_off(s.paths, st))
    except (SettingsError, HostUnreachable) as exc:
        raise Exit(f"dropstack: {exc}", code=1) from None
    say("maintenance off")
