"""Shared fixtures: ``tests/helpers.py`` on the import path, and a real PostgreSQL server."""

from __future__ import annotations

import errno
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

#: Set to 1 (as CI does) to turn a missing PostgreSQL into a failure instead of a skip.
REQUIRE_POSTGRES_ENV = "OPENAUTOGLM_REQUIRE_POSTGRES"
PG_DATABASE = "openautoglm_test"


def _postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL bin directory (initdb and pg_ctl are not on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(
            f"{reason} ({REQUIRE_POSTGRES_ENV}=1, so PostgreSQL tests must run; "
            "install it with `apt-get install -y postgresql`)",
            pytrace=False,
        )
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PG_CONTROL: dict[str, Any] = {}


@pytest.fixture
def postgres_server(postgres_url: str) -> Iterator[dict[str, Any]]:
    """``{"url", "stop", "start"}`` of the session's PostgreSQL; it is running again afterwards."""
    yield {"url": postgres_url, **_PG_CONTROL}
    try:
        _PG_CONTROL["start"]()
    except BaseException:  # noqa: BLE001 (already running: pg_ctl start fails, which is fine)
        pass


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server (trust auth, private port and socket dir) and database.

    Yields ``postgresql://postgres@127.0.0.1:PORT/openautoglm_test``; the server is stopped
    and its data directory removed at the end of the session.
    """
    bindir = _postgres_bin()
    if bindir is None:
        _unavailable("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    try:
        import psycopg2  # noqa: F401  (RDBStorage's driver)
    except ImportError:
        _unavailable("psycopg2 is not installed (pip install psycopg2-binary)")

    # Not under pytest's tmp_path: its parents are 0700 root, which the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="openautoglm-pg-"))
    data, sockdir, log = root / "data", root / "sock", root / "server.log"
    sockdir.mkdir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root.
        as_postgres = ["runuser", "-u", "postgres", "--"]
        for p in (root, sockdir):
            shutil.chown(p, "postgres", "postgres")

    def run(*cmd: str) -> None:
        proc = subprocess.run([*as_postgres, *cmd], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            pytest.fail(
                f"PostgreSQL set-up failed: {' '.join(cmd)} exited {proc.returncode}\n"
                f"{proc.stdout}\n{proc.stderr}\n{server_log}",
                pytrace=False,
            )

    port = _free_port()
    started = False
    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        # One server for the whole session: every RDBStorage a test opens keeps its pool (up to 5
        # connections) in the pytest process, and the operators' pools come on top. 50 ran out once
        # the fault tests (issue 13) were added; 200 leaves room.
        opts = f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", opts, "start")
        started = True
        # For tests that take the server away and bring it back (postgres_server).
        _PG_CONTROL.update(
            stop=lambda: run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"),
            start=lambda: run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", opts, "start"),
        )
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", PG_DATABASE)
        yield f"postgresql://postgres@127.0.0.1:{port}/{PG_DATABASE}"
    finally:
        if started:
            subprocess.run(
                [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def _prometheus_binary():
    import shutil

    return shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)


@pytest.fixture
def prometheus_server(tmp_path):
    """Start a real Prometheus (Debian's package) scraping the targets given to ``start``."""
    import socket
    import subprocess
    import time
    import urllib.request

    import yaml

    binary = _prometheus_binary()
    if binary is None:
        message = "prometheus is not installed (scripts/install-services.sh installs it)"
        if (
            os.environ.get("OPENAUTOGLM_REQUIRE_PROMETHEUS") == "1"
            or os.environ.get("OPENAUTOGLM_REQUIRE_POSTGRES") == "1"
        ):
            pytest.fail(message)
        pytest.skip(message)
    procs = []

    def start(targets: list[dict]) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
            "scrape_configs": [{"job_name": "trials", "static_configs": targets}],
        }
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return url
            except OSError:
                time.sleep(0.2)
        pytest.fail("prometheus did not become ready:\n" + (tmp_path / "prometheus.log").read_text()[-2000:])

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


class SmallVolume:
    """A 256 KiB tmpfs: a volume that really fills up (ENOSPC from the kernel, short writes and all)."""

    SIZE = "256k"

    def __init__(self, path: Path):
        self.path = path
        self.ballast = path / "ballast"

    def fill(self) -> int:
        """Write a ballast file until the kernel refuses more; returns the bytes it took. What is
        left is the slack in the last page of each file already there."""
        written = 0
        with open(self.ballast, "ab", buffering=0) as f:
            while True:
                try:
                    n = f.write(b"\0" * 4096)
                except OSError as err:
                    assert err.errno == errno.ENOSPC, err
                    return written
                written += n or 0

    def free(self) -> None:
        self.ballast.unlink()


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[SmallVolume]:
    """A 256 KiB tmpfs mounted for the test (root only), always unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small-volume"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SmallVolume.SIZE}", "tmpfs", str(mnt)], check=True)
    try:
        yield SmallVolume(mnt)
    finally:
        # A process of the test still holding a file there (it outlived the test): detach anyway.
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


# ----------------------------------------------------------------------------- the house rules' mypy run
# tests/unit/test_house_rules.py's mypy run starts as soon as the session has collected that test, in a
# process of its own, so that its cold run (no .mypy_cache/ yet, as in a fresh clone: ~15 s) overlaps with
# the tests before it instead of adding to the suite's time.
REPO = TESTS_DIR.parent
MYPY_TEST = "test_mypy_is_clean"
_MYPY = pytest.StashKey[subprocess.Popen[str]]()


def start_mypy(*options: str) -> subprocess.Popen[str]:
    """mypy over the shipped code, as pyproject.toml's [tool.mypy] says; output on stdout."""
    return subprocess.Popen(
        [sys.executable, "-m", "mypy", "--cache-dir", str(REPO / ".mypy_cache"), *options],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.name == MYPY_TEST for item in session.items):
        session.config.stash[_MYPY] = start_mypy()


def pytest_unconfigure(config: pytest.Config) -> None:
    proc = config.stash.get(_MYPY, None)
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture
def mypy_result(request: pytest.FixtureRequest) -> tuple[int, str]:
    """(exit status, output) of the run started at collection (or of one started now, where that
    hook did not run). A failing run is repeated without reading the cache (which it rewrites):
    mypy's incremental mode has reported a module's attribute missing after a package was
    restructured, until the cache was rebuilt."""
    run = request.config.stash.get(_MYPY, None) or start_mypy()
    output, _ = run.communicate(timeout=300)
    if run.returncode != 0:
        run = start_mypy("--no-incremental")
        output, _ = run.communicate(timeout=300)
    return run.returncode, output
