"""A throwaway PostgreSQL server for tests: real binaries, loopback only.

``PgServer().start()`` runs ``initdb`` (trust auth, UTF8, no sync) into a new
temporary directory, starts the server with ``pg_ctl`` on 127.0.0.1 and a free
port (fsync off, Unix socket inside the temporary directory) and creates one
database. ``stop()`` stops the server and removes the directory; it also runs
at interpreter exit and when starting fails half-way.

The binaries come from ``$COLDTRACE_PG_BINDIR`` if set, else the highest
version under /usr/lib/postgresql/*/bin (Debian's ``postgresql`` package,
installed by scripts/ensure-system.sh), else ``$PATH``.

``initdb`` refuses to run as root. When the tests run as root (CI containers)
the server runs as the unprivileged ``postgres`` system user (created by the
Debian package), which owns the temporary directory; root still removes it.

    with PgServer() as pg:
        engine = sqlalchemy.create_engine(pg.url)             # the default database
        other = sqlalchemy.create_engine(pg.new_database("t1"))  # a fresh empty one
        pg.halt(); pg.resume()      # an operator's restart, same port and data
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["PgServer", "PgServerError", "find_pg_bindir"]

TOOLS = ("initdb", "pg_ctl", "postgres")
BINDIR_ENV = "COLDTRACE_PG_BINDIR"
SERVICE_USER = "postgres"  # runs the server when the tests run as root
HOST = "127.0.0.1"
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_INSTALL_HINT = "run `make system` (scripts/ensure-system.sh installs Debian's `postgresql`)"


class PgServerError(RuntimeError):
    """PostgreSQL could not be found, started or used."""


def _version_key(p: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<ver>/bin: "15", "16", "9.6"
    return tuple(int(x) if x.isdigit() else -1 for x in p.parent.name.split("."))


def find_pg_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres, or PgServerError saying why not."""
    env = os.environ.get(BINDIR_ENV)
    if env:
        d = Path(env)
        missing = [t for t in TOOLS if not os.access(d / t, os.X_OK)]
        if missing:
            raise PgServerError(f"${BINDIR_ENV}={env} lacks {', '.join(missing)}")
        return d
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for d in candidates:
        if all(os.access(d / t, os.X_OK) for t in TOOLS):
            return d
    found = {t: shutil.which(t) for t in TOOLS}
    if all(found.values()):
        dirs = {Path(os.path.realpath(p)).parent for p in found.values() if p}
        if len(dirs) == 1:
            return dirs.pop()
        return Path(os.path.realpath(found["initdb"] or "")).parent
    missing = [t for t, p in found.items() if not p]
    raise PgServerError(
        "PostgreSQL server binaries not found (" + ", ".join(missing) + " missing; looked in "
        f"${BINDIR_ENV}, /usr/lib/postgresql/*/bin and $PATH): {_INSTALL_HINT}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _world_traversable(d: Path) -> bool:
    d = d.resolve()
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [d, *d.parents])


def _conf_str(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "''") + "'"


class PgServer:
    """One PostgreSQL server in a temporary directory. See the module docstring."""

    def __init__(
        self,
        *,
        bindir: Path | str | None = None,
        user: str = "coldtrace",
        dbname: str = "coldtrace",
        start_timeout: float = 30.0,
        durable: bool = False,
    ) -> None:
        """``durable``: keep ``fsync`` and ``synchronous_commit`` on, as in production
        (docs/operations.md §10), for tests that crash the server and count on every
        committed transaction; off by default, which is faster."""
        for n in (user, dbname):
            if not _NAME_RE.match(n):
                raise ValueError(f"not a plain PostgreSQL name: {n!r}")
        self._bindir = Path(bindir) if bindir is not None else None
        self.user = user
        self.dbname = dbname
        self.start_timeout = start_timeout
        self.durable = durable
        self.host = HOST
        self.port: int | None = None
        self.base: Path | None = None
        self._run_as: pwd.struct_passwd | None = None
        self._started = False

    # -- paths -------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return self._bindir

    @property
    def datadir(self) -> Path:
        return self._base() / "data"

    @property
    def logfile(self) -> Path:
        return self._base() / "server.log"

    def _base(self) -> Path:
        if self.base is None:
            raise PgServerError("PgServer is not started")
        return self.base

    # -- URLs ----------------------------------------------------------------

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL of a database on this server (psycopg 3 driver)."""
        if self.port is None:
            raise PgServerError("PgServer is not started")
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the database created at start."""
        return self.url_for(self.dbname)

    def conninfo(self, dbname: str | None = None) -> str:
        """libpq connection string, for psycopg.connect()."""
        if self.port is None:
            raise PgServerError("PgServer is not started")
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"dbname={dbname or self.dbname} connect_timeout=10"
        )

    # -- lifecycle -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._started

    def start(self) -> PgServer:
        if self._started:
            return self
        bindir = self.bindir  # raises a clear error before anything is created
        self._run_as = self._service_user() if os.geteuid() == 0 else None
        parent = Path(tempfile.gettempdir())
        if self._run_as is not None and not _world_traversable(parent):
            parent = Path("/tmp")
        self.base = Path(tempfile.mkdtemp(prefix="coldtrace-pg-", dir=parent))
        atexit.register(self.stop)
        try:
            if self._run_as is not None:
                os.chown(self.base, self._run_as.pw_uid, self._run_as.pw_gid)
            self._initdb(bindir)
            self._start_on_free_port(bindir)
            self._create(self.dbname)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (if running) and remove its directory. Idempotent."""
        base = self.base
        if base is None:
            return
        atexit.unregister(self.stop)
        try:
            if self._started or (base / "data" / "postmaster.pid").exists():
                self._pg_ctl_stop(base / "data")
        finally:
            self._started = False
            self.base = None
            self.port = None
            shutil.rmtree(base, ignore_errors=True)

    def halt(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data and port, as an operator's restart does
        (``mode``: ``fast``, or ``immediate``: as if it crashed). :meth:`resume`
        starts it again."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"pg_ctl stop mode {mode!r}")
        if not self._started:
            raise PgServerError("PgServer is not started")
        r = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "stop",
                "--pgdata",
                str(self.datadir),
                f"--mode={mode}",
                "--wait",
                "--timeout=60",
                "--silent",
            ],
            timeout=70,
        )
        if r.returncode != 0:
            raise PgServerError(f"pg_ctl stop failed ({r.returncode}):\n{r.stdout}{r.stderr}")

    def _pg_ctl_start(self, bindir: Path) -> subprocess.CompletedProcess[str]:
        """``pg_ctl start`` on this server's data directory, waiting for it."""
        return self._run(
            [
                str(bindir / "pg_ctl"),
                "start",
                "--pgdata",
                str(self.datadir),
                "--log",
                str(self.logfile),
                "--wait",
                "--timeout",
                str(int(self.start_timeout)),
                "--silent",
            ],
            timeout=self.start_timeout + 10,
        )

    def resume(self) -> None:
        """Start the server :meth:`halt` stopped, on the same port with the same data."""
        r = self._pg_ctl_start(self.bindir)
        if r.returncode != 0:
            raise PgServerError(f"pg_ctl start failed ({r.returncode}):\n{r.stdout}{r.stderr}")

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------

    def new_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its SQLAlchemy URL."""
        if not _NAME_RE.match(name):
            raise ValueError(f"not a plain PostgreSQL name: {name!r}")
        self._create(name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing any connections still open to it."""
        from psycopg import sql

        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _create(self, name: str) -> None:
        from psycopg import sql

        # template0: truly empty, whatever a test did to template1.
        self._admin(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(name)
            )
        )

    def _admin(self, query: Any) -> None:
        import psycopg

        if not self._started:
            raise PgServerError("PgServer is not started")
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(query)

    # -- internals -----------------------------------------------------------

    @staticmethod
    def _service_user() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise PgServerError(
                f"running as root, and initdb refuses root: the server runs as the "
                f"`{SERVICE_USER}` system user, which does not exist: {_INSTALL_HINT}"
            ) from None

    def _run(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        kw: dict[str, Any] = {}
        if self._run_as is not None:
            u = self._run_as
            env.update(HOME=u.pw_dir, USER=u.pw_name, LOGNAME=u.pw_name)
            kw = {"user": u.pw_uid, "group": u.pw_gid, "extra_groups": []}
        try:
            return subprocess.run(
                args,
                cwd=self._base(),
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                **kw,
            )
        except subprocess.TimeoutExpired as e:
            raise PgServerError(f"{Path(args[0]).name} timed out after {timeout}s") from e

    def _initdb(self, bindir: Path) -> None:
        r = self._run(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(self.datadir),
                "--username",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=120,
        )
        if r.returncode != 0:
            raise PgServerError(f"initdb failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write("\ninclude 'coldtrace-test.conf'\n")

    def _write_conf(self, port: int) -> None:
        settings = {
            "listen_addresses": _conf_str(HOST),
            "port": str(port),
            "unix_socket_directories": _conf_str(str(self._base())),
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            "shared_buffers": "'32MB'",
            "max_connections": "100",
            "timezone": "'UTC'",
            "logging_collector": "off",
        }
        path = self.datadir / "coldtrace-test.conf"
        path.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()), encoding="utf-8")
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _start_on_free_port(self, bindir: Path) -> None:
        last = ""
        for _ in range(5):  # another process may take the port between probe and bind
            port = _free_port()
            self._write_conf(port)
            r = self._pg_ctl_start(bindir)
            if r.returncode == 0:
                self.port = port
                self._started = True
                return
            log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            last = f"pg_ctl start failed ({r.returncode}):\n{r.stdout}{r.stderr}\n{log}"
            if (self.datadir / "postmaster.pid").exists():
                self._pg_ctl_stop(self.datadir)
            if "Address already in use" not in log:
                break
            self.logfile.unlink(missing_ok=True)
            time.sleep(0.05)
        raise PgServerError(last.strip())

    def _pg_ctl_stop(self, datadir: Path) -> None:
        # Immediate: the data is thrown away anyway.
        r = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "stop",
                "--pgdata",
                str(datadir),
                "--mode=immediate",
                "--wait",
                "--timeout=30",
                "--silent",
            ],
            timeout=40,
        )
        if r.returncode != 0 and (datadir / "postmaster.pid").exists():
            raise PgServerError(f"pg_ctl stop failed ({r.returncode}):\n{r.stdout}{r.stderr}")
