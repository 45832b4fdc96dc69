"""The provider's request counts as data (issue 14, "Waiting and progress", first bullet).

Every poll records the batch's request counts (completed / failed / total) in
batch_jobs, and when completed + failed last changed (`progress_at`); batch_refresh()
and batch_cancel() rows carry the counts, batch_history() shows `progress` ('n / total'),
the counts and `progress_at`. Against the loopback fake provider.

Run: AI_BATCH_EXTENSION=$PWD/build/release/ai_batch.duckdb_extension \
     .venv/bin/python -m pytest -q test/python/test_progress.py
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "test" / "python"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: E402,F401
from test_lifecycle import (  # noqa: E402,F401  (db is a fixture)
    N,
    check_job_invariants,
    db,
    fake_batch,
    job,
    one,
    refresh,
    rows,
    submit,
)

COUNT_COLS = ("provider_completed", "provider_failed", "provider_total")
# completed_mixed fails every 3rd request: half of 10 processed while in_progress is
# 4 completed + 1 failed; all 10 is 7 + 3.
MIXED = {"outcome": "completed_mixed", "fail_every": 3, "partial_fraction": 0.5}


def control(fake, batch_id, body):
    """Changes one batch at the fake (behaviour keys, and `step`: force that many steps)."""
    req = urllib.request.Request(f"{fake.root_url}/_fake/batches/{batch_id}",
                                 data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def counts(r):
    return tuple(r[c] for c in COUNT_COLS)


def provider_counts(fake, batch_id):
    rc = fake_batch(fake, batch_id)["request_counts"]
    return rc["completed"], rc["failed"], rc["total"]


def history(con, job_id):
    out = [r for r in rows(con, "SELECT * FROM batch_history()") if r["job_id"] == job_id]
    assert len(out) == 1, out
    return out[0]


def progress_at(con, job_id):
    return one(con, "SELECT progress_at FROM batch_jobs WHERE job_id = ?", [job_id])


def refresh_one(con, job_id):
    out = refresh(con, job_id)
    assert len(out) == 1, out
    time.sleep(0.02)  # so a progress_at set by the next poll would differ
    return out[0]


def test_each_poll_records_counts_and_progress_at_moves_only_when_they_change(db, fake_openai):
    fake_openai.configure({"next_batch": {**MIXED, "hold_at": "in_progress"}})
    s = submit(db)
    jid, bid = s["job_id"], s["provider_batch_id"]
    # Not polled yet: nothing known.
    h = history(db, jid)
    assert h["progress"] is None and h["progress_at"] is None, h
    assert counts(h) == (None, None, None), h

    # Poll 1: validating -> in_progress, half processed.
    r = refresh_one(db, jid)
    assert r["status"] == "in_progress", r
    assert counts(r) == provider_counts(fake_openai, bid) == (4, 1, N), r
    t1 = progress_at(db, jid)
    assert t1 is not None
    h = history(db, jid)
    assert h["progress"] == f"5 / {N}" and counts(h) == (4, 1, N) and h["progress_at"] == t1, h

    # Poll 2: held in_progress, same counts: progress_at stays put.
    r = refresh_one(db, jid)
    assert r["status"] == "in_progress" and counts(r) == (4, 1, N), r
    assert progress_at(db, jid) == t1

    # The provider moves on to finalizing (all processed) and holds there.
    control(fake_openai, bid, {"hold_at": "finalizing", "step": 1})
    r = refresh_one(db, jid)
    assert r["status"] == "finalizing" and counts(r) == provider_counts(fake_openai, bid) == (7, 3, N), r
    t2 = progress_at(db, jid)
    assert t2 > t1
    assert history(db, jid)["progress"] == f"{N} / {N}"
    r = refresh_one(db, jid)
    assert r["status"] == "finalizing" and counts(r) == (7, 3, N), r
    assert progress_at(db, jid) == t2

    # Released: the terminal poll records its counts too (unchanged: progress_at stays).
    control(fake_openai, bid, {"hold_at": None})
    r = refresh_one(db, jid)
    assert r["status"] == "completed" and r["message"].startswith("collected"), r
    assert counts(r) == (7, 3, N), r
    check_job_invariants(db, jid, fake_openai)
    h = history(db, jid)
    assert h["progress"] == f"{N} / {N}" and counts(h) == (7, 3, N) and h["progress_at"] == t2, h
    # A collected job is not polled again; nothing moves.
    r = refresh_one(db, jid)
    assert "already collected" in r["message"] and counts(r) == (7, 3, N), r
    assert progress_at(db, jid) == t2


def test_batch_cancel_rows_carry_the_counts(db, fake_openai):
    fake_openai.configure({"next_batch": {**MIXED, "hold_at": "in_progress"}})
    s = submit(db)
    jid, bid = s["job_id"], s["provider_batch_id"]
    refresh_one(db, jid)
    c = rows(db, "SELECT * FROM batch_cancel(?)", [jid])
    assert len(c) == 1 and c[0]["status"] == "cancelling", c
    assert counts(c[0]) == provider_counts(fake_openai, bid), c
    assert c[0]["provider_total"] == N
    # Refresh and cancel rows: the same columns, the counts appended last.
    assert list(c[0])[-4:] == ["message", *COUNT_COLS]
    assert list(refresh(db, jid)[0])[-4:] == ["message", *COUNT_COLS]


def test_tables_of_an_older_release_get_the_progress_columns(db, fake_openai):
    fake_openai.configure({"next_batch": {**MIXED, "hold_at": "in_progress"}})
    s = submit(db)
    jid = s["job_id"]
    for c in (*COUNT_COLS, "progress_at"):
        db.execute(f"ALTER TABLE batch_jobs DROP COLUMN {c}")
    r = refresh_one(db, jid)
    assert counts(r) == (4, 1, N), r
    j = job(db, jid)
    assert (j["provider_completed"], j["provider_failed"], j["provider_total"]) == (4, 1, N)
    assert j["progress_at"] is not None
    # Added last, after the columns the older release had.
    names = [d[0] for d in db.execute("SELECT * FROM batch_jobs LIMIT 0").description]
    assert names[-4:] == [*COUNT_COLS, "progress_at"], names
    # batch_history() alone (no refresh) adds them too, on a table that lacks them.
    for c in (*COUNT_COLS, "progress_at"):
        db.execute(f"ALTER TABLE batch_jobs DROP COLUMN {c}")
    h = history(db, jid)
    assert h["progress"] is None and counts(h) == (None, None, None), h


def test_a_stalled_batch_shows_the_stuck_message_and_a_finished_one_the_expiry_warning(db, fake_openai):
    # Issue 14: batch_history() shows the job's age and a plain note with what to do.
    fake_openai.configure({"next_batch": {**MIXED, "hold_at": "in_progress"}})
    s = submit(db)
    jid, bid = s["job_id"], s["provider_batch_id"]
    r = refresh_one(db, jid)
    assert r["status"] == "in_progress"
    h = history(db, jid)
    assert h["note"] is None and h["age"].endswith("s"), h   # fresh and moving: nothing to say
    # The fake holds the batch; the counts have not moved for 4 hours (moved back in time here).
    db.execute("UPDATE batch_jobs SET submitted_at = submitted_at - INTERVAL 5 HOUR, "
               "progress_at = progress_at - INTERVAL 4 HOUR, created_at = created_at - INTERVAL 5 HOUR "
               "WHERE job_id = ?", [jid])
    r = refresh_one(db, jid)
    assert r["status"] == "in_progress" and counts(r) == (4, 1, N), r   # still stalled at the provider
    h = history(db, jid)
    assert h["age"].startswith("5h "), h
    assert h["note"].startswith("no progress for 4h 0m: the provider is busy"), h
    assert "batch_cancel" in h["note"] and "batch_retry" in h["note"], h
    # Close to the 24h window.
    db.execute("UPDATE batch_jobs SET submitted_at = submitted_at - INTERVAL 17 HOUR WHERE job_id = ?", [jid])
    note = history(db, jid)["note"]
    assert note.startswith(("close to the provider's 24h window (1h 59m left)",
                            "close to the provider's 24h window (2h 0m left)")), note
    # Finished at the provider but its result files unusable: not collected, and a day old.
    control(fake_openai, bid, {"hold_at": None, "cut_output_file": 0.5, "step": 2})
    r = refresh_one(db, jid)
    assert r["status"] == "completed" and not r["message"].startswith("collected"), r
    db.execute("UPDATE batch_jobs SET submitted_at = submitted_at - INTERVAL 3 HOUR WHERE job_id = ?", [jid])
    h = history(db, jid)
    assert h["note"].startswith("finished at the provider but not collected (1d 1h since it was sent)"), h
    assert "output_expires_after" in h["note"], h
