"""A throwaway PostgreSQL server for the tests and benches: `initdb` into a temporary folder, its
own port on 127.0.0.1, its unix socket in the same folder, stopped and removed at the end.

Debian installs the server binaries in /usr/lib/postgresql/<version>/bin, off PATH (the newest
version found there is used; $SMALLFIRST_PG_BINDIR names another folder). initdb and postgres
refuse to run as root: as root (CI) they run as the unprivileged `postgres` user that Debian's
package creates, or, where it is missing, a system user `smallfirst-pg` created here.

    server = PgServer.start_new()
    url = server.create_database()      # postgresql://smallfirst@127.0.0.1:PORT/t_...
    server.stop(); server.start()       # a restart, same port and data
    server.close()
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

INSTALL = ("PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found. Install them: "
           "`apt-get install postgresql` (bash scripts/test.sh does this when run as root), or set "
           "SMALLFIRST_PG_BINDIR to the folder holding them. To skip the PostgreSQL tests on purpose, "
           "set SMALLFIRST_SKIP_POSTGRES=1.")
USER = "smallfirst"  # the cluster's superuser; trust authentication on 127.0.0.1 and the socket only


class PgUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    given = os.environ.get("SMALLFIRST_PG_BINDIR")
    candidates = [Path(given)] if given else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)

    def version(p: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/bin", p)
        return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for d in candidates:
        if all((d / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    raise PgUnavailable(INSTALL)


def _run_as() -> list[str]:
    """The command prefix that drops root for initdb and pg_ctl; nothing when not root."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "smallfirst-pg"):
        try:
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "smallfirst-pg"],
                   check=True, capture_output=True)
    return ["runuser", "-u", "smallfirst-pg", "--"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self, bindir: Path, root: Path, port: int):
        self.bindir, self.root, self.port = bindir, root, port
        self.data = root / "data"
        self.log = root / "postgres.log"
        self._as = _run_as()

    @classmethod
    def start_new(cls) -> "PgServer":
        bindir = find_bindir()
        root = Path(tempfile.mkdtemp(prefix="smallfirst-pg-"))
        server = cls(bindir, root, free_port())
        if server._as:
            user = server._as[2]
            shutil.chown(root, user=user)
        server._pg("initdb", "-D", str(server.data), "-U", USER, "--auth=trust", "--no-locale", "-E", "UTF8",
                   "--no-sync")
        server.start()
        return server

    def _pg(self, exe: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*self._as, str(self.bindir / exe), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise PgUnavailable(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{tail}")
        return done

    def start(self) -> None:
        # fsync off: a test cluster need not survive a power cut, and it is much faster. Commits
        # stay synchronous: with synchronous_commit off, a crash (stop -m immediate) loses
        # transactions the client was told were committed, and the fault tests would see it.
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                "-c full_page_writes=off -c max_connections=200")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: connections are cut, as when an operator restarts the server; `immediate`: as a crash."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return subprocess.run([*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
                              capture_output=True).returncode == 0

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
