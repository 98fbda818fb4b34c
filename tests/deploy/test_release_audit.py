"""The audit log's records: written as JSON lines, read back leniently, shown as a table."""

from datetime import UTC, datetime

from deploy.release.audit import parse_lines, record, render

NOW = datetime(2026, 11, 21, 15, 0, 0, tzinfo=UTC)


def test_record_is_one_json_line_with_every_field():
    line = record("ana@laptop", "deploy", "20261121150000-0123456", "0123456789", "ok", 12.34,
                  "slot green", now=NOW).to_line()  # fmt: skip
    assert "\n" not in line
    for fragment in (
        '"action": "deploy"', '"duration": 12.3', '"result": "ok"', '"user": "ana@laptop"',
        '"timestamp": "2026-11-21T15:00:00+00:00"', '"revision": "0123456789"',
    ):  # fmt: skip
        assert fragment in line


def test_lines_that_are_not_records_are_skipped():
    good = record("a@b", "rollback", "R", "abc", "failed", 1.0, now=NOW).to_line()
    records = parse_lines(f'garbage\n{good}\n{{"half": 1}}\n')
    assert [r.action for r in records] == ["rollback"]


def test_table_aligns_columns_and_keeps_the_detail_last():
    records = parse_lines(
        "\n".join(
            record(u, a, r, "0123456789", res, d, detail, now=NOW).to_line()
            for u, a, r, res, d, detail in [
                ("ana@laptop", "deploy", "20261121150000-0123456", "ok", 9.0, "slot green"),
                ("bo@ci", "rollback", "20261120150000-abcdef0", "failed", 3.2, "health gate"),
            ]
        )
    )
    lines = render(records)
    assert lines[0].startswith("2026-11-21T15:00:00Z  deploy    20261121150000-0123456  0123456")
    assert lines[1].split()[1:5] == ["rollback", "20261120150000-abcdef0", "0123456", "failed"]
    assert lines[1].endswith("bo@ci       health gate")


def test_empty_log_says_so():
    assert render([]) == ["(no deploys recorded)"]
