"""The extension loads into every DuckDB our users run, refuses older ones cleanly,
creates its tables on first use (never at LOAD), and lets the database close."""

import os
import pathlib
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from conftest import duckdb_cli

EXTRA = os.environ.get("AI_BATCH_EXTRA_DUCKDB") or str(pathlib.Path(__file__).resolve().parents[2] / ".venv/duckdb-versions")


def run_py(code: str, pythonpath: str | None = None, timeout: float = 60, env_extra=None):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def owned_tables(con):
    return sorted(r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name IN ('batch_jobs','batch_items','ai_analyses')").fetchall())


def test_load_creates_nothing_first_call_creates_tables(connect):
    con = connect()
    assert owned_tables(con) == []
    # DESCRIBE binds but never executes: still nothing created.
    con.execute("DESCRIBE SELECT * FROM batch_history()").fetchall()
    assert owned_tables(con) == []
    assert con.execute("SELECT count(*) FROM batch_history()").fetchone()[0] == 0
    assert owned_tables(con) == ["ai_analyses", "batch_items", "batch_jobs"]
    # Idempotent: a second call works and creates nothing new.
    assert con.execute("SELECT count(*) FROM batch_history()").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM batch_items").fetchone()[0] == 0


@pytest.mark.parametrize("version", ["2.0.0"])
def test_loads_in_other_python_wheels(ext, tmp_path, version):
    path = os.path.join(EXTRA, version)
    if not os.path.isdir(path):
        pytest.fail(f"duckdb {version} not installed in {path} (make venv)")
    r = run_py(f"""
        import duckdb
        assert duckdb.__version__ == {version!r}, duckdb.__version__
        con = duckdb.connect({str(tmp_path / 'x.duckdb')!r}, config={{'allow_unsigned_extensions': 'true'}})
        con.execute("LOAD '{ext}'")
        print(con.execute("SELECT count(*) FROM batch_history()").fetchone()[0])
        print(con.execute("SELECT count(*) FROM batch_jobs").fetchone()[0])
        con.close()
    """, pythonpath=path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0"]


@pytest.mark.parametrize("version", ["1.5.5", "1.4.4"])
def test_older_duckdb_refuses_cleanly(ext, tmp_path, version):
    path = os.path.join(EXTRA, version)
    if not os.path.isdir(path):
        pytest.fail(f"duckdb {version} not installed in {path} (make venv)")
    r = run_py(f"""
        import duckdb
        assert duckdb.__version__ == {version!r}, duckdb.__version__
        con = duckdb.connect(config={{'allow_unsigned_extensions': 'true'}})
        try:
            con.execute("LOAD '{ext}'")
            print("LOADED")
        except Exception as e:
            print("REFUSED:", e)
        print(con.execute("SELECT 42").fetchone()[0])
    """, pythonpath=path)
    assert r.returncode == 0, f"process crashed: rc={r.returncode} {r.stderr[-2000:]}"
    assert "REFUSED:" in r.stdout, r.stdout
    assert "v1.5.6" in r.stdout, r.stdout   # DuckDB names the version it needs
    assert r.stdout.strip().endswith("42")  # and the database still works


def test_loads_in_duckdb_cli(ext, tmp_path):
    cli = duckdb_cli()
    db = tmp_path / "cli.duckdb"
    r = subprocess.run([cli, "-unsigned", "-csv", str(db), "-c",
                        f"LOAD '{ext}'; SELECT version() AS v, count(*) AS n FROM batch_history();"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "v1.5.6,0" in r.stdout, r.stdout
    # The tables were written into the user's file.
    con = duckdb.connect(str(db))
    assert owned_tables(con) == ["ai_analyses", "batch_items", "batch_jobs"]
    con.close()


def test_cli_exit_leaves_no_wal(ext, tmp_path):
    cli = duckdb_cli()
    db = tmp_path / "wal.duckdb"
    r = subprocess.run([cli, "-unsigned", str(db), "-c", f"LOAD '{ext}'; SELECT * FROM batch_history();"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert db.exists()
    assert not pathlib.Path(str(db) + ".wal").exists()


def test_close_releases_file_for_other_process(ext, tmp_path):
    db = tmp_path / "lock.duckdb"
    con = duckdb.connect(str(db), config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ext}'")
    con.execute("SELECT * FROM batch_history()").fetchall()
    con.close()
    # Another process can open the file read-write within a few seconds.
    code = f"""
        import duckdb, time
        deadline = time.time() + 5
        while True:
            try:
                c = duckdb.connect({str(db)!r}); break
            except Exception as e:
                if time.time() > deadline: raise
                time.sleep(0.05)
        print(c.execute("SELECT count(*) FROM batch_jobs").fetchone()[0])
    """
    t0 = time.time()
    r = run_py(code, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"
    assert time.time() - t0 < 10


def test_reopen_same_path_in_same_process(ext, tmp_path):
    # Run in a subprocess: a regression here hangs forever (instance cache spin).
    db = tmp_path / "reopen.duckdb"
    r = run_py(f"""
        import duckdb, time
        for i in range(5):
            t0 = time.time()
            con = duckdb.connect({str(db)!r}, config={{'allow_unsigned_extensions': 'true'}})
            con.execute("LOAD '{ext}'")
            con.execute("SELECT * FROM batch_history()").fetchall()
            con.close()
        print("ok")
    """, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_closing_one_of_two_connections_keeps_working(connect, tmp_path):
    con = connect()
    other = con.cursor()
    other.close()
    time.sleep(0.5)  # several watchdog polls
    assert con.execute("SELECT count(*) FROM batch_history()").fetchone()[0] == 0


def test_auto_release_off_and_explicit_release(ext, tmp_path):
    db = tmp_path / "manual.duckdb"
    r = run_py(f"""
        import duckdb
        con = duckdb.connect({str(db)!r}, config={{'allow_unsigned_extensions': 'true'}})
        con.execute("LOAD '{ext}'")
        con.execute("SELECT * FROM batch_history()").fetchall()
        print(con.execute("SELECT * FROM batch_release()").fetchone()[0])
        try:
            con.execute("SELECT * FROM batch_history()").fetchall()
            print("still works")
        except Exception as e:
            print("ERR", str(e).splitlines()[0])
        con.close()
        con = duckdb.connect({str(db)!r})  # same path again: must not hang
        print(con.execute("SELECT count(*) FROM batch_jobs").fetchone()[0])
    """, timeout=60, env_extra={"AI_BATCH_AUTO_RELEASE": "0"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "True"
    assert lines[1].startswith("ERR") and "batch_history" in lines[1] and "LOAD" in lines[1], lines[1]
    assert lines[2] == "0"


def test_read_only_database(ext, tmp_path):
    db = tmp_path / "ro.duckdb"
    # A read-only file without our tables: a clear error saying so.
    duckdb.connect(str(db)).close()
    con = duckdb.connect(str(db), read_only=True, config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ext}'")
    with pytest.raises(duckdb.Error, match="batch_history: .*read-only"):
        con.execute("SELECT * FROM batch_history()").fetchall()
    con.close()
    time.sleep(0.5)
    # Create the tables read-write, then read them read-only.
    con = duckdb.connect(str(db), config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ext}'")
    con.execute("SELECT * FROM batch_history()").fetchall()
    con.execute("INSERT INTO batch_jobs (job_id, provider, processor, model, status) "
                "VALUES ('job_ro', 'openai', 'product-labeling', 'gpt-4o-mini', 'completed')")
    con.close()
    time.sleep(0.5)
    con = duckdb.connect(str(db), read_only=True, config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ext}'")
    assert con.execute("SELECT job_id, status FROM batch_history()").fetchall() == [("job_ro", "completed")]
    assert con.execute("SELECT count(*) FROM batch_details('job_ro')").fetchone()[0] == 1
    con.close()
