"""Build once, ship everywhere: the source archive and the wheelhouse, made on the fab machine.

Hosts never reach PyPI and every host gets identical bits: the archive is ``git archive`` of one
commit, and the wheelhouse holds binary wheels for the hosts' Python and platform, downloaded here
once and cached under a key of the pinned dependency files and the target's tags.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from deploy.backup.settings import JOB_FILES
from deploy.release.settings import ReleaseError, ReleaseSettings, release_name

# Asked of one host; the answer decides which wheels pip downloads.
TARGET_PROBE = (
    "import json, os, platform, sys; "
    "libc = os.confstr('CS_GNU_LIBC_VERSION') or ''; "
    "print(json.dumps({'implementation': sys.implementation.name, "
    "'version': '%d.%d' % sys.version_info[:2], 'machine': platform.machine(), 'libc': libc}))"
)
OLDEST_MANYLINUX_MINOR = 5  # manylinux1 == manylinux_2_5
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
WHEELHOUSE_TAR = "wheelhouse.tar"
COMPLETE_MARK = ".complete"


@dataclass(frozen=True)
class Target:
    """The hosts' Python: what a wheel must be built for."""

    implementation: str  # "cpython"
    version: str  # "3.11"
    machine: str  # "x86_64"
    glibc: str  # "2.36"

    @property
    def abi(self) -> str:
        return "cp" + self.version.replace(".", "")

    @property
    def tag(self) -> str:
        return f"{self.abi}-{self.machine}-glibc{self.glibc}"


def target_probe_command() -> list[str]:
    return ["python3", "-c", TARGET_PROBE]


def parse_target(output: str) -> Target:
    """The probe's JSON line as a Target; only CPython on glibc Linux has manylinux wheels."""
    try:
        data = json.loads(output.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise ReleaseError(f"target python probe answered {output.strip()[:80]!r}") from None
    libc, _, glibc = data["libc"].partition(" ")
    if data["implementation"] != "cpython" or libc != "glibc":
        raise ReleaseError(
            f"target runs {data['implementation']} on {data['libc'] or 'a non-glibc libc'}; "
            "dropstack ships manylinux wheels for CPython on glibc"
        )
    return Target("cpython", data["version"], data["machine"], glibc)


def pip_platforms(target: Target) -> list[str]:
    """Every manylinux tag the target's glibc accepts, newest first (pip does not widen them)."""
    major, minor = (int(part) for part in target.glibc.split(".")[:2])
    if major != 2:
        raise ReleaseError(f"glibc {target.glibc}: only glibc 2.x is understood")
    tags = []
    for m in range(minor, OLDEST_MANYLINUX_MINOR - 1, -1):
        tags.append(f"manylinux_2_{m}_{target.machine}")
        if m in LEGACY_MANYLINUX:
            tags.append(f"{LEGACY_MANYLINUX[m]}_{target.machine}")
    return tags


def pip_download_command(
    python: str, requirements: Path, constraints: Path, target: Target, dest: Path
) -> list[str]:
    """pip download of binary wheels only, for the target rather than this machine."""
    platforms = [arg for tag in pip_platforms(target) for arg in ("--platform", tag)]
    return [
        python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", *platforms,
        "--python-version", target.version, "--implementation", "cp",
        "--abi", target.abi, "--abi", "abi3", "--abi", "none",
        "-r", str(requirements), "-c", str(constraints), "-d", str(dest),
    ]  # fmt: skip


def wheelhouse_key(requirements: str, constraints: str, target: Target) -> str:
    """Cache key of a wheelhouse: the pinned inputs and the target's tags."""
    digest = hashlib.sha256()
    for part in (requirements, constraints, target.tag):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def venv_key(wheels: list[str], target: Target) -> str:
    """Key of a host virtualenv: the exact wheels installed in it and the Python they are for.

    Keyed by the resolved wheel set rather than the input files, so a change to a development
    pin in constraints.txt builds a new wheelhouse here but still reuses the host's venv.
    """
    digest = hashlib.sha256(target.tag.encode())
    for name in sorted(wheels):
        digest.update(b"\0" + name.encode())
    return digest.hexdigest()[:16]


def dirty_check_command() -> list[str]:
    """Tracked files changed in the work tree or index; untracked files never ship anyway."""
    return ["git", "status", "--porcelain", "--untracked-files=no"]


def shipped_paths(app_paths: tuple[str, ...]) -> tuple[str, ...]:
    """What of the tree every host gets: the app contract's ``archive_paths``, and the backup
    job's files, which run from the live release whatever the app is."""
    return (*app_paths, *(path for path in JOB_FILES if path not in app_paths))


def archive_command(treeish: str, paths: tuple[str, ...], out: Path) -> list[str]:
    return ["git", "archive", "--format=tar.gz", "-o", str(out), treeish, "--", *paths]


@dataclass(frozen=True)
class Source:
    """The commit (or work-tree snapshot) a release is built from."""

    revision: str  # the HEAD commit
    treeish: str  # what git archive reads: HEAD, or a stash-like commit of the work tree
    dirty: bool
    changed: tuple[str, ...]  # tracked files that differ from HEAD


def _git(source: Path, *args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=source, check=True, capture_output=True, text=True
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise ReleaseError(f"git {args[0]} in {source}: {exc.stderr.strip()}") from None


def read_source(source: Path, allow_dirty: bool) -> Source:
    """HEAD, refusing tracked changes unless allowed; then the work tree's tracked files ship."""
    revision = _git(source, "rev-parse", "HEAD").strip()
    changed = tuple(
        line[3:] for line in _git(source, *dirty_check_command()[1:]).splitlines() if line
    )
    if not changed:
        return Source(revision, revision, False, ())
    if not allow_dirty:
        shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        raise ReleaseError(
            f"{source}: uncommitted changes to tracked files ({shown}); commit them, "
            "or deploy the work tree with --allow-dirty"
        )
    # `git stash create` commits the work tree's tracked state without touching refs or files.
    return Source(revision, _git(source, "stash", "create").strip(), True, changed)


def build_archive(source: Path, src: Source, paths: tuple[str, ...], out: Path) -> Path:
    _git(source, *archive_command(src.treeish, paths, out)[1:])
    return out


@dataclass(frozen=True)
class Wheelhouse:
    key: str
    directory: Path
    wheels: tuple[str, ...]
    venv_key: str
    cached: bool

    @property
    def tarball(self) -> Path:
        return self.directory / WHEELHOUSE_TAR


def build_wheelhouse(settings: ReleaseSettings, source: Path, target: Target) -> Wheelhouse:
    """The target's wheels for the pinned app dependencies, from the cache when present."""
    requirements = source / settings.requirements
    constraints = source / settings.constraints
    key = wheelhouse_key(requirements.read_text(), constraints.read_text(), target)
    directory = Path(settings.cache_dir).expanduser() / "wheelhouses" / key
    cached = (directory / COMPLETE_MARK).exists()
    if not cached:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        command = pip_download_command(sys.executable, requirements, constraints, target, directory)
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(directory, ignore_errors=True)
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ReleaseError(f"pip download for {target.tag} failed: {last}")
        wheels = sorted(p.name for p in directory.glob("*.whl"))
        with tarfile.open(directory / WHEELHOUSE_TAR, "w") as tar:
            for name in wheels:
                tar.add(directory / name, arcname=name)
        (directory / COMPLETE_MARK).write_text(json.dumps({"target": target.tag}) + "\n")
    wheels = tuple(sorted(p.name for p in directory.glob("*.whl")))
    return Wheelhouse(key, directory, wheels, venv_key(list(wheels), target), cached)


@dataclass(frozen=True)
class Artifact:
    """What every host of one deploy receives."""

    name: str
    source: Source
    archive: Path
    wheelhouse: Wheelhouse
    target: Target


def build_artifact(
    settings: ReleaseSettings, src: Source, target: Target, workdir: Path, now: datetime
) -> Artifact:
    source = Path(settings.source)
    name = release_name(now, src.revision, src.dirty)
    paths = shipped_paths(settings.archive_paths)
    archive = build_archive(source, src, paths, workdir / f"{name}.tar.gz")
    return Artifact(name, src, archive, build_wheelhouse(settings, source, target), target)
