"""Edges of batch_submit that need a key, the network or a second process: transport
failures that provably sent nothing say so, an id column beyond BIGINT is named, a user
table in the way of ours stops a real submit before anything is created or sent, and
request files left in the spool by a killed submit are cleaned by the next one, never a
file a running submit still uses.

Real DuckDB, real HTTP over loopback to the fake provider (fake_provider/)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pytest

from conftest import ROOT, extension_path, import_sample

sys.path.insert(0, str(ROOT))
from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: E402,F401
from test_submit import db, env  # noqa: E402,F401  (key, base URL and spool; 17 sample issues)

PL = "product-labeling"


def sent_to_provider(fake) -> list:
    return [r for r in fake.state()["requests"] if r["path"].startswith("/v1")]


def our_objects(con) -> list[str]:
    return sorted(
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name IN ('batch_jobs', 'batch_items', 'ai_analyses') "
            "UNION ALL SELECT view_name FROM duckdb_views() WHERE view_name = 'product_labels' "
            "UNION ALL SELECT sequence_name FROM duckdb_sequences() WHERE sequence_name IN ('batch_jobs_id_seq', 'batch_items_id_seq', 'ai_analyses_id_seq')"
        ).fetchall()
    )


# ----------------------------------------------------------------------------- transport failures


def unused_loopback_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def resolver_fails_fast(host: str) -> str | None:
    """None when `host` fails to resolve within 5 s (the local resolver answers), else why
    the test cannot run here."""
    result: list = []

    def lookup():
        try:
            socket.getaddrinfo(host, 443)
            result.append("resolved")
        except OSError:
            result.append("failed")

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(5)
    if not result:
        return "the local resolver does not answer within 5 s"
    if result[0] == "resolved":
        return f"the local resolver resolves {host}"
    return None


@pytest.mark.parametrize("failure", ["connection refused", "host not found"])
def test_a_request_that_never_left_says_nothing_was_sent(db, failure):
    if failure == "connection refused":
        base_url, kind = f"http://127.0.0.1:{unused_loopback_port()}/v1", "could not connect"
    else:
        # `.invalid` never resolves (RFC 6761): only the local resolver is asked, nothing
        # else on the network.
        host = "ai-batch-test.invalid"
        why = resolver_fails_fast(host)
        if why:
            pytest.skip(why)
        base_url, kind = f"https://{host}/v1", "could not resolve the host"
    (status, message), = db.execute(
        f"SELECT status, message FROM batch_submit('{PL}', [1], base_url := ?)", [base_url]
    ).fetchall()
    assert status == "failed", message
    assert kind in message, message
    assert "the request did not reach OpenAI, nothing was sent" in message, message
    assert "may have reached" not in message, message
    err = db.execute("SELECT error_message FROM batch_jobs").fetchall()[0][0]
    assert "nothing was sent" in err and "may have reached" not in err, err


# ----------------------------------------------------------------------------- ids beyond BIGINT


@pytest.mark.parametrize("expr, shown", [
    ("18446744073709551615::UBIGINT", "18446744073709551615"),
    ("170141183460469231731687303715884105727::HUGEINT", "170141183460469231731687303715884105727"),
    ("(-170141183460469231731687303715884105727)::HUGEINT", "-170141183460469231731687303715884105727"),
])
def test_selection_sql_id_beyond_bigint_is_named(db, env, expr, shown):
    with pytest.raises(duckdb.Error) as ei:
        db.execute(f"SELECT * FROM batch_submit('{PL}', $$SELECT {expr} AS id UNION ALL SELECT 1$$)").fetchall()
    msg = str(ei.value)
    assert f"batch_submit: issue id {shown} is out of range: issue ids are BIGINT" in msg, msg
    assert "-9223372036854775808 to" in msg and "single SELECT" not in msg, msg
    assert sent_to_provider(env) == []
    assert our_objects(db) == []


# ----------------------------------------------------------------------------- user tables in the way


def test_user_batch_items_stops_a_real_submit_before_anything(connect, env):
    con = connect()
    import_sample(con)
    con.execute("CREATE TABLE batch_items (id INTEGER, note VARCHAR)")
    with pytest.raises(duckdb.Error) as ei:
        con.execute(f"SELECT * FROM batch_submit('{PL}', '*')").fetchall()
    msg = str(ei.value)
    assert "batch_submit: the table batch_items was not created by this version of ai_batch: it lacks the column(s) " \
           "batch_job_id, issue_id, custom_id, status" in msg, msg
    assert "ALTER TABLE batch_items RENAME TO my_batch_items" in msg, msg
    assert "Binder Error" not in msg and "LINE 1" not in msg, msg
    # Nothing of ours was created beside it, nothing was sent.
    assert our_objects(con) == ["batch_items"]
    assert sent_to_provider(env) == []
    # Once it is out of the way, the same call works.
    con.execute("ALTER TABLE batch_items RENAME TO my_batch_items")
    (status, submitted), = con.execute(f"SELECT status, submitted FROM batch_submit('{PL}', [1, 2])").fetchall()
    assert (status, submitted) == ("validating", 2)
    assert our_objects(con) == [
        "ai_analyses", "ai_analyses_id_seq", "batch_items", "batch_items_id_seq", "batch_jobs",
        "batch_jobs_id_seq", "product_labels",
    ]


def test_issues_without_org_stops_a_real_submit_before_anything(connect, env):
    con = connect()
    con.execute("CREATE TABLE issues (id BIGINT, repo VARCHAR, number INTEGER, title VARCHAR, body VARCHAR, state VARCHAR)")
    con.execute("INSERT INTO issues VALUES (1, 'widgets', 1, 'a title', 'a body', 'open')")
    with pytest.raises(duckdb.Error) as ei:
        con.execute(f"SELECT * FROM batch_submit('{PL}', [1], org := 'acme')").fetchall()
    msg = str(ei.value)
    assert "batch_submit: issues lacks the column(s) org that ai_batch reads" in msg, msg
    assert "Binder Error" not in msg, msg
    assert our_objects(con) == []
    assert sent_to_provider(env) == []


# ----------------------------------------------------------------------------- the spool


def spool_files(spool: Path) -> set[str]:
    return {p.name for p in spool.glob("job_*.jsonl")} if spool.exists() else set()


def test_killed_submit_leftovers_are_cleaned_but_never_a_running_submits_file(tmp_path, fake_openai, monkeypatch):
    spool = tmp_path / "spool"
    path = tmp_path / "spool.duckdb"
    con = duckdb.connect(str(path))
    import_sample(con)
    con.close()
    key = fake_openai.api_key
    child_env = dict(os.environ, OPENAI_API_KEY=key, OPENAI_BASE_URL=fake_openai.base_url,
                     AI_BATCH_SPOOL_DIR=str(spool), AI_BATCH_FAILPOINT="submit_after_record")
    # Killed (kill -9) twice during the build: each leaves its complete request file.
    for ids in ([1, 2, 3], [4, 5]):
        prog = textwrap.dedent(f"""
            import duckdb
            con = duckdb.connect({str(path)!r}, config={{'allow_unsigned_extensions': 'true'}})
            con.execute("LOAD '{extension_path()}'")
            con.execute("SELECT * FROM batch_submit('{PL}', {ids})").fetchall()
        """)
        r = subprocess.run([sys.executable, "-c", prog], env=child_env, capture_output=True, text=True, timeout=120)
        assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    # The second killed submit removed the first one's file before its own build (both
    # used to stay).
    leftovers = spool_files(spool)
    assert len(leftovers) == 1, leftovers
    assert all((spool / f).stat().st_size > 0 for f in leftovers)

    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("AI_BATCH_SPOOL_DIR", str(spool))
    a = duckdb.connect(str(path), config={"allow_unsigned_extensions": "true"})
    a.execute(f"LOAD '{extension_path()}'")
    b = a.cursor()
    # A running submit: its upload is held back for 4 s, so its request file is in use.
    fake_openai.configure({"fault": {"kind": "delay", "delay": 4, "method": "POST", "path": "/v1/files"}})
    outcome: dict = {}

    def running():
        try:
            outcome["rows"] = a.execute(f"SELECT status, job_id FROM batch_submit('{PL}', [6, 7, 8])").fetchall()
        except Exception as e:  # noqa: BLE001
            outcome["error"] = e

    t = threading.Thread(target=running)
    t.start()
    deadline = time.time() + 30
    while time.time() < deadline and not (spool_files(spool) - leftovers):
        time.sleep(0.02)
    in_use = spool_files(spool) - leftovers
    assert len(in_use) == 1, (in_use, outcome)
    # Another submit meanwhile (it cleans once the running one has committed its job, and
    # that one's upload takes 4 s): it removes the leftovers of the killed ones, not the
    # live file.
    (status, _), = b.execute(f"SELECT status, job_id FROM batch_submit('{PL}', [9])").fetchall()
    assert status == "validating"
    assert t.is_alive(), "the running submit should still be uploading"
    assert spool_files(spool) == in_use
    t.join(60)
    assert "error" not in outcome, outcome
    (status, job_id), = outcome["rows"]
    assert status == "validating"
    # The running submit uploaded its whole file: three requests.
    file_id = a.execute("SELECT input_file_id FROM batch_jobs WHERE job_id = ?", [job_id]).fetchall()[0][0]
    lines = bytes(fake_openai.provider.files.data(file_id)).decode().splitlines()
    assert len(lines) == 3, lines
    # Every file is gone now: the live one removed by its own submit after the upload.
    assert spool_files(spool) == set()
    a.close()
