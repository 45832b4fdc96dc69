"""Issue 14: the budget guard (max_cost) and the account's queue limits (ai_batch_limits,
the `queued` state), end to end against the loopback fake provider, whose queue limit
refuses a batch with OpenAI's token_limit_exceeded and records the peak enqueued.

Run: AI_BATCH_EXTENSION=$PWD/build/release/ai_batch.duckdb_extension \
     .venv/bin/python -m pytest -q test/python/test_limits.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "test" / "python"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from conftest import ctrl_c_as_in_a_terminal, duckdb_cli  # noqa: E402
from fake_provider.answers import answer_for_request  # noqa: E402
from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: E402,F401
from test_lifecycle import (  # noqa: E402,F401  (db is a fixture)
    N,
    SCHEMA,
    check_job_invariants,
    db,
    fake_file,
    one,
    refresh,
    rows,
    snapshot,
    submit,
)

FOUR = "number < 104"  # 4 issues; max_requests_per_job := 1 makes 4 jobs


def tracking_rows(con):
    have = one(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'batch_jobs'")
    if not have:
        return None
    return snapshot(con)


# ----------------------------------------------------------------------------- max_cost


def test_max_cost_refuses_with_nothing_written_or_sent(db, fake_openai):
    estimate = one(db, f"SELECT sum(cost_estimate)::DOUBLE FROM batch_submit('product-labeling', "
                       f"$$SELECT id FROM issues WHERE {FOUR}$$, dry_run := true)")
    assert estimate > 0
    db.execute("SELECT * FROM batch_history()")  # the tracking tables exist, empty
    before = tracking_rows(db)
    with pytest.raises(Exception) as e:
        submit(db, FOUR, max_cost=estimate / 2)
    msg = str(e.value)
    assert "batch_submit: the estimated cost $" in msg, msg
    assert f"is above max_cost := {estimate / 2}" in msg, msg
    assert "nothing was written or sent" in msg and "4 issue(s) in 1 job(s)" in msg, msg
    assert "issue(s) fit: add max_issues := " in msg, msg
    fit = int(msg.split("add max_issues := ")[1].split(",")[0])
    assert 1 <= fit < 4, msg
    # Nothing written, nothing sent, no request file left in the spool.
    assert tracking_rows(db) == before
    st = fake_openai.state()
    assert st["counts"]["uploads"] == 0 and st["counts"]["batch_creates"] == 0
    # The same with several jobs, and in the dry run.
    with pytest.raises(Exception) as e:
        submit(db, FOUR, max_cost=estimate / 2, max_requests_per_job=1)
    assert "4 issue(s) in 4 job(s)" in str(e.value)
    with pytest.raises(Exception) as e:
        submit(db, FOUR, max_cost=estimate / 2, dry_run=True)
    assert "nothing was written or sent" in str(e.value)
    assert fake_openai.state()["counts"]["uploads"] == 0
    # What fits does fit: max_issues := fit goes through under the same budget.
    s = submit(db, FOUR, max_cost=estimate / 2, max_issues=fit)
    assert s["submitted"] == fit and s["status"] == "validating", s
    # At or above the estimate: sent.
    s = submit(db, "number >= 104", max_cost=1000.0)
    assert s["submitted"] == N - 4


def test_max_cost_with_an_unknown_price_is_refused(db, fake_openai):
    with pytest.raises(Exception) as e:
        submit(db, FOUR, model="my-own-model", max_cost=5.0)
    msg = str(e.value)
    assert "max_cost := 5 is set but no price is known for model 'my-own-model'" in msg, msg
    assert "nothing was written or sent" in msg
    assert tracking_rows(db) is None
    assert fake_openai.state()["counts"]["uploads"] == 0
    with pytest.raises(Exception, match="max_cost must be a cost in USD of 0 or more, got -1"):
        submit(db, FOUR, max_cost=-1.0)


# ----------------------------------------------------------------------------- queue limits


def fake_tokens(fake):
    """The fake's own count of the prompt tokens of each uploaded request file."""
    out = []
    for f in fake.state()["files"]:
        if f["purpose"] != "batch":
            continue
        data = fake_file(fake, f["id"])
        out.append(sum(answer_for_request(json.loads(line)["body"])[1]
                       for line in data.splitlines() if line.strip()))
    return out


def statuses(con):
    return [r[0] for r in con.execute("SELECT status FROM batch_jobs ORDER BY id").fetchall()]


def test_four_jobs_under_a_limit_that_fits_one_all_collected_never_over(db, fake_openai):
    dry = rows(db, f"SELECT * FROM batch_submit('product-labeling', $$SELECT id FROM issues WHERE {FOUR}$$, "
                   "dry_run := true, max_requests_per_job := 1)")
    toks = [r["estimated_input_tokens"] for r in dry]
    assert len(toks) == 4
    limit = int(max(toks) * 1.5)
    assert limit < 2 * min(toks)  # one job fits, two never do
    db.execute("CREATE TABLE ai_batch_limits (provider VARCHAR, model VARCHAR, max_enqueued_tokens BIGINT)")
    db.execute("INSERT INTO ai_batch_limits VALUES ('openai', 'gpt-4o-mini', ?)", [limit])

    out = rows(db, f"SELECT * FROM batch_submit('product-labeling', $$SELECT id FROM issues WHERE {FOUR}$$, "
                   "max_requests_per_job := 1)")
    order = [r[0] for r in db.execute("SELECT job_id FROM batch_jobs ORDER BY id").fetchall()]
    out = sorted(out, key=lambda r: order.index(r["job_id"]))
    assert [r["status"] for r in out] == ["validating", "queued", "queued", "queued"], [r["message"] for r in out]
    assert out[1]["provider_batch_id"] is None
    assert "waiting for room under the queue limit" in out[1]["message"], out[1]
    assert all("queue limit" in r["message"] for r in out[1:]), out
    # Every file is uploaded, one batch created; history says why the others wait.
    assert fake_openai.state()["counts"]["uploads"] == 4
    assert fake_openai.state()["counts"]["batch_creates"] == 1
    h = sorted(rows(db, "SELECT job_id, status, error_message FROM batch_history()"),
               key=lambda r: order.index(r["job_id"]))
    assert [r["status"] for r in h] == ["validating", "queued", "queued", "queued"]
    assert all("queue limit" in r["error_message"] for r in h[1:]), h
    # Items of queued jobs are pending, untouched.
    assert one(db, "SELECT count(*) FROM batch_items WHERE status = 'pending'") == 4

    # The fake's limit, in the fake's own token count: one batch fits, two never do.
    ft = fake_tokens(fake_openai)
    fake_limit = int(max(ft) * 1.5)
    assert fake_limit < 2 * min(ft)
    fake_openai.configure({"max_enqueued_tokens": fake_limit})

    seen = set()
    for _ in range(40):
        refresh(db)
        st = statuses(db)
        seen.add(sum(s not in ("queued", "completed") for s in st))
        if one(db, "SELECT count(*) FROM batch_jobs WHERE collected_at IS NULL") == 0:
            break
    assert statuses(db) == ["completed"] * 4
    assert max(seen) <= 1, seen  # never more than one job at the provider at once
    st = fake_openai.state()["counts"]
    assert st["limit_refusals"] == 0 and st["batch_creates"] == 4, st
    assert 0 < st["enqueued_peak"]["gpt-4o-mini"] <= fake_limit, st
    for (jid,) in db.execute("SELECT job_id FROM batch_jobs").fetchall():
        check_job_invariants(db, jid, fake_openai)
    assert one(db, "SELECT count(*) FROM ai_analyses") == 4
    assert one(db, "SELECT count(*) FROM batch_jobs WHERE status = 'failed'") == 0


def test_token_limit_exceeded_requeues_with_items_untouched(db, fake_openai):
    fake_openai.configure({"next_batch": {"outcome": "token_limit_exceeded"}})
    s = submit(db)
    jid, old_batch = s["job_id"], s["provider_batch_id"]
    r = refresh(db, jid)[0]
    assert r["status"] == "queued", r
    assert r["message"].startswith(f"queued again: the provider refused batch {old_batch} for its queue limit"), r
    assert "Enqueued token limit reached for gpt-4o-mini in organization org-fake" in r["message"]
    j = rows(db, "SELECT * FROM batch_jobs WHERE job_id = ?", [jid])[0]
    assert j["provider_batch_id"] is None and j["limit_refusals"] == 1 and j["failed_count"] == 0, j
    assert one(db, "SELECT count(*) FROM batch_items WHERE status = 'pending'") == N
    # Not retried in a tight loop: nothing ended since, so it waits its backoff.
    creates = fake_openai.state()["counts"]["batch_creates"]
    r = refresh(db, jid)[0]
    assert r["status"] == "queued" and "refused it for its queue limit 1 time(s)" in r["message"], r
    assert "60 s after the last refusal" in r["message"]
    assert fake_openai.state()["counts"]["batch_creates"] == creates
    # Backoff over (moved back in time here): sent again, and this time it goes through.
    db.execute("UPDATE batch_jobs SET queued_at = queued_at - INTERVAL 2 MINUTE WHERE job_id = ?", [jid])
    r = refresh(db, jid)[0]
    assert r["status"] == "validating" and r["message"].startswith("sent: room freed"), r
    for _ in range(8):
        r = refresh(db, jid)[0]
        if r["message"].startswith("collected"):
            break
    check_job_invariants(db, jid, fake_openai)
    assert one(db, "SELECT count(*) FROM ai_analyses") == N
    assert one(db, "SELECT count(*) FROM batch_jobs WHERE status = 'failed'") == 0


def test_a_queued_job_cancels_locally(db, fake_openai):
    db.execute("CREATE TABLE ai_batch_limits (provider VARCHAR, model VARCHAR, max_enqueued_tokens BIGINT, "
               "max_enqueued_requests BIGINT)")
    db.execute("INSERT INTO ai_batch_limits VALUES ('openai', 'gpt-4o-mini', NULL, 3)")
    out = rows(db, f"SELECT * FROM batch_submit('product-labeling', $$SELECT id FROM issues WHERE {FOUR}$$, "
                   "max_requests_per_job := 2)")
    out = sorted(out, key=lambda r: r["status"], reverse=True)
    assert [r["status"] for r in out] == ["validating", "queued"], out
    assert "2 of 3 enqueued requests" in out[1]["message"], out[1]
    c = rows(db, "SELECT * FROM batch_cancel(?)", [out[1]["job_id"]])
    assert c[0]["status"] == "cancelled", c
    assert one(db, "SELECT count(*) FROM batch_items WHERE status = 'cancelled'") == 2


# ----------------------------------------------------------------------------- batch_wait


def test_batch_wait_collects_four_queued_jobs_under_a_limit_that_fits_one(db, fake_openai):
    dry = rows(db, f"SELECT * FROM batch_submit('product-labeling', $$SELECT id FROM issues WHERE {FOUR}$$, "
                   "dry_run := true, max_requests_per_job := 1)")
    limit = int(max(r["estimated_input_tokens"] for r in dry) * 1.5)
    db.execute("CREATE TABLE ai_batch_limits AS SELECT 'openai' AS provider, 'gpt-4o-mini' AS model, "
               "?::BIGINT AS max_enqueued_tokens", [limit])
    out = rows(db, f"SELECT * FROM batch_submit('product-labeling', $$SELECT id FROM issues WHERE {FOUR}$$, "
                   "max_requests_per_job := 1)")
    assert sorted(r["status"] for r in out) == ["queued"] * 3 + ["validating"]
    ft = fake_tokens(fake_openai)
    fake_openai.configure({"max_enqueued_tokens": int(max(ft) * 1.5)})
    assert int(max(ft) * 1.5) < 2 * min(ft)

    w = rows(db, "SELECT * FROM batch_wait(timeout := INTERVAL '2 minutes')")
    assert sorted(r["job_id"] for r in w) == sorted(r["job_id"] for r in out)
    assert {r["status"] for r in w} == {"completed"}, w
    assert all(r["message"].startswith("collected") for r in w), w
    assert statuses(db) == ["completed"] * 4
    st = fake_openai.state()["counts"]
    assert st["limit_refusals"] == 0 and st["batch_creates"] == 4, st
    assert st["enqueued_peak"]["gpt-4o-mini"] <= int(max(ft) * 1.5), st
    assert one(db, "SELECT count(*) FROM batch_jobs WHERE status = 'failed'") == 0
    assert one(db, "SELECT count(*) FROM ai_analyses") == 4
    # Nothing left: returns at once with no rows.
    assert rows(db, "SELECT * FROM batch_wait()") == []


def test_batch_wait_returns_on_timeout_and_holds_no_lock(db, fake_openai):
    fake_openai.configure({"next_batch": {"hold_at": "in_progress"}})
    s = submit(db)
    t0 = time.monotonic()
    done = {}

    def waiter():
        done["rows"] = rows(db, "SELECT * FROM batch_wait(job_id := ?, timeout := INTERVAL '3 seconds')",
                            [s["job_id"]])
        done["t"] = time.monotonic() - t0

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(1.0)
    # Another connection of the same database reads and writes while it sleeps.
    other = db.cursor()
    assert other.execute("SELECT count(*) FROM batch_history()").fetchone()[0] == 1
    other.execute("CREATE TABLE scratch AS SELECT 1 AS x")
    assert rows(other, "SELECT * FROM batch_refresh()")[0]["status"] == "in_progress"
    th.join(30)
    assert 3.0 <= done["t"] < 10, done
    r = done["rows"]
    assert len(r) == 1 and r[0]["status"] == "in_progress", r
    assert "batch_wait: timed out after 3 s with the job still in_progress" in r[0]["message"], r
    with pytest.raises(Exception, match="batch_wait: timeout must be an INTERVAL"):
        db.execute("SELECT * FROM batch_wait(timeout := 'soon')")
    # A number is seconds.
    t = time.monotonic()
    rows(db, "SELECT * FROM batch_wait(timeout := 0)")
    assert time.monotonic() - t < 5


WAIT_SCRIPT = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1], config={"allow_unsigned_extensions": "true"})
con.execute(f"LOAD '{sys.argv[2]}'")
try:
    try:
        con.execute("SELECT * FROM batch_wait(timeout := INTERVAL '5 minutes')").fetchall()
        print("RETURNED")
    except duckdb.Error as e:
        print(f"ERROR {e}")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
except RuntimeError as e:  # the duckdb client may interrupt the query itself first
    print(f"RuntimeError {e}")
"""


def start_and_interrupt(cmd, fake_openai, env, stdin=None):
    before = fake_openai.state()["counts"]["retrieves"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=ctrl_c_as_in_a_terminal)
    if stdin:
        proc.stdin.write(stdin)
        proc.stdin.flush()
    deadline = time.time() + 60
    while time.time() < deadline and fake_openai.state()["counts"]["retrieves"] < before + 2:
        if proc.poll() is not None:
            raise AssertionError(f"ended before it polled: {proc.communicate()}")
        time.sleep(0.1)
    assert fake_openai.state()["counts"]["retrieves"] >= before + 2, "batch_wait never polled"
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return out, err, time.monotonic() - t


def test_batch_wait_stops_promptly_on_ctrl_c_in_python(db, fake_openai, ext, tmp_path):
    fake_openai.configure({"next_batch": {"hold_at": "in_progress"}})
    s = submit(db)
    db.close()
    path = str(tmp_path / "test.duckdb")
    for _ in range(50):  # until the extension has let the file go (connection-lifetime.md)
        if "Could not set lock" not in subprocess.run(
                [sys.executable, "-c", f"import duckdb; duckdb.connect({path!r}).close()"],
                capture_output=True, text=True).stderr:
            break
        time.sleep(0.2)
    out, err, took = start_and_interrupt([sys.executable, "-c", WAIT_SCRIPT, path, ext], fake_openai, dict(os.environ))
    # Python raises KeyboardInterrupt as soon as the query returns, or the duckdb client
    # (which also sees the signal) ends the query as interrupted: either way, at once.
    assert out.strip().endswith(("KeyboardInterrupt", "RuntimeError Query interrupted")), (out, err)
    assert "RETURNED" not in out and "ERROR" not in out, (out, err)
    assert took < 5, (took, out, err)
    # The job is untouched: still running at the provider, and a refresh goes on from there.
    con = duckdb.connect(path, config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ext}'")
    r = rows(con, "SELECT * FROM batch_refresh()")
    assert r[0]["job_id"] == s["job_id"] and r[0]["status"] == "in_progress", r
    con.close()


def test_batch_wait_stops_promptly_on_ctrl_c_in_the_cli(fake_openai, ext, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", fake_openai.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    fake_openai.configure({"next_batch": {"hold_at": "in_progress"}})
    cli, path = duckdb_cli(), str(tmp_path / "cli.duckdb")

    def run(sql):
        r = subprocess.run([cli, "-unsigned", "-csv", path, "-c", f"LOAD '{ext}'; {sql}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    run(SCHEMA + " INSERT INTO issues (org, repo, number, title, body, state) "
        "VALUES ('acme', 'widgets', 1, 'Support bundle hangs', 'it hangs', 'open');"
        " SELECT job_id FROM batch_submit('product-labeling', '*');")
    sql = f"LOAD '{ext}'; SELECT * FROM batch_wait(timeout := INTERVAL '5 minutes');"
    out, err, took = start_and_interrupt([cli, "-unsigned", path, "-c", sql], fake_openai, dict(os.environ))
    assert "interrupt" in (out + err).lower(), (out, err)
    assert took < 5, (took, out, err)
    assert "in_progress" in run("SELECT status FROM batch_refresh();")
