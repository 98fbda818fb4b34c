"""Benchmark 4: a rolling deploy of three web hosts against a deploy of one.

A fresh three-host local droplet (`fab local.up --web-count 3`), provisioned (hosts in
parallel) and given a first release; then code-only deploys of all three, one host after
another as `fab deploy` rolls (web-1 first, alone, as the canary that runs migrations), and of
web-1 alone (`--hosts web-1`).
"""

from __future__ import annotations

from bench import fab_output
from bench.deploy_times import bring_up, deploy_runs
from bench.drive import Source, fab, note
from bench.stats import ratio, timing

WEB_COUNT = 3


def run(source: Source, runs: int) -> dict:
    result: dict = {"web_count": WEB_COUNT, "local_up": bring_up(WEB_COUNT)}
    note(f"local.up --web-count {WEB_COUNT}: {result['local_up']['median']} s")
    first = fab("provision")
    result["provision_first"] = {
        **timing([first.seconds]),
        "changed": fab_output.provision_changes(first.steps),
    }
    note(f"provision ({WEB_COUNT} hosts): {first.seconds:.1f} s")
    result["deploy_first"] = deploy_runs(source, "first deploy, 3 hosts", 1, change=False)
    result["deploy_all"] = deploy_runs(source, "code change, 3 hosts", runs, change=True)
    result["deploy_one"] = deploy_runs(
        source, "code change, web-1", runs, "--hosts", "web-1", change=True
    )
    result["ratio"] = ratio(result["deploy_all"]["median"], result["deploy_one"]["median"])
    return result
