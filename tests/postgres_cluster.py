"""A throwaway PostgreSQL server for tests and local development.

    with PostgresCluster() as cluster:
        cluster.create_database("app")
        url = cluster.url("app")          # postgresql://postgres@127.0.0.1:PORT/app

The cluster lives in a fresh temporary directory (in /dev/shm when it has room), listens on a
free loopback port (and a unix socket inside that directory), trusts local connections, and is
stopped and deleted when the ``with`` block ends, whether it ends normally or not. Durability is
switched off: nothing in it is meant to survive.

As root (CI, this project's machines) the server runs as the ``postgres`` user, because initdb
and postgres refuse to run as root; otherwise it runs as the current user.

Run ``python -m tests.postgres_cluster [DBNAME]`` for a server to develop against: it prints a
DATABASE_URL and keeps the server until Ctrl-C.
"""

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from tests.loopback import free_port

SERVER_USER = "postgres"  # the OS account that runs the server when we are root
SUPERUSER = "postgres"  # the database role initdb creates; connections use it
DEBIAN_BIN_DIRS = "/usr/lib/postgresql/*/bin"
# Speed over safety: a crash loses the cluster, which is thrown away anyway.
SERVER_SETTINGS = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")
# A cluster in memory creates databases about ten times faster than one on disk (measured: 15
# against 150-250 ms per CREATE DATABASE ... TEMPLATE). Used only when it has room to spare:
# containers often give /dev/shm just 64 MiB.
MEMORY_FILESYSTEM = Path("/dev/shm")
MEMORY_FILESYSTEM_MIN_FREE = 1024**3


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl: $PG_BIN_DIR, Debian's newest, or the PATH."""
    candidates = [os.environ.get("PG_BIN_DIR", "")]
    candidates += sorted(
        (str(path) for path in Path("/").glob(DEBIAN_BIN_DIRS.lstrip("/"))),
        key=lambda path: int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.append(str(Path(shutil.which("initdb") or "").parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    raise PostgresNotInstalled(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in $PG_BIN_DIR, "
        f"{DEBIAN_BIN_DIRS} or PATH: install the Debian package 'postgresql' (bin/setup does)"
    )


def cluster_parent_dir() -> str | None:
    """Where to create the cluster's directory: memory when there is room, else $TMPDIR."""
    try:
        usage = os.statvfs(MEMORY_FILESYSTEM)
    except OSError:
        return None
    roomy = usage.f_bavail * usage.f_frsize >= MEMORY_FILESYSTEM_MIN_FREE
    return str(MEMORY_FILESYSTEM) if roomy and os.access(MEMORY_FILESYSTEM, os.W_OK) else None


class PostgresCluster:
    """One throwaway PostgreSQL server; a context manager that starts and removes it."""

    def __init__(self, bin_dir: Path | None = None, settings: tuple[str, ...] = ()) -> None:
        """``settings`` are extra server settings ("timezone=Asia/Kolkata") for every start."""
        self.bin_dir = bin_dir or find_bin_dir()
        self.port = free_port()
        self.settings = SERVER_SETTINGS + settings
        self.base_dir: Path | None = None

    @property
    def data_dir(self) -> Path:
        """Where initdb puts the cluster."""
        return self._base() / "data"

    @property
    def socket_dir(self) -> Path:
        """Where the server's unix socket (and its lock file) live."""
        return self._base() / "socket"

    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("the cluster has not been created; use `with PostgresCluster()`")
        return self.base_dir

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL for ``dbname`` on this server, as DATABASE_URL expects it."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def __enter__(self) -> "PostgresCluster":
        try:
            self.create()
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()

    def create(self) -> None:
        """initdb a new cluster in a fresh temporary directory owned by the server's user."""
        self.base_dir = Path(tempfile.mkdtemp(prefix="dropstack-pg-", dir=cluster_parent_dir()))
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVER_USER)
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
            "--no-sync",
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.socket_dir}"]
        options += [f"-c {setting}" for setting in self.settings]
        self._run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self.data_dir),
            "--wait",
            "--log",
            str(self._base() / "server.log"),
            "-o",
            " ".join(options),
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server. "fast" keeps every committed row for a later ``start()``;
        "immediate" is quicker but, with synchronous_commit off, loses the last commits."""
        self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--wait", "-m", mode)

    def is_running(self) -> bool:
        """Whether the server's postmaster is up."""
        status = self._run("pg_ctl", "status", "--pgdata", str(self.data_dir), check=False)
        return status.returncode == 0

    def remove(self) -> None:
        """Stop the server if it runs and delete every file of the cluster."""
        if self.base_dir is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop(mode="immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = None

    def execute(self, statement: sql.Composable | str, dbname: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        with psycopg.connect(self.url(dbname), autocommit=True) as connection:
            connection.execute(statement)

    def create_database(self, name: str, template: str | None = None) -> None:
        """CREATE DATABASE ``name``, copied from ``template`` when given (fast for fixtures)."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self.execute(statement)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name``, disconnecting anyone still connected to it."""
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self.execute(statement.format(sql.Identifier(name)))

    def _run(
        self, program: str, *arguments: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a server binary, as the postgres user when we are root; errors include its output."""
        command = [str(self.bin_dir / program), *arguments]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        # Run from the cluster's own directory: the server's user may not be allowed into ours.
        cwd = self.base_dir if self.base_dir and self.base_dir.exists() else "/"
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, command, result.stdout, result.stderr + self._server_log_tail()
            )
        return result

    def _server_log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, to explain a failed start."""
        log_file = self.base_dir / "server.log" if self.base_dir else None
        if log_file is None or not log_file.exists():
            return ""
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])


def main(argv: list[str]) -> int:
    """Serve a throwaway database until interrupted, printing its DATABASE_URL."""
    dbname = argv[0] if argv else "dropstack"
    with PostgresCluster() as cluster:
        cluster.create_database(dbname)
        print(f"DATABASE_URL={cluster.url(dbname)}", flush=True)
        print("PostgreSQL is running; Ctrl-C stops it and deletes its files.", flush=True)
        # Both end the wait through the `with` block, which stops and deletes the cluster.
        # SIGINT is set explicitly: a shell starts background jobs with it ignored.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
