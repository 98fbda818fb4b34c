"""Benchmark 1: how long the operator's commands take on the local droplet, one web host.

From nothing: `fab local.up` (image cache warm), the first `fab provision`, a second one that
changes nothing, the first `fab deploy`, then repeated code-only redeploys (a comment committed
in the clone), redeploys of an unchanged tree, and rollbacks of both kinds: into the slot the
deploy before kept warm (a pure traffic switch), and to a release no slot runs (its slot is
started afresh); repeated ones report the median. Leaves one provisioned host serving a release.
"""

from __future__ import annotations

from bench import fab_output
from bench.drive import BenchFailed, Source, fab, note
from bench.stats import median, timing


def up_command(web_count: int = 1, domain: str | None = None) -> list[str]:
    """`fab local.up`'s arguments for a stack of ``web_count`` web hosts (a load balancer comes
    with two or more), with the site's ``domain`` when given (and the local ACME CA)."""
    args = ["local.up"] if web_count == 1 else ["local.up", "--web-count", str(web_count)]
    return args + (["--domain", domain] if domain else [])


def bring_up(web_count: int = 1, domain: str | None = None) -> dict:
    """A fresh local stack: down, then up; up again if the image cache was cold, so the figure is
    for a warm cache. Returns the timing entry and whether the cache was cold."""
    note("fab local.down (start from nothing)")
    fab("local.down")
    args = up_command(web_count, domain)
    note(f"fab {' '.join(args)}")
    up = fab(*args)
    cold = fab_output.image_built(up.out)
    if cold:
        note(f"the image cache was cold ({up.seconds:.0f} s with the build); again, warm")
        fab("local.down")
        up = fab(*args)
    return {**timing([up.seconds]), "cold_cache_seconds_first": cold or None}


def retried(action, failures: list[str]):
    """Run ``action``; if it fails, record why and run it once more (a second failure ends the
    benchmark). A failed deploy leaves the old release serving, so trying again is what an
    operator would do; the failure is reported with the figures, never hidden."""
    try:
        return action()
    except BenchFailed as exc:
        note(f"FAILED, trying once more: {exc}")
        failures.append(str(exc))
        return action()


def deploy_runs(source: Source, label: str, runs: int, *extra: str, change: bool) -> dict:
    seconds, switches, failures, releases = [], [], [], []
    for n in range(1, runs + 1):
        if change:
            source.commit_trivial(f"{label} {n}")
        run = retried(lambda: fab("deploy", *extra, source=source), failures)
        note(f"fab deploy {' '.join(extra)} ({label} {n}/{runs}): {run.seconds:.1f} s, "
             f"release {fab_output.release_built(run.out)}")  # fmt: skip
        seconds.append(run.seconds)
        switches += list(fab_output.switch_seconds(run.steps).values())
        releases.append(fab_output.release_built(run.out))
    return {
        **timing(seconds),
        "switch_median": round(median(switches), 1) if switches else None,
        "failed_attempts": failures,
        "releases": releases,
    }


def rollback_runs(source: Source, runs: int, live: str, older: str) -> dict[str, dict]:
    """``runs`` rounds of: a deploy (unchanged tree), then `fab rollback --release` to the
    release it replaced, whose slot the deploy kept warm, then to the one before that, which
    no slot runs (each round's own deploy took that slot), so it is started afresh. The
    targets are named because the default target after a rollback is the release rolled away
    from, which no slot runs either. Each sample says whether the warm slot was reused."""
    samples: dict[str, tuple[list[float], list[float], list[str]]] = {
        "rollback_warm": ([], [], []), "rollback_cold": ([], [], []),
    }  # fmt: skip
    for n in range(1, runs + 1):
        deployed = fab("deploy", source=source)
        new = fab_output.release_built(deployed.out)
        for key, target in (("rollback_warm", live), ("rollback_cold", older)):
            back = fab("rollback", "--release", target, source=source)
            warm = fab_output.reused_warm_slot(back.steps)
            note(f"fab rollback --release {target} ({key} {n}/{runs}): {back.seconds:.1f} s, "
                 f"warm slot {'reused' if warm else 'not reused'}")  # fmt: skip
            seconds, switches, kinds = samples[key]
            seconds.append(back.seconds)
            switches += list(fab_output.switch_seconds(back.steps).values())
            kinds.append("warm" if warm else "started")
        live, older = older, new
    return {
        key: {
            **timing(seconds),
            "switch_median": round(median(switches), 2) if switches else None,
            "switch_runs": switches,
            "slot": kinds,
        }
        for key, (seconds, switches, kinds) in samples.items()
    }


def run(source: Source, runs: int) -> dict:
    result: dict = {"local_up": bring_up()}
    note(f"local.up: {result['local_up']['median']} s")
    first = fab("provision")
    again = fab("provision")
    result["provision_first"] = {
        **timing([first.seconds]),
        "changed": fab_output.provision_changes(first.steps),
    }
    result["provision_again"] = {
        **timing([again.seconds]),
        "changed": fab_output.provision_changes(again.steps),
    }
    note(f"provision: {first.seconds:.1f} s, again {again.seconds:.1f} s "
         f"(changed {result['provision_again']['changed']})")  # fmt: skip
    result["deploy_first"] = deploy_runs(source, "first deploy", 1, change=False)
    result["deploy_code_change"] = deploy_runs(source, "code change", runs, change=True)
    unchanged = deploy_runs(source, "unchanged", max(runs, 2), change=False)
    result["deploy_unchanged"] = unchanged
    older, live = unchanged["releases"][-2:]
    result.update(rollback_runs(source, runs, live, older))
    return result
