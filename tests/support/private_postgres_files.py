"""A private PostgreSQL server's cluster on disk and who it is: the binaries it runs, the OS
user it runs as, its port and URLs, and the data directory initdb makes once, with our config."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.pg_ports import HOST, pick_free_port

__all__ = ["NoPostgres", "PrivatePostgresFiles", "find_bin_dir"]

_OS_USER = "postgres"  # initdb and postgres refuse to run as root
# Where Debian keeps each major version's server binaries (not on PATH).
_DEBIAN_LIB = Path("/usr/lib/postgresql")


class NoPostgres(RuntimeError):
    """No PostgreSQL could be found or started for the tests."""


def find_bin_dir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: Debian's newest version, else the ones on PATH."""
    versions = sorted(
        (d for d in _DEBIAN_LIB.glob("*/bin") if d.parent.name.isdigit()),
        key=lambda d: int(d.parent.name),
        reverse=True,
    )
    on_path = shutil.which("initdb")
    candidates = [*versions, *([Path(on_path).resolve().parent] if on_path else [])]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    return None


class PrivatePostgresFiles:
    """A private server's binaries, port, directory and data (see :class:`PrivatePostgres`)."""

    def __init__(
        self,
        *,
        listen: Sequence[str] = (HOST,),
        parent_dir: Path | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise NoPostgres(
                "no PostgreSQL binaries (initdb, postgres) for a private server: install "
                "Debian's postgresql package (scripts/ensure-postgres.sh does)"
            )
        if not listen:
            raise ValueError("a server must listen somewhere")
        self.bin_dir = found
        self.listen = tuple(listen)
        self.port = pick_free_port()
        self.base_dir = Path(tempfile.mkdtemp(prefix="agg-pg-", dir=parent_dir))
        self._dir_finalizer = weakref.finalize(self, shutil.rmtree, self.base_dir, True)
        self._owner = _os_user_ids() if os.geteuid() == 0 else None
        if self._owner is not None:
            os.chown(self.base_dir, *self._owner)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        """The server's stdout/stderr, appended to on every start."""
        return self.base_dir / "postgres.log"

    @property
    def url(self) -> str:
        """The ``postgres`` superuser on the ``postgres`` database, at the first address."""
        return self.url_at(self.listen[0])

    def url_at(self, address: str, database: str = "postgres") -> str:
        """The superuser's URL through one of the addresses the server listens on."""
        host = f"[{address}]" if ":" in address else address
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    # -- internals ---------------------------------------------------------------------

    def _as_owner(self) -> dict[str, Any]:
        if self._owner is None:
            return {}
        uid, gid = self._owner
        return {"user": uid, "group": gid, "extra_groups": []}

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                # Skips the final fsync of ~40 MB: a throwaway cluster, and much faster.
                "--no-sync",
            ],
            env=server_env(),
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._as_owner(),
        )
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise RuntimeError(
                f"initdb failed (exit {result.returncode}) in {self.base_dir}:\n"
                f"{result.stdout}{result.stderr}"
            )
        addresses = ",".join(self.listen)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# postgres.py: a private test server\n"
                f"listen_addresses = '{addresses}'\n"
                f"port = {self.port}\n"
                # No socket file, so no clash with the shared server's socket directory.
                "unix_socket_directories = ''\n"
                # Data outlives a killed server either way (the OS keeps what was written);
                # fsync only guards against the machine itself crashing.
                "fsync = off\n"
                "shared_buffers = 16MB\n"
                "logging_collector = off\n"
            )
        with (self.data_dir / "pg_hba.conf").open("a") as hba:
            # The server listens only on the addresses given, so whoever reaches it may log in.
            hba.write("host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n")


def _os_user_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(_OS_USER)
    except KeyError:
        raise NoPostgres(
            f"we are root and there is no {_OS_USER!r} OS user to run initdb and the server as "
            "(Debian's postgresql package creates it)"
        ) from None
    return entry.pw_uid, entry.pw_gid


def server_env() -> dict[str, str]:
    # PGDATA, PGPORT, PGOPTIONS & co. of the caller must not redirect the private server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env
