"""A create whose answer never came back is never created twice (issue 9, items 1, 2, 4
and part of 13): a create still in flight when refresh looks, a list without metadata,
a status the code does not know, and what happens to the uploaded file when a create
fails or never lands. The kill -9 variant is in test/python/test_crash.py.

The create timeout is shortened with AI_BATCH_CREATE_TIMEOUT_SECS (README, batch_refresh);
refresh waits SETTLE_FACTOR (3) times that before concluding that a create will not land.

Run: AI_BATCH_EXTENSION=$PWD/build/release/ai_batch.duckdb_extension \
     .venv/bin/python -m pytest -q test/python/test_reconcile.py
"""

from __future__ import annotations

import json
import time
import urllib.request

import duckdb
import pytest

from test_lifecycle import (  # noqa: F401  (db is a fixture)
    N,
    check_job_invariants,
    db,
    job,
    items,
    one,
    refresh,
    refresh_until_done,
    rows,
    submit,
)
from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: F401

CREATE = {"method": "POST", "path": "/v1/batches"}
SETTLE_FACTOR = 3  # src/reconcile.rs


def creates(fake):
    return fake.state()["counts"]["creates_by_job"]


def file_ids(fake):
    return {f["id"] for f in fake.state()["files"]}


def wait_until(pred, timeout=15.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sleep_past_window(con, job_id, create_timeout):
    """Until refresh may decide: SETTLE_FACTOR create timeouts after the create was sent."""
    sent = job(con, job_id)["submitted_at"].timestamp()
    time.sleep(max(0.0, sent + SETTLE_FACTOR * create_timeout + 0.2 - time.time()))


def create_answered(fake):
    """The delayed create has been answered (or refused) by the fake."""
    return any(r["method"] == "POST" and r["path"] == "/v1/batches" and r["fault"] == "delay"
               for r in fake.state()["requests"])


# ----------------------------------------------------------------------------- 1. a create in flight


def test_a_create_still_in_flight_is_not_created_again_and_is_adopted_when_it_lands(db, fake_openai, monkeypatch):
    # The client gives up after 1 s; the provider makes the batch after 4 s.
    monkeypatch.setenv("AI_BATCH_CREATE_TIMEOUT_SECS", "1")
    fake_openai.configure({"fault": {"kind": "delay", "delay": 4, **CREATE}})
    s = submit(db)
    jid = s["job_id"]
    assert s["status"] == "uploaded" and "timed out" in s["message"], s
    assert job(db, jid)["submitted_at"] is not None
    # An immediate refresh: the batch is not there yet, and it must not be created again.
    out = refresh(db)
    # The delayed create lands: one batch for the job (before the fix: two, both billed).
    wait_until(lambda: create_answered(fake_openai), what="the delayed create")
    assert creates(fake_openai) == {jid: 1}
    assert [r["status"] for r in out] == ["uploaded"], out
    msg = out[0]["message"]
    assert "may still land" in msg and "not created again" in msg and "decided by the first batch_refresh() after" in msg, msg
    # The next refresh adopts it.
    refresh_until_done(db, jid)
    j, _ = check_job_invariants(db, jid, fake_openai)
    assert j["completed_count"] == N
    assert creates(fake_openai) == {jid: 1} and fake_openai.state()["counts"]["batch_creates"] == 1


def test_a_create_that_lands_after_the_window_is_refused_because_its_file_was_deleted(db, fake_openai, monkeypatch):
    # The client gives up after 1 s; refresh decides 3 s after the send; the provider
    # would make the batch after 6 s, but by then the input file is gone.
    monkeypatch.setenv("AI_BATCH_CREATE_TIMEOUT_SECS", "1")
    fake_openai.configure({"fault": {"kind": "delay", "delay": 6, **CREATE}})
    s = submit(db)
    jid = s["job_id"]
    file_id = job(db, jid)["input_file_id"]
    assert s["status"] == "uploaded"
    assert refresh(db)[0]["status"] == "uploaded"
    sleep_past_window(db, jid, 1)
    out = refresh(db)
    assert [r["status"] for r in out] == ["failed"], out
    msg = out[0]["message"]
    assert "never created a batch" in msg and "deleted" in msg and f"batch_retry('{jid}')" in msg, msg
    assert file_id not in file_ids(fake_openai)
    assert {(i["status"], i["error_code"]) for i in items(db, jid)} == {("failed", "not_created")}
    assert job(db, jid)["collected_at"] is not None
    # The create in flight reaches the provider's decision: refused, no batch.
    wait_until(lambda: create_answered(fake_openai), what="the delayed create")
    st = fake_openai.state()
    assert st["counts"]["batch_creates"] == 0 and creates(fake_openai) == {}
    refused = [r for r in st["requests"] if r["method"] == "POST" and r["path"] == "/v1/batches"]
    assert [r["status"] for r in refused] == [404], refused
    # Nothing else to do for refresh; batch_retry sends the issues again, once.
    assert refresh(db) == []
    retry = rows(db, "SELECT * FROM batch_retry(?)", [jid])
    new = retry[0]["job_id"]
    assert retry[0]["submitted"] == N, retry
    refresh_until_done(db, new)
    assert check_job_invariants(db, new, fake_openai)[0]["completed_count"] == N
    assert creates(fake_openai) == {new: 1}


def test_cancelling_a_job_whose_create_is_in_flight_makes_sure_it_never_lands(db, fake_openai, monkeypatch):
    monkeypatch.setenv("AI_BATCH_CREATE_TIMEOUT_SECS", "1")
    fake_openai.configure({"fault": {"kind": "delay", "delay": 3, **CREATE}})
    s = submit(db)
    jid = s["job_id"]
    file_id = job(db, jid)["input_file_id"]
    assert s["status"] == "uploaded"
    out = rows(db, "SELECT * FROM batch_cancel(?)", [jid])
    assert out[0]["status"] == "cancelled" and "can no longer make a batch" in out[0]["message"], out
    assert file_id not in file_ids(fake_openai)
    wait_until(lambda: create_answered(fake_openai), what="the delayed create")
    assert fake_openai.state()["counts"]["batch_creates"] == 0
    assert {i["status"] for i in items(db, jid)} == {"cancelled"}


# ----------------------------------------------------------------------------- 13. 4xx / 5xx on create


def test_a_create_refused_with_4xx_deletes_the_uploaded_file(db, fake_openai):
    fake_openai.configure({"fault": {"kind": "status", "status": 400, "message": "bad input file",
                                     "code": "invalid_request", **CREATE}})
    s = submit(db)
    jid = s["job_id"]
    assert s["status"] == "failed", s
    j = job(db, jid)
    assert "creating the batch failed" in j["error_message"], j["error_message"]
    assert f"its uploaded request file {j['input_file_id']} was deleted at the provider" in j["error_message"]
    assert j["input_file_id"] not in file_ids(fake_openai)
    assert fake_openai.state()["counts"]["file_deletes"] == 1


def test_a_500_on_create_waits_then_deletes_the_file_and_fails_the_job(db, fake_openai, monkeypatch):
    monkeypatch.setenv("AI_BATCH_CREATE_TIMEOUT_SECS", "0.5")
    fake_openai.configure({"fault": {"kind": "server_error", **CREATE}})
    s = submit(db)
    jid = s["job_id"]
    file_id = job(db, jid)["input_file_id"]
    # 5xx is ambiguous: the batch may exist. Left for refresh, the file kept meanwhile.
    assert s["status"] == "uploaded" and "500" in s["message"], s
    out = refresh(db)
    assert out[0]["status"] == "uploaded" and "may still land" in out[0]["message"], out
    assert file_id in file_ids(fake_openai)
    sleep_past_window(db, jid, 0.5)
    out = refresh(db)
    assert out[0]["status"] == "failed" and "never created a batch" in out[0]["message"], out
    assert file_id not in file_ids(fake_openai)
    assert fake_openai.state()["counts"]["batch_creates"] == 0


def test_a_500_after_the_batch_was_made_is_adopted(db, fake_openai, monkeypatch):
    monkeypatch.setenv("AI_BATCH_CREATE_TIMEOUT_SECS", "0.5")
    fake_openai.configure({"fault": {"kind": "server_error", "after_action": True, **CREATE}})
    s = submit(db)
    jid = s["job_id"]
    assert s["status"] == "uploaded"
    out = refresh(db)
    assert out[0]["old_status"] == "uploaded" and out[0]["status"] != "uploaded", out
    refresh_until_done(db, jid)
    assert check_job_invariants(db, jid, fake_openai)[0]["completed_count"] == N
    assert creates(fake_openai) == {jid: 1}


# ----------------------------------------------------------------------------- 2. a list without metadata


def test_a_lost_create_is_found_by_its_input_file_when_the_list_has_no_metadata(db, fake_openai):
    fake_openai.configure({"list_omits_metadata": True,
                           "fault": {"kind": "reset", "after_action": True, **CREATE}})
    s = submit(db)
    jid = s["job_id"]
    assert s["status"] == "uploaded"
    made = [b["id"] for b in fake_openai.state()["batches"]]
    assert len(made) == 1
    out = refresh(db)
    assert out[0]["status"] != "uploaded", out
    assert job(db, jid)["provider_batch_id"] == made[0]
    refresh_until_done(db, jid)
    assert check_job_invariants(db, jid, fake_openai)[0]["completed_count"] == N
    assert creates(fake_openai) == {jid: 1}


# ----------------------------------------------------------------------------- 4. a status the code does not know


def test_an_unknown_status_stays_active_is_polled_again_and_shown(db, fake_openai):
    s = submit(db)
    jid = s["job_id"]
    bid = s["provider_batch_id"]

    def control(body):
        req = urllib.request.Request(f"{fake_openai.root_url}/_fake/batches/{bid}", data=json.dumps(body).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    control({"report_status": "paused"})
    for _ in range(2):
        out = refresh(db)  # plain batch_refresh(), no job_id
        assert [r["job_id"] for r in out] == [jid], out
        assert out[0]["status"] == "paused", out
        assert "a status ai_batch does not know" in out[0]["message"], out
    assert one(db, "SELECT status FROM batch_history() WHERE job_id = ?", [jid]) == "paused"
    assert fake_openai.state()["counts"]["retrieves_by_batch"][bid] == 2
    # Its issues are still in a running job.
    again = rows(db, "SELECT * FROM batch_submit('product-labeling', '*')")
    assert again[0]["status"] == "nothing_to_submit" and again[0]["skipped_active"] == N, again
    # Retry refuses a job that is still going; cancel reaches the provider.
    with pytest.raises(duckdb.Error, match="still paused"):
        db.execute("SELECT * FROM batch_retry(?)", [jid]).fetchall()
    control({"report_status": None})
    refresh_until_done(db, jid)
    assert check_job_invariants(db, jid, fake_openai)[0]["completed_count"] == N
