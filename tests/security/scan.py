"""bin/scan: secrets, vulnerable dependencies and risky code, with one committed allow-list.

    python -m tests.security.scan [--root DIR] [secrets] [pip-audit] [bandit]

Three scanners, each reporting *findings* (a tool, a finding id, where, a message):

- **secrets**: detect-secrets over every tracked file (``git ls-files``), compared with the
  committed ``.secrets.baseline``. A secret the baseline does not know is a finding at its file
  and line. Known false positives (test fixtures, placeholders) live in the baseline.
- **pip-audit**: the exact pins in ``constraints.txt`` (the whole installed tree) against the
  advisories PyPI publishes. A release PyPI could not answer for is a finding too ("unaudited"):
  a scan that could not look must never read as a clean scan.
- **bandit**: the shipped and operator-run code (app/, deploy/, infra/, bench/), with
  ``--ignore-nosec`` so that the allow-list below is the only way to accept a finding.

A pip-audit or bandit finding fails the run unless ``.scan-allowlist`` lists it with a reason.
Each line there reads ``<tool> <id> <where> -- <reason>``; ``<where>`` is an fnmatch pattern
over a path (bandit) or ``name==version`` (pip-audit). Entries that match nothing are reported,
so the list shrinks when the code does.

Why the logic lives here: the repository's top level is fixed, bin/ holds entry points only,
app/ ships to hosts and deploy/ is the release code. tests/ already holds the project's own
tooling that tests and CI run (tests/postgres_cluster.py), so the scanner sits beside its tests.
The parsing and matching are pure functions; the ``run_*`` functions only call the tools.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALLOWLIST = ".scan-allowlist"
SECRETS_BASELINE = ".secrets.baseline"
# Never scanned for secrets: machine-written benchmark results (bin/bench), which hold commit
# hashes (the revision measured) that detect-secrets takes for hex secrets. Every bench run
# rewrites them, so baselining them meant a baseline update per run; nothing secret is written
# there (bench/report.py: timings, counts, hostnames of the local droplet, git revisions).
SECRETS_UNSCANNED = ("bench/results/",)
PINNED_REQUIREMENTS = "constraints.txt"
BANDIT_TARGETS = ("app", "deploy", "infra", "bench")
TOOLS = ("secrets", "pip-audit", "bandit")
# Secrets are accepted in .secrets.baseline (detect-secrets' own audited format), not here.
ALLOWLISTED_TOOLS = ("pip-audit", "bandit")
# What pip-audit reports when PyPI's per-release JSON endpoint has no answer for a pin.
UNAUDITED = "unaudited"
PYPI_PROJECT_URL = "https://pypi.org/pypi/{name}/json"
PYPI_TIMEOUT_SECONDS = 20
ALLOWLIST_LINE = re.compile(r"^(?P<tool>\S+)\s+(?P<id>\S+)\s+(?P<where>\S+)\s+--\s+(?P<reason>.+)$")


class ScanError(RuntimeError):
    """A scanner could not run or could not reach its data; the run must fail, loudly."""


@dataclass(frozen=True)
class Finding:
    """One thing a scanner reported."""

    tool: str
    id: str
    where: str  # what allow-list patterns match: a path, or name==version
    message: str
    line: int | None = None

    @property
    def location(self) -> str:
        return f"{self.where}:{self.line}" if self.line else self.where


@dataclass(frozen=True)
class AllowEntry:
    """One accepted finding (or family of findings), with why it is acceptable."""

    tool: str
    id: str
    where: str
    reason: str
    source: str  # file:line, for reporting entries that no longer match anything

    def matches(self, finding: Finding) -> bool:
        return (
            self.tool == finding.tool
            and self.id == finding.id
            and fnmatch.fnmatchcase(finding.where, self.where)
        )


# --- the allow-list: pure ---------------------------------------------------------------------


def parse_allowlist(text: str, source: str = ALLOWLIST) -> list[AllowEntry]:
    """The entries of an allow-list file; ``ScanError`` naming the line on the first bad one."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        match = ALLOWLIST_LINE.match(line)
        if not match:
            raise ScanError(f"{where}: expected '<tool> <id> <where> -- <reason>', got {line!r}")
        tool = match["tool"]
        if tool not in ALLOWLISTED_TOOLS:
            allowed = ", ".join(ALLOWLISTED_TOOLS)
            hint = " (accept secrets in .secrets.baseline)" if tool == "secrets" else ""
            raise ScanError(f"{where}: tool must be one of {allowed}, got {tool!r}{hint}")
        entries.append(
            AllowEntry(tool, match["id"], match["where"], match["reason"].strip(), where)
        )
    return entries


@dataclass(frozen=True)
class Verdict:
    """Findings split by the allow-list, and the entries nothing matched."""

    new: list[Finding]
    allowed: list[tuple[Finding, AllowEntry]]
    unused: list[AllowEntry]


def judge(
    findings: Iterable[Finding], entries: Sequence[AllowEntry], tools: Iterable[str]
) -> Verdict:
    """Which findings the allow-list accepts; unused entries only for the tools that ran."""
    new, allowed, used = [], [], set()
    for finding in findings:
        entry = next((e for e in entries if e.matches(finding)), None)
        if entry is None:
            new.append(finding)
        else:
            allowed.append((finding, entry))
            used.add(entry)
    ran = set(tools)
    unused = [e for e in entries if e not in used and e.tool in ran]
    return Verdict(new, allowed, unused)


# --- reading each tool's output: pure ---------------------------------------------------------


def normalized_name(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_packages(text: str) -> dict[str, str]:
    """``name==version`` pins from a requirements/constraints file, by normalised name."""
    pins = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", line)
        if match:
            pins[normalized_name(match[1])] = match[2]
    return pins


def pip_audit_findings(report: dict) -> tuple[list[Finding], list[str]]:
    """Vulnerabilities from pip-audit's JSON report, and the packages it could not audit."""
    findings, skipped = [], []
    for dependency in report.get("dependencies", []):
        name = normalized_name(dependency["name"])
        if "skip_reason" in dependency:
            skipped.append(name)
            continue
        findings.extend(
            vulnerability_finding(name, dependency["version"], vuln) for vuln in dependency["vulns"]
        )
    return findings, skipped


def vulnerability_finding(name: str, version: str, vuln: dict) -> Finding:
    """One advisory against one pin. pip-audit says ``fix_versions``, PyPI says ``fixed_in``."""
    fixed = vuln.get("fix_versions") or vuln.get("fixed_in") or []
    aliases = ", ".join(vuln.get("aliases") or [])
    fix = f"fixed in {', '.join(fixed)}" if fixed else "no fixed release yet"
    return Finding(
        "pip-audit",
        vuln["id"],
        f"{name}=={version}",
        f"{fix}{f' ({aliases})' if aliases else ''}",
    )


def project_page_findings(name: str, version: str, project: dict) -> list[Finding]:
    """Advisories for ``version`` from PyPI's project page, which describes the latest release.

    The page's ``vulnerabilities`` are the latest release's only, so they prove nothing about an
    older pin: that pin is reported as unaudited rather than passed.
    """
    latest = project["info"]["version"]
    if latest != version:
        return [
            Finding(
                "pip-audit",
                UNAUDITED,
                f"{name}=={version}",
                f"PyPI has no per-release advisories for it and it is not the latest ({latest})",
            )
        ]
    return [vulnerability_finding(name, version, vuln) for vuln in project["vulnerabilities"]]


def bandit_findings(report: dict, root: Path) -> list[Finding]:
    """Issues and unparsable files from bandit's JSON report, with repository-relative paths."""
    findings = [
        Finding(
            "bandit",
            result["test_id"],
            relative(result["filename"], root),
            f"{result['issue_severity'].lower()}: {result['issue_text']}",
            result["line_number"],
        )
        for result in report.get("results", [])
    ]
    # A file bandit could not parse was not scanned at all: that is a finding, not a pass.
    findings += [
        Finding("bandit", "error", relative(error["filename"], root), error["reason"])
        for error in report.get("errors", [])
    ]
    return findings


def relative(path: str, root: Path) -> str:
    candidate = Path(path)
    if candidate.is_absolute():
        candidate = candidate.relative_to(root)
    return candidate.as_posix().removeprefix("./")


def finding_line(finding: Finding, entry: AllowEntry | None = None) -> str:
    """The one line printed for a finding."""
    if entry is None:
        return f"NEW      {finding.tool:9} {finding.id:14} {finding.location}  {finding.message}"
    return f"allowed  {finding.tool:9} {finding.id:14} {finding.location}  ({entry.reason})"


def summary_line(
    verdict: Verdict, counts: dict[str, int], tools: Sequence[str], strict: bool = False
) -> str:
    """``scan: secrets 0 new | pip-audit 0 new, 3 allowed, 2 warnings | ... -> OK``: unaudited
    pins are warnings unless ``strict``, and only what fails the run makes it FAILED."""
    parts = []
    for tool in tools:
        found = [f for f in verdict.new if f.tool == tool]
        warnings = [f for f in found if f.id == UNAUDITED and not strict]
        allowed = sum(1 for f, _ in verdict.allowed if f.tool == tool)
        text = f"{tool} {len(found) - len(warnings)} new"
        if allowed:
            text += f", {allowed} allowed"
        if warnings:
            text += f", {len(warnings)} warnings"
        parts.append(f"{text} ({counts.get(tool, 0)} scanned)")
    failing = [f for f in verdict.new if strict or f.id != UNAUDITED]
    outcome = "FAILED" if failing else "OK"
    return f"scan: {' | '.join(parts)} -> {outcome}"


# --- running the tools ------------------------------------------------------------------------


def tracked_files(root: Path) -> list[str]:
    """Every file git tracks, minus the baseline (its hashes look like secrets to a scanner)
    and the benchmark results (``SECRETS_UNSCANNED``)."""
    output = run(["git", "-C", str(root), "ls-files", "-z"]).stdout
    return [
        name
        for name in output.split("\0")
        if name and name != SECRETS_BASELINE and not name.startswith(SECRETS_UNSCANNED)
    ]


def run_secrets(root: Path) -> tuple[list[Finding], int]:
    """New secrets in tracked files: detect-secrets with the baseline's plugins and filters."""
    from detect_secrets import SecretsCollection
    from detect_secrets.core import baseline

    baseline_path = root / SECRETS_BASELINE
    if not baseline_path.is_file():
        raise ScanError(f"{SECRETS_BASELINE} is missing: create it with bin/scan --update-baseline")
    known = baseline.load(baseline.load_from_file(str(baseline_path)), str(baseline_path))
    files = [name for name in tracked_files(root) if (root / name).is_file()]
    found = SecretsCollection(root=str(root))
    found.scan_files(*files)
    # Compared by (file, type, hash), as detect-secrets-hook does, so a baselined secret that
    # moved to another line is still known. (The collection's own subtraction also compares
    # the absolute path a scan under root= records, which never equals the baseline's.)
    accepted = {(name, secret.type, secret.secret_hash) for name, secret in known}
    findings = [
        Finding(
            "secrets",
            secret.type.replace(" ", "-"),
            name,
            "not in .secrets.baseline",
            secret.line_number,
        )
        for name, secret in found
        if (name, secret.type, secret.secret_hash) not in accepted
    ]
    return sorted(findings, key=lambda f: (f.where, f.line or 0)), len(files)


def update_secrets_baseline(root: Path) -> None:
    """Rewrite the baseline from the tracked files, keeping the audit marks already in it."""
    run(
        [
            sys.executable,
            "-m",
            "detect_secrets",
            "scan",
            "--baseline",
            SECRETS_BASELINE,
            *tracked_files(root),
        ],
        cwd=root,
    )


def run_pip_audit(root: Path) -> tuple[list[Finding], int]:
    """Advisories against every pin in constraints.txt, from PyPI."""
    requirements = root / PINNED_REQUIREMENTS
    pins = pinned_packages(requirements.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "pip-audit.json"
        # --no-deps --disable-pip: the file already pins the whole tree, so nothing is resolved
        # or installed; pip-audit only asks PyPI about each exact release.
        command = [
            sys.executable,
            "-m",
            "pip_audit",
            "--requirement",
            str(requirements),
            "--no-deps",
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--format",
            "json",
            "--output",
            str(output),
        ]
        result = run(command, check=False)
        # Exit 1 with a report means "vulnerabilities found"; no report means it failed to look.
        if result.returncode not in (0, 1) or not output.is_file():
            raise ScanError(f"pip-audit did not produce a report: {last_line(result.stderr)}")
        findings, skipped = pip_audit_findings(json.loads(output.read_text()))
    # Some PyPI front ends answer only the project page, not /pypi/NAME/VERSION/json; ask that.
    for name in skipped:
        findings += project_page_findings(name, pins[name], pypi_project(name))
    return findings, len(pins)


def pypi_project(name: str) -> dict:
    """PyPI's JSON page for a project; ``ScanError`` when PyPI cannot be reached."""
    url = PYPI_PROJECT_URL.format(name=name)
    try:
        with urllib.request.urlopen(url, timeout=PYPI_TIMEOUT_SECONDS) as response:  # noqa: S310 (a fixed https URL)
            return json.load(response)
    except (urllib.error.URLError, TimeoutError, ValueError) as error:
        raise ScanError(f"cannot read PyPI's advisories for {name} ({url}): {error}") from None


def run_bandit(root: Path) -> tuple[list[Finding], int]:
    """Bandit over the code that ships or that operators run; tests are not scanned."""
    targets = [target for target in BANDIT_TARGETS if (root / target).is_dir()]
    command = [
        sys.executable,
        "-m",
        "bandit",
        "--recursive",
        "--ignore-nosec",
        "--quiet",
        "--format",
        "json",
        *targets,
    ]
    result = run(command, cwd=root, check=False)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise ScanError(f"bandit did not produce a report: {last_line(result.stderr)}") from None
    scanned = report.get("metrics", {}).get("_totals", {}).get("loc", 0)
    return bandit_findings(report, root), scanned


RUNNERS = {"secrets": run_secrets, "pip-audit": run_pip_audit, "bandit": run_bandit}


def run(command: list[str], cwd: Path | None = None, check: bool = True):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise ScanError(f"{' '.join(command[:3])} failed: {last_line(result.stderr)}")
    return result


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def scan(root: Path, tools: Sequence[str], out=None, strict: bool = False) -> int:
    """Run ``tools``, print one line per finding and a summary; 1 when anything is new."""
    out = out or sys.stdout
    entries = parse_allowlist((root / ALLOWLIST).read_text(), ALLOWLIST)
    findings, counts = [], {}
    for tool in tools:
        tool_findings, counts[tool] = RUNNERS[tool](root)
        findings += tool_findings
    verdict = judge(findings, entries, tools)
    for finding in verdict.new:
        line = finding_line(finding)
        if finding.id == UNAUDITED and not strict:
            line = line.replace("NEW     ", "WARNING ", 1)
        print(line, file=out)
    for finding, entry in verdict.allowed:
        print(finding_line(finding, entry), file=out)
    for entry in verdict.unused:
        print(
            f"unused   {entry.source}: {entry.tool} {entry.id} {entry.where} matches nothing",
            file=out,
        )
    print(summary_line(verdict, counts, tools, strict), file=out)
    # A pin PyPI could not give advisories for is a gap in the audit, not a known vulnerability:
    # failing on it would fail every CI run the day any of ~90 pinned packages has a release.
    # It is printed as a warning unless --strict (where PyPI answers per release, use it).
    failing = [f for f in verdict.new if strict or f.id != UNAUDITED]
    return 1 if failing else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/scan", description=__doc__.splitlines()[0])
    parser.add_argument("tools", nargs="*", metavar="TOOL", help=f"any of {', '.join(TOOLS)}")
    parser.add_argument("--root", type=Path, default=REPO, help="the repository to scan")
    parser.add_argument(
        "--update-baseline",
        action="store_true",
        help="rewrite .secrets.baseline from the tracked files, then scan",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on pins PyPI gave no advisories for (unaudited), not only on known ones",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tools) - set(TOOLS))
    if unknown:
        parser.error(f"unknown tool {unknown[0]!r}; choose from {', '.join(TOOLS)}")
    tools = [tool for tool in TOOLS if tool in (args.tools or TOOLS)]
    try:
        if args.update_baseline:
            update_secrets_baseline(args.root)
        return scan(args.root.resolve(), tools, strict=args.strict)
    except ScanError as error:
        print(f"scan: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
