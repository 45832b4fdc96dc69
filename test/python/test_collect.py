"""Collecting results when the provider's files are gone or bad, and keys the provider echoes.

Issue 9, items 3, 5 and 6, against the loopback fake provider:
- a result file that answers 404 (expired at OpenAI) never leaves a job uncollectable;
- a result file that is not what the provider counted (an HTML page, a file cut mid-line,
  a download shorter than its Content-Length) is not collected as final, and is given up
  on only by the documented rule;
- the API key, echoed by the provider, is stored and shown nowhere.

Run: AI_BATCH_EXTENSION=$PWD/build/release/ai_batch.duckdb_extension \
     .venv/bin/python -m pytest -q test/python/test_collect.py
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "test" / "python"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: E402,F401
from test_lifecycle import (  # noqa: E402,F401  (db is a fixture)
    N,
    check_job_invariants,
    db,
    fake_file,
    items,
    job,
    one,
    refresh,
    refresh_until_done,
    rows,
    submit,
)

GIVE_UP_ATTEMPTS = 3  # src/refresh.rs: COLLECT_GIVE_UP_ATTEMPTS


def step_to_end(fake, batch_id, steps=3):
    """Moves a fake batch to its final status without a retrieve; returns the batch."""
    req = urllib.request.Request(f"{fake.root_url}/_fake/batches/{batch_id}",
                                 data=json.dumps({"step": steps}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def age_batch(fake, batch_id, seconds):
    """Makes the fake batch look finished `seconds` earlier (in-process fake)."""
    b = fake.provider.batches[batch_id]
    with b.lock:
        for k in ("completed_at", "failed_at", "expired_at", "cancelled_at"):
            if b.obj.get(k):
                b.obj[k] -= seconds


def collected(con, job_id):
    return one(con, "SELECT collected_at IS NOT NULL FROM batch_jobs WHERE job_id = ?", [job_id])


# ----------------------------------------------------------------------------- item 3: a result file answers 404


@pytest.mark.parametrize("missing", [["output"], ["error"], ["output", "error"]], ids="+".join)
def test_result_file_gone_applies_what_can_be_read_and_frees_the_rest(db, fake_openai, missing):
    # Every 2nd request fails with a code batch_retry leaves alone, so what a retry takes
    # is exactly what the missing files held back.
    fake_openai.configure({"next_batch": {"outcome": "completed_mixed", "fail_every": 2,
                                          "fail_kinds": ["context_length"], "missing_files": missing}})
    s = submit(db)
    jid = s["job_id"]
    seen = refresh_until_done(db, jid)
    msg = seen[-1]["message"]
    assert msg.startswith("collected"), msg
    j, its = check_job_invariants(db, jid)
    assert j["status"] == "completed"
    by_code = {}
    for i in its:
        by_code.setdefault(i["error_code"], []).append(i)
    answered = [i for n, i in enumerate(its) if (n + 1) % 2]  # lines 1, 3, 5, ... succeeded
    failed = [i for n, i in enumerate(its) if not (n + 1) % 2]
    if "output" in missing:
        # The answers are gone: the items end with a clear code, retryable.
        assert all(i["status"] == "failed" and i["error_code"] == "result_unavailable" for i in answered)
        assert "output file" in answered[0]["error_message"] and "batch_retry" in answered[0]["error_message"]
        assert j["output_file_id"] in msg and "404" in msg, msg
    else:
        # Only the error file is gone: the answers in the output file are applied.
        assert all(i["status"] == "completed" for i in answered)
        assert one(db, "SELECT count(*) FROM ai_analyses") == len(answered)
    if "error" in missing:
        assert all(i["error_code"] == "result_unavailable" for i in failed)
        assert "error file" in failed[0]["error_message"]
        assert j["error_file_id"] in msg, msg
    else:
        assert all(i["error_code"] == "context_length_exceeded" for i in failed)
    assert "result_unavailable" in j["error_message"], j["error_message"]
    unavailable = sorted(i["issue_id"] for i in its if i["error_code"] == "result_unavailable")
    # The other exits behave: cancel has nothing to cancel, the issues are free again
    # for a submit, and batch_retry sends exactly the unavailable ones.
    c = rows(db, "SELECT * FROM batch_cancel(?)", [jid])
    assert "nothing to cancel" in c[0]["message"], c
    dry = rows(db, "SELECT * FROM batch_submit('product-labeling', '*', dry_run := true)")
    assert dry[0]["skipped_active"] == 0, dry
    r = rows(db, "SELECT * FROM batch_retry(?)", [jid])
    assert len(r) == 1 and r[0]["job_id"], r
    assert sorted(i["issue_id"] for i in items(db, r[0]["job_id"])) == unavailable
    refresh_until_done(db, r[0]["job_id"])
    check_job_invariants(db, r[0]["job_id"], fake_openai)


# ----------------------------------------------------------------------------- item 5: a bad result file


def finished_job(db, fake, **behaviour):
    """A submitted job whose fake batch has finished (not yet seen by a refresh)."""
    if behaviour:
        fake.configure({"next_batch": behaviour})
    s = submit(db)
    b = step_to_end(fake, s["provider_batch_id"])
    assert b["status"] == "completed", b
    return s["job_id"], b


def assert_kept(db, out, jid):
    assert len(out) == 1, out
    msg = out[0]["message"]
    assert msg.startswith("not collected"), msg
    assert "downloaded again on the next refresh" in msg, msg
    assert out[0]["applied"] == 0 and out[0]["pending_count"] == N, out
    assert not collected(db, jid)
    assert one(db, "SELECT count(*) FROM ai_analyses") == 0
    assert {i["status"] for i in items(db, jid)} == {"pending"}
    return msg


def test_html_page_in_place_of_the_output_file_is_not_final(db, fake_openai):
    jid, b = finished_job(db, fake_openai)
    page = "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\n<body>Back soon</body></html>\n"
    fake_openai.configure({"fault": {"kind": "status", "status": 200, "body": page, "content_type": "text/html",
                                     "path": f"/v1/files/{b['output_file_id']}/content", "count": 2}})
    msg = assert_kept(db, refresh(db), jid)
    # The provider counted 10 answers, none could be read; the unreadable lines are named.
    assert "the provider counted 10 completed" in msg and "0 answers read" in msg, msg
    assert "output file line 1: <!DOCTYPE html>" in msg, msg
    assert "line 3" in msg, msg
    assert job(db, jid)["error_message"] and "<!DOCTYPE html>" in job(db, jid)["error_message"]
    msg = assert_kept(db, refresh(db), jid)
    assert "attempt 2 of 3" in msg, msg
    # The page goes away: the next refresh downloads the file again and collects everything.
    out = refresh(db)
    assert out[0]["message"].startswith("collected") and out[0]["applied"] == N, out
    j, _ = check_job_invariants(db, jid, fake_openai)
    assert j["completed_count"] == N
    assert "not collected" not in (j["error_message"] or "")


def test_output_file_cut_mid_line_is_not_final_until_the_rule_gives_up(db, fake_openai):
    jid, b = finished_job(db, fake_openai, cut_output_file=0.55, output_order="input")
    whole = fake_file(fake_openai, b["output_file_id"]).count(b"\n")  # lines before the cut
    assert 0 < whole < N
    lines = []
    for attempt in range(1, GIVE_UP_ATTEMPTS + 1):
        msg = assert_kept(db, refresh(db), jid)
        assert f"attempt {attempt} of {GIVE_UP_ATTEMPTS}" in msg, msg
        lines.append(msg)
    # The batch finished just now: three bad downloads are not enough on their own.
    assert "1 hour" in lines[-1], lines[-1]
    assert f"the provider counted 10 completed, {whole} answers read" in lines[0], lines[0]
    assert f"output file line {whole + 1}: {{" in lines[0], lines[0]
    # An hour later, the next refresh collects what can be read.
    age_batch(fake_openai, b["id"], 3700)
    out = refresh(db)
    assert out[0]["message"].startswith("collected"), out
    assert "result_unreadable" in out[0]["message"], out
    j, its = check_job_invariants(db, jid)
    assert [i["status"] for i in its] == ["completed"] * whole + ["failed"] * (N - whole), its
    assert {i["error_code"] for i in its[whole:]} == {"result_unreadable"}
    assert "batch_retry" in its[whole]["error_message"]
    assert f"output file line {whole + 1}" in j["error_message"], j["error_message"]
    r = rows(db, "SELECT * FROM batch_retry(?)", [jid])
    assert r[0]["submitted"] == N - whole, r


def test_download_shorter_than_content_length_is_downloaded_again_then_given_up(db, fake_openai):
    jid, b = finished_job(db, fake_openai, outcome="completed_mixed", fail_every=5, fail_kinds=["server_error"])
    age_batch(fake_openai, b["id"], 2 * 3600)
    fake_openai.configure({"fault": {"kind": "truncate", "path": f"/v1/files/{b['output_file_id']}/content",
                                     "truncate_fraction": 0.5, "count": -1}})
    for attempt in range(1, GIVE_UP_ATTEMPTS):
        msg = assert_kept(db, refresh(db), jid)
        assert "cut short" in msg and f"attempt {attempt} of {GIVE_UP_ATTEMPTS}" in msg, msg
    out = refresh(db)
    assert out[0]["message"].startswith("collected"), out
    j, its = check_job_invariants(db, jid)
    # The error file was read; the answers in the cut output file end result_unreadable.
    assert {i["error_code"] for i in its} == {"http_500", "result_unreadable"}, its
    assert sum(i["error_code"] == "http_500" for i in its) == 2


def test_tables_of_an_older_release_get_the_attempts_column(db, fake_openai):
    jid, _ = finished_job(db, fake_openai, cut_output_file=0.5)
    db.execute("ALTER TABLE batch_jobs DROP COLUMN collect_attempts")
    assert_kept(db, refresh(db), jid)
    assert one(db, "SELECT collect_attempts FROM batch_jobs WHERE job_id = ?", [jid]) == 1
    assert_kept(db, refresh(db), jid)
    assert one(db, "SELECT collect_attempts FROM batch_jobs WHERE job_id = ?", [jid]) == 2


# ----------------------------------------------------------------------------- item 6: the key echoed


def test_an_echoed_key_is_stored_and_shown_nowhere(db, fake_openai, monkeypatch):
    key = "sk-proj-ECHOsecretKEY0123456789abcdefABCDEF"
    fake_openai.configure({"api_key": key, "advance": "immediate"})
    monkeypatch.setenv("OPENAI_API_KEY", key)
    fake_openai.configure({"next_batches": [
        {"outcome": "failed_validation", "echo_authorization": True},
        {"outcome": "completed_mixed", "fail_every": 1, "echo_authorization": True,
         "fail_kinds": ["server_error", "request_timeout", "invalid_request"]},
        {"outcome": "expired", "partial_fraction": 0.5, "echo_authorization": True},
        {"outcome": "failed_validation", "echo_authorization": True,
         "validation_errors": [{"code": "invalid_request", "line": None, "param": None,
                                "message": f"bad key {key}; bearer {key}"}]},
    ]})
    shown = []
    jobs = [submit(db, f"number % 4 = {k}")["job_id"] for k in range(3)]
    # The fourth batch finishes at the provider before batch_cancel: cancel collects it.
    s4 = submit(db, "number % 4 = 3")
    step_to_end(fake_openai, s4["provider_batch_id"], 1)
    c = rows(db, "SELECT * FROM batch_cancel(?)", [s4["job_id"]])
    shown += c
    assert c[0]["status"] == "failed" and "provider errors" in c[0]["message"], c
    shown += refresh(db)
    for jid in jobs + [s4["job_id"]]:
        assert collected(db, jid)
        shown += rows(db, "SELECT * FROM batch_details(?)", [jid])
    shown += rows(db, "SELECT * FROM batch_history()")
    # The provider really echoed it (so the checks below can fail).
    st = fake_openai.state()
    assert any(key in json.dumps(b["errors"]) for b in st["batches"] if b["errors"])
    text = json.dumps(shown, default=str)
    assert "[redacted]" in text
    assert key not in text and "Bearer" not in text and "bearer" not in text
    assert key[10:30] not in text
    # Every VARCHAR (and JSON) column of every table.
    cols = db.execute("""SELECT schema_name, table_name, column_name FROM duckdb_columns()
                         WHERE NOT internal AND database_name = current_database()
                           AND data_type IN ('VARCHAR', 'JSON')""").fetchall()
    assert {"batch_jobs", "batch_items", "ai_analyses"} <= {t for _, t, _ in cols}
    assert len(cols) > 20
    for sch, t, col in cols:
        hits = one(db, f'SELECT count(*) FROM "{sch}"."{t}" WHERE "{col}"::VARCHAR ILIKE ? OR "{col}"::VARCHAR ILIKE ?',
                   [f"%{key[10:30]}%", "%bearer%"])
        assert hits == 0, (t, col)
    # The messages still say what happened.
    its = [i for jid in jobs for i in items(db, jid)]
    assert {i["error_code"] for i in its if i["status"] != "completed"} >= {
        "http_500", "request_timeout", "string_above_max_length", "batch_expired", "invalid_request"}
    assert any("The request timed out. (request header Authorization: [redacted])" == i["error_message"] for i in its)


def test_a_model_without_a_price_has_no_actual_cost_not_a_zero_one(db, fake_openai):
    # Billed tokens with no price known are an unknown cost: NULL, like the estimate;
    # a priced job beside it still sums its items.
    s = submit(db, model="gpt-foo-9")
    refresh_until_done(db, s["job_id"])
    j = job(db, s["job_id"])
    assert j["completed_count"] == N and j["input_tokens"] > 0 and j["output_tokens"] > 0, j
    assert j["cost_estimate"] is None and j["actual_cost"] is None, j
    priced = submit(db, model="gpt-4o-mini", reprocess=True)
    refresh_until_done(db, priced["job_id"])
    j = job(db, priced["job_id"])
    assert j["actual_cost"] is not None and j["actual_cost"] > 0, j
