"""Marking a folder's tests as host tests (they need a running local droplet or real hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest


def mark_folder_as_host(items, folder: Path) -> None:
    for item in items:
        if Path(item.fspath).is_relative_to(folder):
            item.add_marker(pytest.mark.host)
