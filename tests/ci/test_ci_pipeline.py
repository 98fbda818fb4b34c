"""The CI entry points: .ci/run runs the README's test command, the users' workflow is sound
and runs only commands docs/ci.md documents."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "infra.yml"
CI_DOCS = REPO / "docs" / "ci.md"
# Commands docs/ci.md documents; a workflow step may run nothing else.
DOCUMENTED = (
    "sudo bin/setup",
    "sudo bin/test",
    "sudo --preserve-env=XDG_CACHE_HOME bin/test",
    ".venv/bin/ruff check .",
    ".venv/bin/ruff format --check .",
    'sudo .venv/bin/python -m pytest -m "not host" --junitxml=reports/unit.xml',
    'pulumi login "$PULUMI_BACKEND_URL"',
    'pulumi preview --stack "$STACK" --policy-pack infra/policy --diff',
    ".venv/bin/mkdocs build --strict --site-dir build/site",
    "bin/scan",
    "echo ",
    # The deploy job (docs/ci.md, "Continuous delivery"): the key and the pinned host keys from
    # the secrets, the inventory from the stack, `fab deploy`, then the secrets removed.
    'install -d -m 700 "$RUNNER_TEMP/dropstack"',
    '(umask 077 && printf \'%s\\n\' "$DEPLOY_SSH_KEY" > "$RUNNER_TEMP/dropstack/id_deploy")',
    'printf \'%s\\n\' "$DEPLOY_KNOWN_HOSTS" > "$RUNNER_TEMP/dropstack/known_hosts"',
    'echo "DROPSTACK_KNOWN_HOSTS=$RUNNER_TEMP/dropstack/known_hosts" >> "$GITHUB_ENV"',
    '(umask 077 && pulumi stack output --stack "$STACK" --json --show-secrets \\',
    "  | jq --arg key \"$RUNNER_TEMP/dropstack/id_deploy\" '.ssh_key_path = $key' \\",
    '  > "$RUNNER_TEMP/dropstack/inventory.json")',
    'echo "url=$(jq -r .url "$RUNNER_TEMP/dropstack/inventory.json")" >> "$GITHUB_OUTPUT"',
    '.venv/bin/fab deploy --inventory "$RUNNER_TEMP/dropstack/inventory.json"',
    '.venv/bin/fab status --inventory "$RUNNER_TEMP/dropstack/inventory.json"',
    'rm -rf "$RUNNER_TEMP/dropstack"',
)


def readme_test_command() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^(bin/test)\s+#", readme, flags=re.M)
    assert match, "README.md must show the test command as `bin/test  # ...`"
    return match.group(1)


def test_ci_runs_exactly_the_readme_test_command():
    lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert readme_test_command() in lines


def test_workflow_is_valid_and_has_its_four_jobs():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    # YAML reads the bare key `on` as True; GitHub reads it as the trigger list.
    assert workflow.get("on", workflow.get(True)), "workflow has no trigger"
    jobs = workflow["jobs"]
    assert set(jobs) == {"lint-and-unit", "local-droplet", "pulumi-preview", "deploy"}
    assert jobs["local-droplet"]["needs"] == "lint-and-unit"
    # Continuous delivery only after the tests, behind a reviewed environment
    # (tests/ci/test_workflow_lint.py checks the deploy job in detail).
    assert set(jobs["deploy"]["needs"]) == {"lint-and-unit", "local-droplet"}
    assert jobs["deploy"]["environment"]["name"] == "production"
    for name, job in jobs.items():
        assert job["runs-on"], name
        assert job["timeout-minutes"] <= 45, name
        for step in job["steps"]:
            assert "run" in step or "uses" in step, f"{name}: step without run/uses: {step}"


def test_workflow_runs_only_documented_commands():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    documented = CI_DOCS.read_text()
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            for command in step.get("run", "").strip().splitlines():
                assert command.startswith(DOCUMENTED), f"{name}: undocumented command {command!r}"
                if not command.startswith("echo "):
                    unprivileged = re.sub(r"^sudo (--\S+ )?", "", command)
                    head = " ".join(unprivileged.split()[:2])
                    assert head in documented, f"{name}: docs/ci.md does not document {command!r}"
