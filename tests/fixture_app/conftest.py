"""The fixture app's end-to-end deploy: host tests (they need the running local droplet)."""

from pathlib import Path

from tests.host_marks import mark_folder_as_host


def pytest_collection_modifyitems(items):
    mark_folder_as_host(items, Path(__file__).parent)
