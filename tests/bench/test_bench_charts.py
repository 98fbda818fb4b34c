"""bench.charts: what each figure plots is the data it was given (read back from the Figure's
lines and patches, not its pixels), and the PNGs are written at their stated size. The load
figures are synthetic (tests/bench/synthetic_load.py)."""

import json
import math
import struct

import pytest

from bench.charts import (
    DPI,
    METHOD_ORDER,
    PANELS,
    draw,
    figure_hosts,
    figure_switches,
    host_series,
    main,
    save,
    switch_timelines,
)
from bench.timeline import Timeline, build
from tests.bench.synthetic_load import START, steady_requests


def synthetic_timeline(outage=None, switch=(START + 4.5, START + 5.5)) -> Timeline:
    requests = steady_requests(10, 100, outage=outage)
    return build(requests, (START + 4, START + 6), (START, START + 10), switch=switch)


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def same(plotted, expected):
    """Equal, with None (nothing answered) plotted as NaN."""
    assert len(plotted) == len(expected)
    for got, want in zip(plotted, expected, strict=True):
        assert (math.isnan(got) and want is None) or got == want


def test_switch_figure_plots_each_methods_series_with_its_windows_shaded():
    timelines = {
        "naive": synthetic_timeline(outage=(5.0, 6.0), switch=None),
        "blue/green": synthetic_timeline(),
    }
    naive = timelines["naive"].to_json()  # a first bucket in which nothing answered
    timelines["naive"] = Timeline.from_json({**naive, "p99_ms": [None, *naive["p99_ms"][1:]]})
    fig = figure_switches(timelines)
    axes = fig.get_axes()
    assert len(axes) == len(PANELS) * 2
    grid = [axes[row * 2 : row * 2 + 2] for row in range(len(PANELS))]
    for column, (label, timeline) in enumerate(timelines.items()):
        assert grid[0][column].get_title() == label
        for row, (attribute, _) in enumerate(PANELS):
            ax = grid[row][column]
            (line,) = ax.get_lines()
            assert list(line.get_xdata()) == list(timeline.t)
            same(list(line.get_ydata()), getattr(timeline, attribute))
            spans = [(p.get_x(), round(p.get_x() + p.get_width(), 9)) for p in ax.patches]
            expected = [timeline.command] + ([timeline.switch] if timeline.switch else [])
            assert spans == expected
    assert [ax.get_yscale() for ax in grid[1]] == ["log", "log"]
    assert grid[2][0].get_ylim()[0] == 0 and grid[2][0].get_ylim()[1] >= 100
    # the rows share their y axes, so the methods compare at a glance
    assert grid[0][0].get_ylim() == grid[0][1].get_ylim()


def test_switch_figure_without_failures_still_has_a_readable_error_axis():
    fig = figure_switches({"blue/green": synthetic_timeline()})
    errors = fig.get_axes()[2]
    assert errors.get_ylim() == (0.0, 1.0)
    with pytest.raises(ValueError, match="no timeline"):
        figure_switches({})


@pytest.mark.parametrize("columns", [1, 3])
def test_a_saved_chart_is_a_png_of_the_figures_size(tmp_path, columns):
    fig = figure_switches({f"method {i}": synthetic_timeline() for i in range(columns)})
    path = save(fig, tmp_path / "sub" / "chart.png")
    width, height = fig.get_size_inches()
    assert png_size(path) == (round(width * DPI), round(height * DPI))
    assert path.stat().st_size > 10_000


def test_host_series_reads_the_curve_one_series_with_batch_and_one_without():
    curve = [
        {"hosts": 5, "batch": 1, "median": 21.0}, {"hosts": 1, "batch": 1, "median": 4.5},
        {"hosts": 3, "batch": 1, "median": 12.0}, {"hosts": 3, "batch": 2, "median": 7.5},
        {"hosts": 5, "batch": 4, "median": 8.4, "runs": [8.4]},
        {"hosts": 1, "batch": 2, "median": 4.6},
    ]  # fmt: skip
    assert host_series({"curve": curve}) == {
        "one host at a time": [(1, 4.5), (3, 12.0), (5, 21.0)],
        "with --batch": [(1, 4.6), (3, 7.5), (5, 8.4)],
    }


def test_host_series_without_a_curve_uses_the_one_and_all_hosts_deploys():
    section = {"web_count": 3, "deploy_one": {"median": 4.5}, "deploy_all": {"median": 10.4}}
    assert host_series(section) == {"one host at a time": [(1, 4.5), (3, 10.4)]}
    assert host_series({"web_count": 3}) == {}


def test_hosts_figure_plots_each_series():
    series = {"one host at a time": [(1, 4.5), (3, 12.0), (5, 21.0)], "with --batch": [(1, 4.6)]}
    fig = figure_hosts(series)
    (ax,) = fig.get_axes()
    plotted = {
        line.get_label(): list(zip(line.get_xdata(), line.get_ydata(), strict=True))
        for line in ax.get_lines()
    }
    assert plotted == series
    assert list(ax.get_xticks()) == [1, 3, 5]
    assert ax.get_ylim()[0] == 0
    with pytest.raises(ValueError, match="no point"):
        figure_hosts({"one host at a time": []})


def result_doc():
    zero = {
        key: {"timeline": synthetic_timeline(outage=(5, 6) if key == "naive_restart" else None)
              .to_json()}
        for key in METHOD_ORDER
    }  # fmt: skip
    zero["gunicorn_reload"] = {"error": "BenchFailed: reload refused"}
    multi = {"curve": [{"hosts": n, "batch": 1, "median": 2.0 * n} for n in (1, 3, 5)]}
    renewal = {"timeline": synthetic_timeline().to_json()}
    return json.loads(json.dumps({"zero_downtime": zero, "multi_host": multi, "renewal": renewal}))


def test_switch_timelines_are_in_method_order_and_skip_what_was_not_measured():
    timelines = switch_timelines(result_doc()["zero_downtime"])
    assert list(timelines) == [
        "naive_restart", "dropstack_deploy", "dropstack_rollback", "dropstack_rollback_started",
    ]  # fmt: skip
    assert timelines["dropstack_deploy"] == synthetic_timeline()


def test_draw_writes_every_chart_the_document_has_data_for(tmp_path):
    drawn = draw(result_doc(), tmp_path)
    names = {"switches.png", "switch-naive-restart.png", "switch-dropstack-deploy.png",
             "switch-dropstack-rollback.png", "switch-dropstack-rollback-started.png",
             "deploy-by-hosts.png", "renewal.png"}  # fmt: skip
    assert {p.name for p in tmp_path.iterdir()} == names
    assert drawn["switches"] == str(tmp_path / "switches.png")
    assert "gunicorn_reload" not in drawn
    width, _ = png_size(tmp_path / "switches.png")
    assert width > png_size(tmp_path / "switch-naive-restart.png")[0]  # four columns against one


def test_draw_says_why_a_chart_was_not_drawn(tmp_path):
    doc = {
        "zero_downtime": {"error": "wrk died"},
        "multi_host": {"error": "no space"},
        "renewal": {"error": "certbot renew exited 1"},
    }
    assert draw(doc, tmp_path) == {
        "switches": "not drawn: wrk died",
        "renewal": "not drawn: certbot renew exited 1",
        "hosts": "not drawn: no space",
    }
    assert draw({}, tmp_path)["switches"] == "not drawn: no timelines in zero_downtime"
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_draws_from_a_results_file(tmp_path, capsys):
    results = tmp_path / "latest.json"
    results.write_text(json.dumps(result_doc()))
    assert main([str(results), "--out", str(tmp_path / "img")]) == 0
    assert (tmp_path / "img" / "deploy-by-hosts.png").exists()
    assert "charts: hosts: " in capsys.readouterr().out
