"""The audit log each host keeps: one JSON object per line per deploy or rollback."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class AuditRecord:
    timestamp: str  # ISO 8601 UTC, when the action ended
    user: str  # user@machine
    action: str  # deploy, rollback
    release: str
    revision: str
    result: str  # ok, failed, interrupted
    duration: float  # seconds
    detail: str = ""  # why it failed, the slot it went to

    def to_line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def record(
    user: str,
    action: str,
    release: str,
    revision: str,
    result: str,
    duration: float,
    detail: str = "",
    now: datetime | None = None,
) -> AuditRecord:
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    return AuditRecord(stamp, user, action, release, revision, result, round(duration, 1), detail)


def parse_lines(text: str) -> list[AuditRecord]:
    """The records in a log's text; lines that are not records are skipped, not fatal."""
    records = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
            records.append(AuditRecord(**{k: data[k] for k in AuditRecord.__dataclass_fields__}))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return records


def render(records: Sequence[AuditRecord]) -> list[str]:
    """A table, newest last, as `fab releases` prints it."""
    if not records:
        return ["(no deploys recorded)"]
    rows = [
        (
            r.timestamp.replace("+00:00", "Z"),
            r.action,
            r.release,
            r.revision[:7],
            r.result,
            f"{r.duration:.1f}s",
            r.user,
            r.detail,
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(7)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:7], widths, strict=True))
        + (f"  {row[7]}" if row[7] else "")
        for row in rows
    ]
