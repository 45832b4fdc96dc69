"""Self-tests of test/run_sqllogictest.py: plain DuckDB SQL, no extension needed.

They prove the runner passes what should pass AND fails what should fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import duckdb_cli

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "test" / "run_sqllogictest.py"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def run(*args: str | Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, str(RUNNER), *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=timeout)


def last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout.strip().splitlines()[-1]


PASSING = """
# name: passing.test
# description: everything in here must pass
# group: [runner]

statement ok
CREATE TABLE t(a INTEGER, b VARCHAR, c DOUBLE, d BOOLEAN)

statement ok
INSERT INTO t VALUES
    (1, 'x', 0.1, true),
    (2, NULL, 1e20, false),
    (3, '', NULL, NULL)

query ITRT
SELECT a, b, c, d
FROM t
ORDER BY a
----
1	x	0.1	true
2	NULL	1e+20	false
3	(empty)	NULL	NULL

query I rowsort
SELECT a FROM t
----
3
1
2

query I valuesort
SELECT a FROM t
----
2
3
1

query II
SELECT 1, 2
----
1
2

query T
SELECT [1, 2, 3]
----
[1, 2, 3]

query T
SELECT DATE '2024-01-15' + INTERVAL 1 DAY
----
2024-01-16 00:00:00

statement error
SELECT * FROM no_such_table
----
Table with name no_such_table does not exist

statement error
SELECT CAST('abc' AS INTEGER)
----
<REGEX>:Conversion Error.*abc

statement error
SELECT * FROM also_missing

statement maybe
DROP TABLE never_existed

query I
CALL range(2)
----
0
1

mode skip

statement ok
THIS IS NOT SQL

mode unskip

skipif duckdb
statement ok
NOR IS THIS

onlyif duckdb
query I
SELECT 7
----
7

halt

statement ok
AFTER HALT NOTHING RUNS
"""


def extra_duckdb(version: str) -> str:
    d = Path(os.environ.get("AI_BATCH_EXTRA_DUCKDB", ROOT / ".venv/duckdb-versions")) / version
    if not d.is_dir():
        pytest.skip(f"duckdb {version} not installed at {d} (make venv)")
    return str(d)


@pytest.fixture(params=["python", "python:2.0.0", "cli"])
def host(request) -> list[str]:
    """`--host` arguments: this Python's duckdb, the 2.0.0 wheel, the PyPI duckdb CLI."""
    if request.param == "cli":
        return ["--host", f"cli:{duckdb_cli()}"]
    if request.param == "python:2.0.0":
        return ["--host", f"python:{extra_duckdb('2.0.0')}"]
    return []


HOST_LABEL = {"python": "[python ", "python:2.0.0": "[python 2.0.0]", "cli": "[cli 1.5.6]"}


def test_passing_file(tmp_path, host, request):
    p = write(tmp_path, "passing.test", PASSING)
    proc = run(*host, p)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"PASS {p}" in proc.stdout
    assert HOST_LABEL[request.node.callspec.params["host"]] in proc.stdout, proc.stdout
    assert last_line(proc) == "1 passed, 0 failed"


def test_wrong_result_fails_with_file_line_expected_and_actual(tmp_path):
    p = write(tmp_path, "wrong.test", """
        statement ok
        CREATE TABLE t AS SELECT 1 AS a

        query I
        SELECT a FROM t
        ----
        2
        """)
    proc = run(p)
    assert proc.returncode == 1
    assert f"FAIL {p}:4: wrong result" in proc.stdout
    assert "expected (1 rows):" in proc.stdout and "actual (1 rows):" in proc.stdout
    assert last_line(proc) == "0 passed, 1 failed"


@pytest.mark.parametrize("body, needle", [
    # statement error that succeeds
    ("statement error\nSELECT 1\n----\nwhatever\n", "should have failed but succeeded"),
    # statement error with the wrong message
    ("statement error\nSELECT * FROM nope\n----\ncompletely different\n", "unexpected message"),
    # statement ok that fails
    ("statement ok\nSELECT * FROM nope\n", "statement failed"),
    # query that fails
    ("query I\nSELECT * FROM nope\n----\n1\n", "query failed"),
    # wrong column count
    ("query I\nSELECT 1, 2\n----\n1\t2\n", "column(s) but the record declares"),
    # wrong row count
    ("query I\nSELECT * FROM range(2)\n----\n0\n", "wrong result"),
    # NULL is not the empty string
    ("query T\nSELECT ''\n----\nNULL\n", "wrong result"),
    # rowsort does not hide a wrong value
    ("query I rowsort\nSELECT * FROM range(2)\n----\n1\n2\n", "wrong result"),
    # unsupported commands fail loudly instead of being ignored
    ("loop i 0 3\n\nstatement ok\nSELECT 1\n\nendloop\n", "not supported"),
    # unset ${VAR}
    ("query T\nSELECT '${SLT_SELFTEST_UNSET_VAR}'\n----\nx\n", "SLT_SELFTEST_UNSET_VAR is not set"),
    # require our extension without --extension
    ("require ai_batch\n\nstatement ok\nSELECT 1\n", "not given --extension"),
])
@pytest.mark.parametrize("cli", [False, True], ids=["python", "cli"])
def test_failures_are_detected(tmp_path, body, needle, cli):
    p = write(tmp_path, "fails.test", body)
    env = {k: v for k, v in os.environ.items() if k != "SLT_SELFTEST_UNSET_VAR"}
    hosts = ["--host", f"cli:{duckdb_cli()}"] if cli else []
    proc = subprocess.run([sys.executable, str(RUNNER), *hosts, str(p)], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"FAIL {p}:1" in proc.stdout
    assert needle in proc.stdout, proc.stdout
    assert last_line(proc) == "0 passed, 1 failed"


def test_mixed_files_count_files_and_continue_after_a_failure(tmp_path):
    bad = write(tmp_path, "a_bad.test", "statement ok\nSELECT * FROM nope\n")
    good = write(tmp_path, "b_good.test", "query I\nSELECT 1\n----\n1\n")
    proc = run(bad, good)
    assert proc.returncode == 1
    assert f"FAIL {bad}:1" in proc.stdout
    assert f"PASS {good}" in proc.stdout
    assert last_line(proc) == "1 passed, 1 failed"


def test_env_substitution_test_dir_and_restart(tmp_path, host):
    p = write(tmp_path, "env.test", """
        require-env SLT_SELFTEST_VALUE

        query T
        SELECT '${SLT_SELFTEST_VALUE}'
        ----
        hello

        statement ok
        CREATE TABLE kept AS SELECT 42 AS v

        restart

        query I
        SELECT v FROM kept
        ----
        42

        statement ok
        COPY kept TO '__TEST_DIR__/kept.csv'

        query I
        SELECT v FROM read_csv('__TEST_DIR__/kept.csv')
        ----
        42

        load __TEST_DIR__/other.duckdb

        statement error
        SELECT v FROM kept
        ----
        kept
        """)
    proc = run(*host, p, env={"SLT_SELFTEST_VALUE": "hello"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert last_line(proc) == "1 passed, 0 failed"


def test_require_env_unset_skips_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SLT_SELFTEST_ABSENT"}
    p = write(tmp_path, "skip.test", "require-env SLT_SELFTEST_ABSENT\n\nstatement ok\nNOT SQL\n")
    proc = subprocess.run([sys.executable, str(RUNNER), str(p)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout
    assert f"SKIP {p}" in proc.stdout
    assert proc.stdout.strip().splitlines()[-2:] == ["1 skipped", "0 passed, 0 failed"]


def test_hanging_file_is_reported_as_that_file_failing(tmp_path):
    slow = write(tmp_path, "a_slow.test", """
        statement ok
        SELECT 1

        query I
        SELECT count(*) FROM range(1000000000000) t
        ----
        0
        """)
    good = write(tmp_path, "b_good.test", "query I\nSELECT 1\n----\n1\n")
    proc = run("--timeout", "3", slow, good)
    assert proc.returncode == 1
    assert f"FAIL {slow}:4: timed out" in proc.stdout
    assert f"PASS {good}" in proc.stdout
    assert last_line(proc) == "1 passed, 1 failed"


def test_require_loads_the_given_extension_file(tmp_path):
    # Not a real extension: LOAD must fail, and the failure must fail the file.
    fake = tmp_path / "ai_batch.duckdb_extension"
    fake.write_bytes(b"not an extension")
    p = write(tmp_path, "req.test", "require ai_batch\n\nstatement ok\nSELECT 1\n")
    proc = run("--extension", fake, p)
    assert proc.returncode == 1
    assert f"FAIL {p}:1" in proc.stdout
    assert last_line(proc) == "0 passed, 1 failed"


def test_no_files_is_an_error():
    proc = run()
    assert proc.returncode != 0


def test_every_file_runs_in_every_host_and_a_host_difference_fails_that_run(tmp_path):
    # The same file answers differently in the two hosts: only the python run must fail.
    p = write(tmp_path, "version.test", "query T\nSELECT library_version FROM pragma_version()\n----\nv1.5.6\n")
    good = write(tmp_path, "good.test", "query I\nSELECT 42\n----\n42\n")
    proc = run("--host", "python", "--host", f"cli:{duckdb_cli()}", p, good)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(ln.startswith(f"FAIL {p}:1: wrong result") and ln.endswith("[python 2.0.1]") for ln in lines), lines
    assert f"PASS {p} (1 records) [cli 1.5.6]" in lines
    assert f"PASS {good} (1 records) [python 2.0.1]" in lines and f"PASS {good} (1 records) [cli 1.5.6]" in lines
    assert last_line(proc) == "3 passed, 1 failed"


def test_cli_host_keeps_null_empty_and_multiline_text_apart(tmp_path):
    p = write(tmp_path, "values.test",
              "query TTTI\nSELECT NULL, '', 'a,\"b\"', 7\n----\nNULL\t(empty)\ta,\"b\"\t7\n")
    proc = run("--host", f"cli:{duckdb_cli()}", p)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A value with a newline is still one row of two values (shown in the failure).
    p = write(tmp_path, "newline.test", "query TI\nSELECT 'a' || chr(10) || 'b', 2\n----\nx\t2\n")
    proc = run("--host", f"cli:{duckdb_cli()}", p)
    assert proc.returncode == 1 and "wrong result" in proc.stdout, proc.stdout
    assert "actual (1 rows):\n      a\n      b\t2\n" in proc.stdout, proc.stdout


def test_cli_host_that_never_answers_fails_the_file(tmp_path):
    p = write(tmp_path, "hang.test", "statement ok\nSELECT 'never closed\n")
    good = write(tmp_path, "b_good.test", "query I\nSELECT 1\n----\n1\n")
    proc = run("--timeout", "5", "--host", f"cli:{duckdb_cli()}", p, good)
    assert proc.returncode == 1
    assert f"FAIL {p}:1: timed out" in proc.stdout
    assert f"PASS {good}" in proc.stdout


def test_unknown_host_is_an_error(tmp_path):
    p = write(tmp_path, "a.test", "query I\nSELECT 1\n----\n1\n")
    proc = run("--host", "jdbc", p)
    assert proc.returncode == 2 and "unknown host" in proc.stderr
