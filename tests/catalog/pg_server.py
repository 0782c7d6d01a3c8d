"""A real PostgreSQL server for the catalog tests: initdb and pg_ctl in a temporary folder,
on a free port, stopped at the end of the session. Debian's postgresql-15 package (or any
version) provides the binaries under /usr/lib/postgresql/*/bin; without them the PostgreSQL
half of the catalog tests is skipped, saying so. Debian's server has no pgvector; the PyPI
package pgserver bundles a PostgreSQL 16 with pgvector, whose binaries the vector tests start
the same way (its Python code, which would want fasteners and psutil, is never imported)."""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    return next((Path(f) for f in folders if (Path(f) / "initdb").exists()), None)


def pgvector_binaries() -> Path | None:
    """The bin folder of the PostgreSQL that the pgserver package bundles (with pgvector)."""
    spec = importlib.util.find_spec("pgserver")  # finds the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = Path(folder) / "pginstall" / "bin"
        if (found / "initdb").exists():
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable_copy(bin_dir: Path, folder: Path) -> Path:
    """Binaries that nobody cannot reach (pgserver's, in a venv under /root), copied into the
    server's folder with what they find by relative paths: lib/ and share/ beside bin/, and
    (pgserver's wheel) the libraries in ``../../../pgserver.libs``."""
    install = bin_dir.parent
    copy = folder / "pg" / install.parent.name / install.name
    shutil.copytree(install, copy, ignore=shutil.ignore_patterns("include"))
    libs = install.parent.parent / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, copy.parent.parent / "pgserver.libs")
    return copy / "bin"


@contextmanager
def server(bin_dir: Path | None = None) -> Iterator[str]:
    """Yields the URL of the server's ``postgres`` database (superuser ``postgres``)."""
    bin_dir = bin_dir or binaries()
    assert bin_dir is not None
    folder = Path(tempfile.mkdtemp(prefix="catalog-pg-", dir="/tmp"))
    data = folder / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as nobody
        shutil.chown(folder, "nobody")
        prefix = ["runuser", "-u", "nobody", "--"]
        if subprocess.run([*prefix, "test", "-x", str(bin_dir / "initdb")]).returncode:
            bin_dir = _reachable_copy(bin_dir, folder)
    port = free_port()
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "--no-sync", "-E", "UTF8"], check=True,
                   capture_output=True, cwd=folder)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                    "-l", str(folder / "log"), "-w", "start"], check=True,
                   capture_output=True, cwd=folder)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "-w", "stop"], capture_output=True, cwd=folder)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(admin_url: str, name: str) -> str:
    """A fresh database on the server (one per test: tests must not see each other's)."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name
