"""The release layout `fab deploy` leaves (deploy/release, README "Releases"): `current` into
releases/, old releases pruned to `dropstack.release.keep`, every deploy in the audit log."""

from __future__ import annotations

import shlex

from deploy.release import audit
from deploy.release.plan import prune_selection
from deploy.release.settings import is_release_name


def test_current_links_into_releases(host, settings):
    paths = settings.paths
    current = host.file(paths.current)
    assert current.exists, f"{paths.current} does not exist: no release deployed yet (fab deploy)"
    assert current.is_symlink, f"{paths.current} is not a symlink; deploys switch it atomically"
    target = current.linked_to
    parent, _, name = target.rpartition("/")
    assert parent == paths.releases_dir and is_release_name(name), (
        f"{paths.current} points at {target}, not a release in {paths.releases_dir}/"
    )
    assert host.file(target).is_directory, f"{paths.current} points at missing {target}"


def test_old_releases_pruned(release_state, release_settings, settings):
    """At most `keep` releases, plus those pruning always spares: the live one, the previous
    good one (rollback target) and whatever a slot points to (deploy/release/plan.py)."""
    layout, keep, state = settings.paths, release_settings.keep, release_state
    leftover = prune_selection(state, keep)
    assert not leftover, (
        f"{len(state.releases)} releases in {layout.releases_dir}, more than keep={keep} plus the "
        f"live, previous-good and slot ones; these should have been pruned: {', '.join(leftover)}"
    )


def test_audit_log_records_live_release(host, settings, current_release):
    path = settings.paths.audit_log
    log = host.file(path)
    assert log.exists, f"{path} is missing: deploys are not being recorded"
    records = [
        r for r in audit.parse_lines(log.content_string) if r.action in ("deploy", "rollback")
    ]
    assert records, f"{path} records no deploy or rollback"
    last = records[-1]
    summary = f"{last.action} of {last.release} at {last.timestamp} by {last.user}"
    assert last.result == "ok", (
        f"the last {summary} ended {last.result!r} ({last.detail}); {current_release} is still live"
    )
    assert last.release == current_release, (
        f"the last recorded {summary}, but current is {current_release}: the live release was "
        "switched without a deploy or rollback recording it"
    )


def test_audit_log_not_writable_by_app(host, settings):
    """The app user must not be able to rewrite history (root or the deploy user owns it)."""
    path = settings.paths.audit_log
    result = host.run(f"sudo -n -u {shlex.quote(settings.app_user)} test -w {shlex.quote(path)}")
    assert result.rc != 0, f"{settings.app_user} can write {path}"
