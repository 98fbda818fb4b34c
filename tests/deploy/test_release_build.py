"""The build on the fab machine: target tags, pip's arguments, cache keys, the source archive."""

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from deploy.backup.settings import JOB, JOB_FILES
from deploy.release.build import (
    Target,
    build_archive,
    parse_target,
    pip_download_command,
    pip_platforms,
    read_source,
    shipped_paths,
    venv_key,
    wheelhouse_key,
)
from deploy.release.settings import ReleaseError

REPO = Path(__file__).resolve().parents[2]

DEBIAN_12 = Target("cpython", "3.11", "x86_64", "2.36")


def test_probe_answer_becomes_a_target():
    answer = (
        '{"implementation": "cpython", "version": "3.11", "machine": "x86_64", '
        '"libc": "glibc 2.36"}'
    )
    assert parse_target("some motd\n" + answer) == DEBIAN_12
    assert DEBIAN_12.abi == "cp311"
    assert DEBIAN_12.tag == "cp311-x86_64-glibc2.36"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ('{"implementation": "pypy", "version": "3.10", "machine": "x86_64", "libc": "glibc 2.36"}',
         "pypy"),
        ('{"implementation": "cpython", "version": "3.12", "machine": "x86_64", "libc": ""}',
         "non-glibc"),
        ("python3: command not found", "target python probe answered"),
    ],
)  # fmt: skip
def test_targets_without_manylinux_wheels_are_refused(answer, message):
    with pytest.raises(ReleaseError, match=message):
        parse_target(answer)


def test_platforms_cover_every_manylinux_the_glibc_accepts():
    tags = pip_platforms(DEBIAN_12)
    assert tags[0] == "manylinux_2_36_x86_64"
    for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                "manylinux2010_x86_64", "manylinux1_x86_64"):  # fmt: skip
        assert tag in tags
    assert "manylinux_2_37_x86_64" not in tags
    assert pip_platforms(Target("cpython", "3.11", "aarch64", "2.17"))[:2] == [
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
    ]


def test_pip_downloads_binary_wheels_for_the_target_not_this_machine():
    command = pip_download_command(
        "/venv/bin/python", Path("app/requirements.txt"), Path("constraints.txt"), DEBIAN_12,
        Path("/cache/w"),
    )  # fmt: skip
    line = " ".join(command)
    assert line.startswith("/venv/bin/python -m pip download")
    assert "--only-binary=:all:" in command
    assert "--python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none" in line
    assert "--platform manylinux2014_x86_64" in line
    assert "-r app/requirements.txt -c constraints.txt -d /cache/w" in line


def test_wheelhouse_key_changes_with_any_input():
    base = wheelhouse_key("flask==3.1.3\n", "flask==3.1.3\n", DEBIAN_12)
    assert base == wheelhouse_key("flask==3.1.3\n", "flask==3.1.3\n", DEBIAN_12)
    assert base != wheelhouse_key("flask==3.1.2\n", "flask==3.1.3\n", DEBIAN_12)
    assert base != wheelhouse_key("flask==3.1.3\n", "flask==3.1.2\n", DEBIAN_12)
    assert base != wheelhouse_key("flask==3.1.3\n", "flask==3.1.3\n",
                                  Target("cpython", "3.12", "x86_64", "2.39"))  # fmt: skip


def test_venv_key_is_the_wheel_set_in_any_order():
    wheels = ["flask-3.1.3-py3-none-any.whl", "gunicorn-27.0.1-py3-none-any.whl"]
    assert venv_key(wheels, DEBIAN_12) == venv_key(list(reversed(wheels)), DEBIAN_12)
    assert venv_key(wheels, DEBIAN_12) != venv_key(wheels[:1], DEBIAN_12)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.invalid")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("VERSION = 1\n")
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "secret_plan.py").write_text("x = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "one")
    return tmp_path


def names_in(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_clean_tree_archives_head_with_only_the_shipped_paths(repo, tmp_path):
    (repo / "untracked.txt").write_text("never shipped\n")
    src = read_source(repo, allow_dirty=False)
    assert not src.dirty and src.treeish == src.revision == git(repo, "rev-parse", "HEAD").strip()
    files = names_in(build_archive(repo, src, ("app",), tmp_path / "r.tar.gz"))
    assert files == {"app/__init__.py": b"VERSION = 1\n"}


def test_dirty_tree_is_refused_naming_the_files(repo):
    (repo / "app" / "__init__.py").write_text("VERSION = 2\n")
    with pytest.raises(
        ReleaseError, match=r"uncommitted changes to tracked files \(app/__init__.py\)"
    ):
        read_source(repo, allow_dirty=False)


def test_allow_dirty_archives_the_work_tree_without_touching_it(repo, tmp_path):
    (repo / "app" / "__init__.py").write_text("VERSION = 2\n")
    src = read_source(repo, allow_dirty=True)
    assert src.dirty and src.changed == ("app/__init__.py",)
    files = names_in(build_archive(repo, src, ("app",), tmp_path / "r.tar.gz"))
    assert files["app/__init__.py"] == b"VERSION = 2\n"
    assert git(repo, "stash", "list") == ""  # no stash entry, no ref moved
    assert (repo / "app" / "__init__.py").read_text() == "VERSION = 2\n"


def test_every_release_ships_the_backup_job_runnable_on_the_stdlib_alone(repo, tmp_path):
    """The unit and fab db.* run <current>/deploy/backup/job.py: the archive holds it and every
    module it imports, whatever the app's archive_paths, and it runs from the unpacked archive
    with no site-packages (-S) and nothing of this checkout on the path (-I)."""
    for path in JOB_FILES:
        source, copy = REPO / path, repo / path
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(source, copy)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "the backup job")
    src = read_source(repo, allow_dirty=False)
    archive = build_archive(repo, src, shipped_paths(("app",)), tmp_path / "r.tar.gz")
    shipped = set(names_in(archive))
    job_modules = {p.relative_to(REPO).as_posix() for p in (REPO / JOB_FILES[1]).glob("*.py")}
    assert {JOB, "app/__init__.py"} | job_modules <= shipped
    assert not any(name.startswith("infra/") for name in shipped)

    release = tmp_path / "release"
    release.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(release, filter="data")
    state = tmp_path / "state"
    state.mkdir()
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(release / JOB), "status"],
        env={"BACKUP_STATE_DIR": str(state)}, cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"last_drill": None}


def test_the_shipped_paths_add_the_backup_job_once():
    assert shipped_paths(("app",)) == ("app", *JOB_FILES)
    assert shipped_paths(("app", JOB)) == ("app", JOB, *JOB_FILES[1:])
