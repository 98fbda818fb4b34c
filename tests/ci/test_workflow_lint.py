"""The users' GitHub workflow, checked by actionlint exactly as .ci/run runs it (with shellcheck on
the `run:` scripts), and its deploy job's guarantees read from the YAML: it runs only on pushes
to main after the whole test suite, behind the `production` environment, one at a time."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW = WORKFLOWS / "infra.yml"
ACTIONLINT = REPO / ".venv" / "bin" / "actionlint"
# .ci/run's own line, read from it so the test and CI cannot drift apart.
CI_LINE = next(
    line.split()
    for line in (REPO / ".ci" / "run").read_text().splitlines()
    if line.startswith(".venv/bin/actionlint")
)
TEST_JOBS = {"lint-and-unit", "local-droplet"}


def actionlint(root: Path) -> subprocess.CompletedProcess:
    """actionlint with .ci/run's flags, in ``root`` (it finds .github/workflows there itself)."""
    return subprocess.run(
        [str(ACTIONLINT), *CI_LINE[1:], "-oneline", "-no-color"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ci_runs_actionlint_with_shellcheck():
    assert CI_LINE[0] == ".venv/bin/actionlint" and "-shellcheck=shellcheck" in CI_LINE
    assert shutil.which("shellcheck"), "bin/setup installs shellcheck; actionlint needs it"


def test_the_repositorys_workflows_pass_actionlint():
    assert list(WORKFLOWS.glob("*.yml")), "no workflow to check"
    result = actionlint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


# Each mistake is one this workflow could plausibly acquire; actionlint must refuse every one.
BREAKAGES = [
    # A job that waits for a job that does not exist never runs.
    ("needs: [lint-and-unit, local-droplet]", "needs: [lint-and-unit, local-droplets]",
     "job-needs"),
    # The mistake this deploy job was first written with: no `runner` context at job level.
    ("    concurrency:\n      group: deploy-production\n",
     "    concurrency:\n      group: deploy-${{ runner.temp }}\n", "expression"),
    # A shell mistake inside a run: script, found through shellcheck.
    ('rm -rf "$RUNNER_TEMP/dropstack"', "rm -rf $RUNNER_TEMP/dropstack/$STAK", "shellcheck"),
    # An unknown event, and a misspelt key.
    ("  pull_request:\n", "  pull-request:\n", "events"),
    ("    timeout-minutes: 30\n", "    timeout-minute: 30\n", "syntax-check"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "kind"), BREAKAGES, ids=[b[2] for b in BREAKAGES])
def test_actionlint_fails_on_a_broken_copy(tmp_path, old, new, kind):
    text = WORKFLOW.read_text()
    assert text.count(old) == 1, f"the workflow no longer contains {old!r}"
    # actionlint looks for .github/workflows at the root of a git repository, as .ci/run's does.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    copy = tmp_path / ".github" / "workflows" / WORKFLOW.name
    copy.parent.mkdir(parents=True)
    copy.write_text(text.replace(old, new))
    result = actionlint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"[{kind}]" in result.stdout, result.stdout


# --- the deploy job ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def deploy(workflow) -> dict:
    return workflow["jobs"]["deploy"]


def test_deploy_needs_every_test_job(workflow, deploy):
    needs = deploy["needs"]
    assert set([needs] if isinstance(needs, str) else needs) == TEST_JOBS
    # ...and those are exactly the jobs that test: nothing else, nothing left out.
    assert set(workflow["jobs"]) - {"deploy", "pulumi-preview"} == TEST_JOBS


def test_deploy_runs_only_on_a_push_to_main(workflow, deploy):
    condition = deploy["if"]
    assert "github.event_name == 'push'" in condition
    assert "github.ref == 'refs/heads/main'" in condition
    assert " || " not in condition, "an alternative would let the job run elsewhere"
    triggers = workflow.get("on", workflow.get(True))
    assert triggers["push"]["branches"] == ["main"]


def test_deploy_waits_for_the_production_environment(deploy):
    environment = deploy["environment"]
    name = environment["name"] if isinstance(environment, dict) else environment
    assert name == "production"


def test_deploys_never_overlap_nor_get_cancelled(workflow, deploy):
    assert deploy["concurrency"]["group"] == "deploy-production"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    # The workflow's own group cancels older runs of a pull request only: on main every run has
    # a group of its own (its run id), so no push cancels a run that is deploying.
    group = workflow["concurrency"]["group"]
    assert re.fullmatch(
        r"infra-\$\{\{ github\.event_name == 'pull_request' && github\.ref"
        r" \|\| github\.run_id \}\}",
        group,
    )


def test_a_failed_deploy_fails_the_job(deploy):
    (step,) = [s for s in deploy["steps"] if s.get("name") == "fab deploy"]
    assert ".venv/bin/fab deploy" in step["run"]
    assert "continue-on-error" not in step and "continue-on-error" not in deploy
    assert "if" not in step, "the deploy runs only when everything before it succeeded"
    assert "|| true" not in step["run"]


def test_the_key_and_inventory_are_private_and_the_hosts_pinned(deploy):
    script = "\n".join(step.get("run", "") for step in deploy["steps"])
    assert "(umask 077 && printf '%s\\n' \"$DEPLOY_SSH_KEY\"" in script
    assert "(umask 077 && pulumi stack output" in script
    # An explicit `shell: bash` is bash -eo pipefail: pulumi failing inside the pipe fails the step.
    assert deploy["defaults"]["run"]["shell"] == "bash"
    assert "'.ssh_key_path = $key'" in script, "the inventory must name the runner's key file"
    assert 'DROPSTACK_KNOWN_HOSTS=$RUNNER_TEMP/dropstack/known_hosts" >> "$GITHUB_ENV"' in script
    cleanup = deploy["steps"][-1]
    assert cleanup["if"] == "always()" and 'rm -rf "$RUNNER_TEMP/dropstack"' in cleanup["run"]
    # The deploy reads outputs; it has no business with the cloud API token.
    assert "DIGITALOCEAN_TOKEN" not in yaml.safe_dump(deploy)
