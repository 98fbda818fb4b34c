"""Maintenance mode on the local droplet under a steady load: switching it on and off drops no
connection; while it is on, app requests get the 503 page (JSON for the API) with Retry-After
and the health checks keep answering, so a load balancer keeps the host."""

from __future__ import annotations

import json
import time

import pytest

from tests.release.harness import steady_load

pytestmark = pytest.mark.host  # against the local droplet: bin/test's host cycle

MESSAGE = "Back at 10:00 <b>UTC</b>"


def test_on_and_off_under_load_only_the_intended_503s(fab, site, web, tls_domain):
    with steady_load(web, seconds=60, domain=tls_domain) as load:
        on = fab("maintenance.on", "--message", MESSAGE)
        try:
            assert on.returncode == 0, on.stderr
            api = site.get("/api/tasks", {"Accept": "application/json"})
            assert api.status == 503 and api.headers["Retry-After"], api
            assert json.loads(api.body)["message"] == MESSAGE
            page = site.get("/", {"Accept": "text/html"})
            assert page.status == 503 and b"&lt;b&gt;UTC&lt;/b&gt;" in page.body  # escaped
            for path in ("/healthz", "/readyz"):
                assert site.get(path).status == 200, path
            time.sleep(3)  # the load meets maintenance mode for a while
        finally:
            off = fab("maintenance.off")  # whatever failed: the later tests need the site
        assert off.returncode == 0, off.stderr
        assert site.get("/api/tasks").status == 200
    for kind, result in load.results.items():
        errors = {k: result[k] for k in ("connect", "read", "write", "timeout")}
        assert errors == dict.fromkeys(errors, 0), (kind, result)  # no connection dropped
        # Only the app's requests (every other one: /api/tasks) were answered 503, and only
        # 503: the health checks (/healthz, the other half) never were.
        assert set(result["status"]) == {"503"}, (kind, result)
        assert 0 < result["non2xx"] <= result["requests"] // 2 + 1, (kind, result)
