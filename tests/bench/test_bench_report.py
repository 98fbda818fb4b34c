"""bench.report: the result document's shape and the table built from it."""

import json

from bench.report import SECTIONS, document, merge, render_markdown, render_text, table_rows


def figures(requests, failed, p50, p99, rps=100.0):
    return {"requests": requests, "failed": failed, "requests_per_second": rps,
            "latency_ms": {"p50": p50, "p99": p99}}  # fmt: skip


SECTIONS_MEASURED = {
    "deploy_timings": {
        "local_up": {"runs": [14.2], "median": 14.2},
        "deploy_code_change": {"runs": [9.0, 8.1, 8.5], "median": 8.5},
        "rollback": {"runs": [3.5], "median": 3.5, "failed_attempts": ["start slot green: 219"]},
    },
    "zero_downtime": {
        "dropstack_deploy": {
            "seconds": 12.3,
            "total": {"requests": 3000, "failed": 2},
            "clients": {
                "keepalive": figures(1500, 2, 2.1, 35.0),
                "close": figures(1500, 0, 3.0, 9.4),
            },
        },
        "gunicorn_reload": {
            "seconds": 7.5,
            "reload_seconds": 2.1,
            "total": {"requests": 2500, "failed": 0},
            "during": {"requests": 1900, "failed": 0, "no_response": 0, "p99_ms": 1850.0},
            "clients": {
                "keepalive": figures(1250, 0, 3.0, 900.0),
                "close": figures(1250, 0, 3.1, 950.0),
            },
        },
        "naive_restart": {
            "seconds": 6.0,
            "during": {"requests": 1500, "failed": 900, "no_response": 1500, "p99_ms": None},
            "total": {"requests": 2000, "failed": 900},
            "clients": {
                "keepalive": figures(1000, 450, 1.0, 5.0),
                "close": figures(1000, 450, 1.2, 6.1),
            },
        },
    },
    "throughput": {
        "endpoints": {
            "/healthz": {
                "nginx": figures(20000, 0, 5, 20, rps=2000.0),
                "direct": figures(22000, 0, 5, 18, rps=2200.0),
                "ratio": 0.909,
            }
        }
    },
    "multi_host": {"error": "local.up --web-count 3 exited 1: no space"},
}


def test_document_has_every_section_in_order_and_marks_the_missing():
    doc = document("2026-01-01T00:00:00Z", {"cpus": 2}, "abc123", SECTIONS_MEASURED)
    assert list(doc)[4:] == list(SECTIONS)
    assert doc["schema"] == 1 and doc["revision"] == "abc123"
    only = document("t", {}, "r", {"throughput": {"endpoints": {}}})
    assert only["deploy_timings"] == {"error": "not run"}
    json.dumps(doc)  # plain data only


def test_table_rows_say_what_was_measured_and_what_was_not():
    rows = table_rows(document("t", {}, "r", SECTIONS_MEASURED))
    by_measure = {measure: value for _, measure, value in rows}
    assert by_measure["fab local.up (warm image cache)"] == "14.2 s"
    assert by_measure["fab deploy, code-only change"] == "8.5 s (median of 3: 9.0, 8.1, 8.5)"
    assert by_measure["fab rollback"] == "3.5 s (1 failed attempt, retried)"
    assert by_measure["fab deploy (blue/green): failed / sent"] == (
        "2 / 3000 (keep-alive 2/1500, conn/request 0/1500)"
    )
    assert by_measure["fab deploy (blue/green): p50 / p99"] == (
        "keep-alive 2.1 ms / 35 ms; conn/request 3.0 ms / 9.4 ms"
    )
    assert by_measure["naive: stop, reinstall, start: failed / sent"].startswith("900 / 2000")
    assert by_measure["Gunicorn reload (HUP), in place: took"] == "7.5 s (the reload itself 2.1 s)"
    assert by_measure["Gunicorn reload (HUP), in place: while it ran: failed / sent, p99"] == (
        "0 / 1900, p99 1850 ms"
    )
    assert by_measure["naive: stop, reinstall, start: while it ran: failed / sent, p99"] == (
        "900 / 1500, p99 no response"
    )
    measures = [measure for _, measure, _ in rows]
    assert (
        measures.index("fab deploy (blue/green): took")
        < measures.index("Gunicorn reload (HUP), in place: failed / sent")
        < measures.index("naive: stop, reinstall, start: failed / sent")
    )
    assert by_measure["GET /healthz: Nginx / direct (inside the host)"] == "0.91 (target >= 0.85)"
    assert by_measure["GET /healthz: Gunicorn direct, inside the host"] == "2200 req/s, p99 18 ms"
    assert ("multi host", "not measured", "local.up --web-count 3 exited 1: no space") in rows


def test_renderings_hold_every_row():
    rows = [("a", "short", "1 s"), ("bench", "a longer measure", "2 | 3")]
    text = render_text(rows).splitlines()
    assert text[0] == "a      short             1 s"
    assert text[1] == "bench  a longer measure  2 | 3"
    markdown = render_markdown(rows).splitlines()
    assert markdown[:2] == ["| benchmark | measure | result |", "|---|---|---|"]
    assert markdown[3] == "| bench | a longer measure | 2 / 3 |"
    assert render_text([]) == ""


def test_a_switch_method_that_failed_says_why_and_the_others_still_show():
    data = {**SECTIONS_MEASURED["zero_downtime"], "gunicorn_reload": {"error": "reload refused"}}
    rows = table_rows(document("t", {}, "r", {"zero_downtime": data}))
    assert ("zero downtime", "Gunicorn reload (HUP), in place", "not measured: reload refused") in (
        rows
    )
    assert any(m == "fab deploy (blue/green): took" for _, m, _ in rows)


def test_multi_host_rows_give_each_count_each_mode_and_the_cost_per_host():
    run = {"runs": [6.0, 6.2, 6.1], "median": 6.1}
    data = {
        "stacks": {
            "1": {"reused_stack": True, "rolling": {"runs": [4.1], "median": 4.1}, "seconds": 5},
            "3": {"local_up": {"runs": [11.0], "median": 11.0}, "rolling": run, "batch": run,
                  "seconds": 95},
            "5": {"error": "local.up --web-count 5 exited 1: no memory", "seconds": 3},
        },
        "per_extra_host": {"rolling": 3.02, "batch": None},
    }  # fmt: skip
    rows = table_rows(document("t", {}, "r", {"multi_host": data}))
    by_measure = {m: v for section, m, v in rows if section == "multi-host"}
    assert by_measure["1 host: stack"] == "reused from the benchmarks before"
    assert by_measure["1 host: fab deploy, code-only (one host at a time)"] == "4.1 s"
    assert by_measure["3 hosts: fab local.up --web-count 3"] == "11.0 s"
    assert by_measure["3 hosts: fab deploy --batch 2, code-only (--batch N-1)"] == (
        "6.1 s (median of 3: 6.0, 6.2, 6.1)"
    )
    assert by_measure["3 hosts: this stack took"] == "95.0 s"
    assert by_measure["5 hosts: not measured"] == "local.up --web-count 5 exited 1: no memory"
    assert by_measure["each further host, one host at a time"] == "+3.02 s"
    assert by_measure["each further host, --batch N-1"] == (
        "not enough host counts (target <= 1 s)"
    )


def test_multi_host_rows_still_read_results_from_before_the_curve():
    data = {"web_count": 3, "deploy_all": {"runs": [10.4], "median": 10.4},
            "deploy_one": {"runs": [4.5], "median": 4.5}, "ratio": 2.31}  # fmt: skip
    rows = table_rows(document("t", {}, "r", {"multi_host": data}))
    assert ("multi-host", "3 hosts / 1 host", "2.31x") in rows


def test_rollback_rows_give_each_kind_and_its_switch_steps():
    timings = {
        "rollback_warm": {"runs": [0.9, 1.0, 0.8], "median": 0.9, "switch_median": 0.12,
                          "switch_runs": [0.12, 0.15, 0.1], "slot": ["warm"] * 3},
        "rollback_cold": {"runs": [1.4], "median": 1.4, "switch_median": 0.9,
                          "switch_runs": [0.9], "slot": ["started"]},
    }  # fmt: skip
    rows = table_rows(document("t", {}, "r", {"deploy_timings": timings}))
    by_measure = {measure: value for _, measure, value in rows}
    assert by_measure["fab rollback into the warm slot"] == "0.9 s (median of 3: 0.9, 1.0, 0.8)"
    assert by_measure["fab rollback into the warm slot: its switch steps"] == (
        "0.12 s (median of 3: 0.12, 0.15, 0.10)"
    )
    assert by_measure["fab rollback, its slot started afresh"] == "1.4 s"


def test_a_run_of_some_sections_keeps_the_others_and_says_which_run_measured_what():
    first = {**document("t1", {}, "r1", SECTIONS_MEASURED), "total_seconds": 700}
    again = {"deploy_timings": {"rollback": {"runs": [1.0], "median": 1.0}}}
    second = {**document("t2", {}, "r2", again), "total_seconds": 90}
    merged = merge(first, second, ["deploy_timings"])
    assert merged["deploy_timings"] == again["deploy_timings"]
    assert merged["zero_downtime"] == first["zero_downtime"]
    assert merged["revision"] == "r2"
    # The first run measured every section but multi_host (its error) and renewal (not run).
    assert merged["runs"] == [
        {"measured_at": "t1", "revision": "r1", "total_seconds": 700,
         "sections": ["zero_downtime", "throughput"]},
        {"measured_at": "t2", "revision": "r2", "total_seconds": 90,
         "sections": ["deploy_timings"]},
    ]  # fmt: skip
    third = {**document("t3", {}, "r3", {"throughput": {"endpoints": {}}}), "total_seconds": 60}
    assert [r["sections"] for r in merge(merged, third, ["throughput"])["runs"]] == [
        ["zero_downtime"], ["deploy_timings"], ["throughput"],
    ]  # fmt: skip
    assert merge({**first, "schema": 0}, second, ["deploy_timings"]) == second
