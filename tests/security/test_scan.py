"""bin/scan: the allow-list, reading each tool's report, and the scans on real files."""

import hashlib
import shutil
import subprocess

import pytest

from tests.security import scan
from tests.security.scan import AllowEntry, Finding, ScanError

# Fake credentials are assembled at run time, so this file itself holds no literal secret.
FAKE_AWS_KEY = "AKIA" + "QX7RZ2WJ5KD3MNB4"
FAKE_PRIVATE_KEY_HEADER = "-----BEGIN " + "RSA PRIVATE KEY-----"


def entry(tool="bandit", id_="B603", where="deploy/*", reason="argument lists"):
    return AllowEntry(tool, id_, where, reason, ".scan-allowlist:1")


def test_allowlist_lines_become_entries_and_comments_are_skipped():
    text = "# header\n\nbandit B603 deploy/* -- argument lists, no shell\n"
    (parsed,) = scan.parse_allowlist(text)
    assert (parsed.tool, parsed.id, parsed.where) == ("bandit", "B603", "deploy/*")
    assert parsed.reason == "argument lists, no shell"
    assert parsed.source == ".scan-allowlist:3"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bandit B603 deploy/*", "expected '<tool> <id> <where> -- <reason>'"),
        ("bandit B603 deploy/* --   ", "expected '<tool> <id> <where> -- <reason>'"),
        ("bandit B603 -- no where", "expected '<tool> <id> <where> -- <reason>'"),
        ("ruff S101 app/* -- nope", "tool must be one of pip-audit, bandit, got 'ruff'"),
        ("secrets AWS x -- nope", "accept secrets in .secrets.baseline"),
    ],
)
def test_a_bad_allowlist_line_is_an_error_naming_file_and_line(line, message):
    with pytest.raises(ScanError, match=r"^\.scan-allowlist:2: ") as raised:
        scan.parse_allowlist(f"# ok\n{line}\n")
    assert message in str(raised.value)


def test_judge_accepts_only_matching_tool_id_and_place():
    listed = Finding("bandit", "B603", "deploy/inventory.py", "subprocess", 10)
    other_id = Finding("bandit", "B608", "deploy/inventory.py", "sql", 11)
    other_place = Finding("bandit", "B603", "app/tasks.py", "subprocess", 12)
    verdict = scan.judge([listed, other_id, other_place], [entry()], ["bandit"])
    assert verdict.new == [other_id, other_place]
    assert [finding for finding, _ in verdict.allowed] == [listed]
    assert verdict.unused == []


def test_unused_entries_are_reported_only_for_tools_that_ran():
    bandit_entry, audit_entry = entry(), entry("pip-audit", "GHSA-1", "flask==*", "why")
    assert scan.judge([], [bandit_entry, audit_entry], ["bandit"]).unused == [bandit_entry]


def test_pins_are_read_with_normalised_names_and_extras_dropped():
    text = (
        "# pins\n-r other.txt\nFlask==3.1.3\npsycopg[binary]==3.3.9  # why\nzope.interface==7.0\n"
    )
    assert scan.pinned_packages(text) == {
        "flask": "3.1.3",
        "psycopg": "3.3.9",
        "zope-interface": "7.0",
    }


def test_pip_audit_report_gives_findings_and_the_packages_it_skipped():
    report = {
        "dependencies": [
            {"name": "Flask", "version": "0.12", "vulns": [
                {"id": "PYSEC-2019-179", "fix_versions": ["1.0"], "aliases": ["CVE-2019-1010083"]},
            ]},
            {"name": "jinja2", "version": "3.1.6", "vulns": []},
            {"name": "Py_YAML", "skip_reason": "Dependency not found on PyPI"},
        ]
    }  # fmt: skip
    findings, skipped = scan.pip_audit_findings(report)
    assert findings == [
        Finding("pip-audit", "PYSEC-2019-179", "flask==0.12", "fixed in 1.0 (CVE-2019-1010083)")
    ]
    assert skipped == ["py-yaml"]


def test_project_page_audits_the_latest_release_and_refuses_an_older_pin():
    page = {
        "info": {"version": "2.0"},
        "vulnerabilities": [{"id": "GHSA-x", "fixed_in": [], "aliases": []}],
    }
    (latest,) = scan.project_page_findings("demo", "2.0", page)
    assert (latest.id, latest.where, latest.message) == (
        "GHSA-x",
        "demo==2.0",
        "no fixed release yet",
    )
    (older,) = scan.project_page_findings("demo", "1.0", page)
    assert (older.id, older.where) == (scan.UNAUDITED, "demo==1.0")
    assert "not the latest (2.0)" in older.message


def test_bandit_report_gives_relative_paths_and_unparsable_files(tmp_path):
    report = {
        "results": [{"test_id": "B307", "filename": str(tmp_path / "app" / "x.py"),
                     "line_number": 3, "issue_severity": "MEDIUM", "issue_text": "eval"}],
        "errors": [{"filename": "./app/broken.py", "reason": "syntax error"}],
    }  # fmt: skip
    assert scan.bandit_findings(report, tmp_path) == [
        Finding("bandit", "B307", "app/x.py", "medium: eval", 3),
        Finding("bandit", "error", "app/broken.py", "syntax error"),
    ]


def test_summary_counts_each_tool_and_says_failed_on_anything_new():
    new = Finding("secrets", "AWS-Access-Key", "a.py", "not in .secrets.baseline", 2)
    allowed = Finding("bandit", "B603", "deploy/x.py", "subprocess", 1)
    verdict = scan.Verdict([new], [(allowed, entry())], [])
    assert scan.summary_line(verdict, {"secrets": 5, "bandit": 40}, ["secrets", "bandit"]) == (
        "scan: secrets 1 new (5 scanned) | bandit 0 new, 1 allowed (40 scanned) -> FAILED"
    )
    assert scan.finding_line(new).split() == [
        "NEW", "secrets", "AWS-Access-Key", "a.py:2", "not", "in", ".secrets.baseline"
    ]  # fmt: skip


# --- the scans themselves, on real files ---------------------------------------------------------


@pytest.fixture
def repo_copy(tmp_path):
    """A git repository with the project's baseline and allow-list and one clean tracked file."""
    for name in (scan.SECRETS_BASELINE, scan.ALLOWLIST):
        shutil.copy(scan.REPO / name, tmp_path / name)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "clean.py").write_text('"""Nothing to see."""\n\nANSWER = 42\n')
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    return tmp_path


def git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_the_current_tree_has_no_new_secrets():
    findings, scanned = scan.run_secrets(scan.REPO)
    assert findings == []
    assert scanned > 100  # every tracked file, not an empty list


@pytest.mark.parametrize(
    ("content", "line", "kind"),
    [
        (f'"""Config."""\n\nKEY_ID = "{FAKE_AWS_KEY}"\n', 3, "AWS-Access-Key"),
        (f"notes\n\n\n{FAKE_PRIVATE_KEY_HEADER}\nMIIEow\n", 4, "Private-Key"),
    ],
    ids=["aws-key", "private-key"],
)
def test_a_new_secret_in_a_tracked_file_fails_with_file_and_line(
    repo_copy, capsys, content, line, kind
):
    (repo_copy / "app" / "settings.txt").write_text(content)
    git(repo_copy, "add", "app/settings.txt")
    assert scan.main(["--root", str(repo_copy), "secrets"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["NEW", "secrets", kind, f"app/settings.txt:{line}"]
    assert out[-1] == "scan: secrets 1 new (3 scanned) -> FAILED"


def test_an_untracked_file_is_not_scanned_but_committing_it_would_be(repo_copy):
    (repo_copy / "draft.py").write_text(f'KEY = "{FAKE_AWS_KEY}"\n')
    assert scan.run_secrets(repo_copy)[0] == []
    git(repo_copy, "add", "draft.py")
    assert [f.location for f in scan.run_secrets(repo_copy)[0]] == ["draft.py:1"]


def test_bandit_finding_outside_the_allowlist_fails(repo_copy, capsys):
    (repo_copy / "app" / "calc.py").write_text("def calc(text):\n    return eval(text)\n")
    assert scan.main(["--root", str(repo_copy), "bandit"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["NEW", "bandit", "B307", "app/calc.py:2"]


def test_an_inline_nosec_does_not_hide_a_finding(repo_copy):
    # The allow-list, with its reasons, is the only way to accept one.
    (repo_copy / "app" / "calc.py").write_text("def calc(text):\n    return eval(text)  # nosec\n")
    findings, _ = scan.run_bandit(repo_copy)
    assert [(f.id, f.location) for f in findings] == [("B307", "app/calc.py:2")]


def test_pip_audit_without_pypi_fails_loudly(repo_copy, monkeypatch):
    # A proxy on a closed loopback port stands in for an unreachable advisory service.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    (repo_copy / scan.PINNED_REQUIREMENTS).write_text("flask==3.1.3\n")
    with pytest.raises(ScanError, match=r"pip-audit did not produce a report|cannot read PyPI"):
        scan.run_pip_audit(repo_copy)


def test_unknown_tool_is_refused(capsys):
    with pytest.raises(SystemExit):
        scan.main(["secrest"])
    assert (
        "unknown tool 'secrest'; choose from secrets, pip-audit, bandit" in capsys.readouterr().err
    )


def test_benchmark_results_are_not_scanned_for_secrets(repo_copy):
    # bin/bench writes commit hashes there on every run; anywhere else the same line is found.
    # Made at run time, so this file holds no literal that looks like a secret.
    line = f'  "revision": "{hashlib.sha256(b"a commit").hexdigest()[:40]}",\n'
    for name in ("bench/results/latest.json", "bench/revision.json"):
        (repo_copy / name).parent.mkdir(parents=True, exist_ok=True)
        (repo_copy / name).write_text("{\n" + line + "}\n")
        git(repo_copy, "add", name)
    assert [f.where for f in scan.run_secrets(repo_copy)[0]] == ["bench/revision.json"]
