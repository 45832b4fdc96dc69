"""Shared pytest fixtures: where the built extension is, and how to open a database with it."""

import os
import pathlib
import shutil
import signal
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def extension_path() -> str:
    p = os.environ.get("AI_BATCH_EXTENSION") or str(ROOT / "build/release/ai_batch.duckdb_extension")
    return str(pathlib.Path(p).resolve())


def duckdb_cli() -> str:
    """The `duckdb` CLI from PyPI (duckdb-cli), next to this Python or on PATH."""
    beside = pathlib.Path(sys.executable).parent / "duckdb"
    if beside.exists():
        return str(beside)
    found = shutil.which("duckdb")
    if not found:
        pytest.skip("duckdb CLI not installed (make venv installs duckdb-cli)")
    return found


@pytest.fixture(scope="session")
def ext() -> str:
    p = extension_path()
    if not os.path.exists(p):
        pytest.fail(f"extension not built: {p} (run make)")
    return p


@pytest.fixture
def connect(ext, tmp_path):
    """connect(path=None, **config) -> a duckdb connection with ai_batch loaded."""
    import duckdb

    opened = []

    def _connect(path=None, read_only=False, load=True, **config):
        path = str(path or (tmp_path / "test.duckdb"))
        cfg = {"allow_unsigned_extensions": "true", **config}
        con = duckdb.connect(path, read_only=read_only, config=cfg)
        if load:
            con.execute(f"LOAD '{ext}'")
        opened.append(con)
        return con

    yield _connect
    for con in opened:
        try:
            con.close()
        except Exception:
            pass


def import_sample(con, glob: str | None = None) -> int:
    """Creates the gh-analysis schema and imports the sample issues; returns the issue count."""
    con.execute((ROOT / "sql/schema.sql").read_text())
    con.execute("SET VARIABLE issues_glob = ?", [glob or str(ROOT / "data/sample/issues/*.json")])
    con.execute((ROOT / "sql/import_issues.sql").read_text()).fetchall()
    return con.execute("SELECT count(*) FROM issues").fetchall()[0][0]


def ctrl_c_as_in_a_terminal() -> None:
    """`preexec_fn` for a child that is sent SIGINT: the default action, as under a
    terminal. A program started in the background of a non-interactive shell (`cmd &`, as
    CI runners and scripts may do) inherits SIGINT *ignored*; Python and the duckdb shell
    then install no handler of their own, and the Ctrl-C a test sends would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
