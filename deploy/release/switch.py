"""The blue/green switch on one host, run over a Fabric connection.

The switch is ordered so that traffic only ever moves to a slot that has answered ``/readyz``
on its own socket: it moves when the live.sock link Nginx connects through is replaced (no Nginx
reload), and the old slot is stopped only once Nginx has no connection left to it. If anything
fails or the run is interrupted before the link moved, ``Switch.abandon`` stops the new slot, so
the old release keeps serving and the new one never saw a request; after the link moved, it
finishes the switch instead, since the new slot is already serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko

from deploy.release import commands as cmd
from deploy.release import plan
from deploy.release.host import DETAIL_WIDTH, ReleaseHost, migrate
from deploy.release.plan import slots_for
from deploy.release.state import HostState
from deploy.steps import Unchanged, last_words, say


@dataclass
class Switch:
    """Moves traffic from the live slot to the idle one and remembers how far it got."""

    h: ReleaseHost
    release: str
    live: str | None = None
    idle: str = ""
    started: bool = False  # the idle slot was (re)started with the new release
    routed: bool = False  # live.sock names the idle slot: Nginx's new connections go there
    current_switched: bool = False
    boot_enabled: bool = False
    old_stopped: bool = False
    workers_started: bool = False  # the idle slot's workers were (re)started
    workers_boot_enabled: bool = False
    old_workers_stopped: bool = False
    since: int = 0
    warm: bool = False  # the idle slot already runs the release: no stop, point or start
    keep_warm: int = 0  # seconds the retired slot stays up; 0: drain and stop it now
    # A rollback: the host drains and stops the old slot in the background; fab does not wait
    hand_off: bool = False
    drain: float | None = field(default=None, repr=False)  # when the route moved traffic
    left: str | None = None  # a rollback to an older release: the release it leaves

    @classmethod
    def plan(cls, h: ReleaseHost, release: str, state: HostState, rollback: bool = False):
        """A rollback keeps no warm window: the slot it retires runs the release it leaves,
        the one just judged bad, and stopping it now leaves the idle slot free for a second
        rollback straight after (an older release, started afresh). Nor does it wait for that
        slot's drain: once new connections go to the good release the rollback is done, and
        the host stops the bad one when Nginx's cached connections to it have closed."""
        live, idle = slots_for(state)
        warm = plan.warm_slot(state, release)
        seconds = 0 if rollback else h.settings.warm_seconds
        keep_warm = plan.warm_window(state, release, seconds)
        # Going back judges the release left bad; going forward again (--release <newer>) does
        # not judge the older one.
        left = state.current if rollback and state.current and release < state.current else None
        return cls(h, release, live, idle, warm=warm, keep_warm=keep_warm, left=left,
                   hand_off=rollback)  # fmt: skip

    def stop_idle_slot(self) -> bool:
        """Free the idle slot before it is repointed: cancel a retirement still pending (a warm
        window, a stop in the background), drain it and stop it, waiting for a stop already
        under way. Changes nothing when it is not running."""
        h = self.h
        command = cmd.stop_idle_command(h.layout, self.idle, h.settings.drain_timeout)
        state = (h.run(command).stdout.strip().splitlines() or ["unknown"])[0]
        if state in ("inactive", "failed", "unknown"):
            return False
        say(f"[{h.name}]   slot {self.idle} was {state} (a retired slot): drained and stopped")
        return True

    def reuse_warm_slot(self) -> bool | Unchanged:
        """A rollback inside the warm window: the idle slot still runs the release, so its
        retirement is cancelled and nothing is started; the gate still asks its /readyz. Had
        the window just ended, the slot is freed and started as usual."""
        h = self.h
        self.started = True  # a failed gate stops it, as it would a freshly started slot
        if h.run(cmd.reuse_warm_command(h.layout, self.idle, self.release), warn=True).ok:
            return Unchanged(f"slot {self.idle} still runs {self.release} (warm): nothing started")
        say(f"[{h.name}]   slot {self.idle} no longer runs {self.release}: starting it")
        self.stop_idle_slot()
        self.point_idle_slot()
        self.start_idle_slot()
        return True

    def point_idle_slot(self) -> bool:
        self.h.run(cmd.point_slot_command(self.h.layout, self.idle, self.release))
        return True

    def start_idle_slot(self) -> bool:
        self.started = True
        result = self.h.run(cmd.start_slot_command(self.h.layout, self.idle), warn=True)
        clock = result.stdout.split()[:1]
        self.since = int(clock[0]) if clock and clock[0].isdigit() else 0
        if result.failed:
            unit = self.h.layout.unit(self.idle)
            raise self.h.fail(
                f"start slot {self.idle}",
                f"{unit} did not start ({last_words(result.stderr, 1)}); journal above",
                self.h.journal(unit, self.since),
            )
        return True

    @property
    def readiness_path(self) -> str:
        return self.h.host.app.readiness_path

    @property
    def worker_count(self) -> int:
        return self.h.host.app.worker_count

    def health_gate(self) -> bool:
        """The contract's readiness path (/readyz) on the slot's own socket, retried for
        health_timeout seconds."""
        command = cmd.health_wait_command(
            self.h.layout, self.idle, self.readiness_path, self.h.settings.health_timeout
        )
        result = self.h.run(command, warn=True)
        if result.ok:
            return False
        # The body and the status the wait printed, on one line (JSON bodies end in a newline).
        response = " ".join(result.stdout.split())[-DETAIL_WIDTH:] or "none"
        why = {1: f"not ready after {self.h.settings.health_timeout}s", 2: "the slot stopped"}
        unit = self.h.layout.unit(self.idle)
        raise self.h.fail(
            f"health gate {self.readiness_path} on {self.idle}",
            f"{why.get(result.exited, 'check failed')}; last response: {response}",
            self.h.journal(unit, self.since),
        )

    def start_idle_workers(self) -> bool:
        """The new release's workers, once its web process passed the gate (migrations are
        done): from here both releases' workers take jobs, as both serve requests."""
        self.workers_started = True
        h = self.h
        result = h.run(cmd.start_workers_command(h.layout, self.idle, self.worker_count), warn=True)
        if result.failed:
            unit = h.layout.worker_unit(self.idle, 1)
            raise h.fail(
                f"start workers on {self.idle}",
                f"workers did not start ({last_words(result.stderr, 1)}); journal above",
                h.journal(unit, self.since),
            )
        return True

    def enable_workers_at_boot(self) -> bool:
        self.h.run(cmd.boot_workers_command(self.h.layout, self.idle, self.worker_count))
        self.workers_boot_enabled = True
        return True

    def stop_old_workers(self) -> bool:
        """SIGTERM to the old release's workers: each finishes its job in hand, takes no new
        one, and exits; systemctl returns when all have (bounded by worker_stop_timeout). A job
        still running then is killed and RQ retries it (docs/app-contract.md)."""
        if not self.live or self.live == self.idle:
            return False
        h = self.h
        started = time.monotonic()
        h.run(cmd.stop_workers_command(h.layout, self.live))
        self.old_workers_stopped = True
        took = time.monotonic() - started
        say(f"[{h.name}]   workers of slot {self.live} stopped after {took:.1f}s")
        return True

    def route_nginx(self) -> bool:
        """Replace live.sock: from now on every new upstream connection reaches the idle slot.
        Nginx is not reloaded, so no client connection is closed; requests already on the old
        slot finish there.

        The old slot's drain starts counting here: Nginx's connections to it close while
        `current` changes, and the retire step waits only for what is left of them."""
        self.h.run(cmd.route_command(self.h.layout, self.idle))
        self.routed = True
        if self.live and self.live != self.idle:
            # Only the clock starts here; the wait itself runs in the retire step, on the one
            # SSH channel at a time. (Run on a second channel meanwhile, it left an interrupted
            # switch with a transport that refused or never answered new channels.)
            self.drain = time.monotonic()
        return True

    @property
    def drain_command(self) -> list[str]:
        h = self.h
        return cmd.drain_wait_command(h.layout, self.live, h.settings.drain_timeout)

    def switch_current(self) -> bool:
        self.h.run(cmd.switch_current_command(self.h.layout, self.release, self.left))
        self.current_switched = True
        return True

    def enable_at_boot(self) -> bool:
        self.h.run(cmd.boot_slot_command(self.h.layout, self.idle))
        self.boot_enabled = True
        return True

    @property
    def retire_step(self) -> str:
        if self.keep_warm:
            return f"keep old slot {self.live} warm for {self.keep_warm}s"
        if self.hand_off:
            return f"retire old slot {self.live} on the host"
        return f"stop old slot {self.live}"

    def retire_old_slot(self) -> bool:
        if self.keep_warm:
            return self.keep_old_slot_warm()
        return self.hand_off_old_slot() if self.hand_off else self.stop_old_slot()

    def hand_off_old_slot(self) -> bool:
        """A rollback's retire step: the host drains the old slot and stops it (the retire
        unit, as at the end of a warm window), and the rollback does not wait for that.

        The drain is not weakened, only no longer waited for: Nginx opens no new connection to
        the old slot after the route, its cached ones close within keepalive_time after their
        next response (300 ms) or when idle, and only then is the slot stopped. Until then a
        request may still reach the release left, for at most those 300 ms after the rollback
        returns. A next deploy or rollback cancels the pending retirement and does it itself
        (stop_idle_slot)."""
        if not self.live or self.live == self.idle:
            return False
        h = self.h
        self.drain = None  # the host waits for it now
        retire = h.layout.retire_unit(self.live)
        return self.retire_on_host(
            cmd.retire_now_command(h.layout, self.live, h.settings.drain_timeout),
            f"could not hand slot {self.live}'s drain to the host",
            f"slot {self.live} gets no new connection; the host stops it once Nginx's last one "
            f"to it has closed ({retire}.service)",
        )

    def keep_old_slot_warm(self) -> bool:
        """Leave the old slot running, off live.sock, and have the host drain and stop it when
        the warm window ends (a transient systemd timer: no need for this machine then).

        Drained first all the same: until Nginx's cached connections to it have closed, a new
        request may still reach the old release, so the switch is not over before that."""
        if not self.live or self.live == self.idle:
            return False
        h = self.h
        self.drain_old_slot()
        retire = h.layout.retire_unit(self.live)
        # No timer, no warm slot: nothing would ever stop it, so it is stopped now instead.
        return self.retire_on_host(
            cmd.keep_warm_command(h.layout, self.live, self.keep_warm, h.settings.drain_timeout),
            f"could not schedule the end of slot {self.live}'s warm window",
            f"slot {self.live} stays warm for {self.keep_warm}s (a rollback starts nothing); "
            f"then the host drains and stops it ({retire}.timer)",
        )

    def retire_on_host(self, command: list[str], failure: str, success: str) -> bool:
        """Have the host retire the old slot (``command`` makes its retire unit); should that
        fail, drain and stop the slot now, as without a window."""
        h = self.h
        handed = h.run(command, warn=True)
        if handed.failed:
            why = last_words(handed.stderr or handed.stdout, 1)
            say(f"[{h.name}]   warning: {failure} ({why}); stopping it now")
            return self.stop_old_slot()
        self.old_stopped = True
        say(f"[{h.name}]   {success}")
        return True

    def stop_old_slot(self) -> bool:
        """Wait until Nginx has no connection left to the old slot, then stop it gracefully,
        without waiting for Gunicorn to exit: the next switch waits for that if it must.

        Stopping closes the old slot's idle connections; were Nginx sending a request on one
        at that instant, it would retry it on a fresh connection (a cached connection's error
        costs no try) but only for idempotent methods, hence the drain first."""
        if not self.live or self.live == self.idle:
            return False
        self.drain_old_slot()
        self.h.run(cmd.stop_slot_command(self.h.layout, self.live, wait=False))
        self.old_stopped = True
        return True

    def drain_old_slot(self) -> None:
        """Wait (bounded by drain_timeout) until Nginx has no connection left to the old slot:
        its cached ones close within the upstream's keepalive_time after a response, or idle
        after keepalive_timeout (nginx/upstream.conf.j2). Timed from the route, if it ran."""
        h = self.h
        started = self.drain or time.monotonic()
        self.drain = None  # timed once; a later retire (abandon) times afresh
        waited = h.run(self.drain_command, warn=True)
        took = time.monotonic() - started
        if waited.failed:
            say(
                f"[{h.name}]   warning: slot {self.live} still had connections after {took:.1f}s "
                f"({last_words(waited.stdout + waited.stderr, 1)}); going on: Gunicorn finishes "
                "the requests in flight"
            )
        else:
            say(f"[{h.name}]   slot {self.live} drained: no connection left after {took:.1f}s")

    def steps(self, migrate_first: bool) -> list[tuple[str, Callable[[], bool]]]:
        """The switch's steps, named as they print; a dry-run lists these very steps."""
        h = self.h
        if self.warm:
            steps = [(f"reuse warm slot {self.idle}", self.reuse_warm_slot)]
        else:
            steps = [
                (f"stop idle slot {self.idle}", self.stop_idle_slot),
                (f"point slot {self.idle} at the release", self.point_idle_slot),
            ]
            if migrate_first:
                steps.append(
                    ("database migrations", lambda: migrate(h, self.idle, self.release, self.live))
                )
            steps.append((f"start slot {self.idle}", self.start_idle_slot))
        workers = self.worker_count > 0
        steps += [
            (f"health gate {self.readiness_path} on {self.idle}", self.health_gate),
            *([(f"start {self.worker_count} workers on {self.idle}", self.start_idle_workers)]
              if workers else []),
            (f"route nginx to {self.idle}", self.route_nginx),
            ("switch current", self.switch_current),
        ]  # fmt: skip
        if self.live:
            steps.append((self.retire_step, self.retire_old_slot))
            if workers:
                steps.append((f"stop old workers on {self.live}", self.stop_old_workers))
        # The boot links last: they hand systemd a daemon-reload, and systemd answers nothing
        # else until it is done (0.1-0.3 s), so a retire step after them waited for it.
        steps.append((f"enable slot {self.idle} at boot", self.enable_at_boot))
        if workers:
            steps.append((f"enable workers on {self.idle} at boot", self.enable_workers_at_boot))
        return steps

    def abandon(self) -> None:
        """Clean up a switch that did not finish.

        Before live.sock moved, the old slot still serves: stop the new one, which never got a
        request. After it moved, the new slot serves and undoing would be a second switch, so
        finish this one instead (current, boot, the old slot's stop)."""
        h = self.h
        if not self.routed and self.started and self.link_names_idle():
            self.routed = True  # moved, though the run stopped before it could record that
        if self.routed:
            say(f"[{h.name}]   traffic already on slot {self.idle}: finishing the switch")
            self.finish_routed()
            return
        if self.workers_started:
            # Jobs they took finish (SIGTERM); the old release's workers never stopped.
            h.run(cmd.stop_workers_command(h.layout, self.idle), warn=True)
            say(f"[{h.name}]   stopped the workers of slot {self.idle}")
        if self.started:
            h.run(cmd.stop_slot_command(h.layout, self.idle), warn=True)
            say(f"[{h.name}]   stopped slot {self.idle}; {self.live or 'no slot'} keeps serving")

    @staticmethod
    def once_more_if_no_channel(action) -> None:
        """Run ``action``; if sshd refused a new channel (its MaxSessions, while a cut-off
        command's channel closes), once more a moment later."""
        try:
            action()
        except paramiko.ChannelException:
            time.sleep(0.5)
            action()

    def link_names_idle(self) -> bool:
        try:
            found = self.h.run(cmd.read_link_command(self.h.layout.live_socket), warn=True)
        except Exception:  # the connection is gone: nothing can be checked or changed anyway
            return False
        return found.stdout.strip() == self.h.layout.socket(self.idle)

    def finish_routed(self) -> None:
        """The steps after the route that have not run, each attempted once; a failure is
        printed and the next one still runs (no step runner: cancellation is what got us here)."""
        h = self.h
        workers = self.worker_count > 0  # started before the route: the new ones are running
        remaining = [
            ("switch current", self.current_switched, self.switch_current),
            (self.retire_step, not self.live or self.old_stopped, self.retire_old_slot),
            *([(f"stop old workers on {self.live}", not self.live or self.old_workers_stopped,
                self.stop_old_workers)] if workers else []),
            (f"enable slot {self.idle} at boot", self.boot_enabled, self.enable_at_boot),
            *([(f"enable workers on {self.idle} at boot", self.workers_boot_enabled,
                self.enable_workers_at_boot)] if workers else []),
        ]  # fmt: skip
        for name, done, action in remaining:
            if done:
                continue
            try:
                self.once_more_if_no_channel(action)
                say(f"[{h.name}]   {name}: done")
            except BaseException as exc:  # an interrupt too: the next step must still run
                if hasattr(exc, "result"):
                    reason = last_words(exc.result.stderr or exc.result.stdout)
                else:
                    reason = f"{type(exc).__name__} {exc}".strip()
                say(f"[{h.name}]   warning: {name} failed: {reason}")
