"""A job's results are validated against the processor version it was sent with.

Issue 11, item 4 (processors as data), against the loopback fake provider:
- the version a job records is a hash of the processor's definition, and the definition
  is stored in ai_processors (the table batch_define_processor writes too) when the job is recorded;
- refresh validates a job's answers against the definition of the job's own version,
  not against today's processor of that name;
- jobs recorded before versions were hashes (version '1', no stored definition) still
  collect with the built-in product-labeling;
- a job whose version cannot be resolved is not collected, and refresh says why;
- a new version never re-sends issues already analysed (the skip is by processor name).

Run: AI_BATCH_EXTENSION=$PWD/build/release/ai_batch.duckdb_extension \
     .venv/bin/python -m pytest -q test/python/test_processor_versions.py
"""

from __future__ import annotations

import hashlib
import json
import sys
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
    items,
    job,
    one,
    refresh,
    refresh_until_done,
    rows,
    submit,
)

PL = "product-labeling"


def version_of(definition: str) -> str:
    """The documented version rule: the first 12 hex digits of sha256(canonical JSON)."""
    return hashlib.sha256(definition.encode()).hexdigest()[:12]


def stored(con):
    return rows(con, "SELECT name, version, definition::VARCHAR AS definition FROM ai_processors ORDER BY created_at")


def test_job_records_the_hash_and_stores_the_definition(db, fake_openai):
    s = submit(db)
    j = job(db, s["job_id"])
    defs = stored(db)
    assert len(defs) == 1, defs
    d = defs[0]
    assert d["name"] == PL and d["version"] == j["processor_version"]
    # The stored text is byte for byte what the version hashes.
    assert version_of(d["definition"]) == j["processor_version"]
    assert len(j["processor_version"]) == 12 and j["processor_version"] != "1"
    parsed = json.loads(d["definition"])
    assert parsed["name"] == PL
    assert parsed["ranges"] == [{"field": "confidence", "min": 0.0, "max": 1.0}]
    assert "{{title}}" in parsed["user_template"]
    assert parsed["response_schema"]["properties"]["recommended_labels"]["type"] == "array"
    refresh_until_done(db, s["job_id"])
    analysed = rows(db, "SELECT DISTINCT processor_version FROM ai_analyses")
    assert analysed == [{"processor_version": j["processor_version"]}]
    # A second job with the same definition stores nothing new.
    again = submit(db, "true", reprocess=True)
    assert job(db, again["job_id"])["processor_version"] == j["processor_version"]
    assert len(stored(db)) == 1


def test_results_are_validated_against_the_jobs_own_definition(db, fake_openai):
    """Two jobs collected by the same build: one sent with a definition whose confidence
    range excludes every answer the fake gives (all >= 0.5), one with today's. Each is
    judged by its own definition."""
    fake_openai.configure({"next_batch": {"outcome": "completed"}})
    narrow_job = submit(db, "number < 105")["job_id"]
    fake_openai.configure({"next_batch": {"outcome": "completed"}})
    today_job = submit(db, "number >= 105")["job_id"]
    today = stored(db)[0]
    narrow = today["definition"].replace('"max":1.0', '"max":0.25')
    assert narrow != today["definition"]
    v = version_of(narrow)
    db.execute("INSERT INTO ai_processors (name, version, definition) VALUES (?, ?, ?)", [PL, v, narrow])
    db.execute("UPDATE batch_jobs SET processor_version = ? WHERE job_id = ?", [v, narrow_job])

    refresh_until_done(db, narrow_job)
    refresh_until_done(db, today_job)

    its = items(db, narrow_job)
    assert len(its) == 5 and all(i["status"] == "failed" for i in its), its
    for i in its:
        assert "outside the range 0..0.25" in i["error_message"], i
        assert "$.confidence" in i["error_message"], i
    assert one(db, "SELECT count(*) FROM ai_analyses a JOIN batch_jobs j ON j.id = a.batch_job_id "
                   "WHERE j.job_id = ?", [narrow_job]) == 0

    its = items(db, today_job)
    assert len(its) == N - 5 and all(i["status"] == "completed" for i in its), its
    assert one(db, "SELECT DISTINCT a.processor_version FROM ai_analyses a JOIN batch_jobs j "
                   "ON j.id = a.batch_job_id WHERE j.job_id = ?", [today_job]) == today["version"]
    check_job_invariants(db, today_job, fake_openai)


def test_stored_definition_that_does_not_hash_to_its_version_is_refused(db, fake_openai):
    s = submit(db)
    db.execute("UPDATE ai_processors SET definition = replace(definition::VARCHAR, '\"max\":1.0', '\"max\":0.25')")
    db.execute("UPDATE batch_jobs SET processor_version = '0123456789ab'")
    db.execute("UPDATE ai_processors SET version = '0123456789ab'")
    out = [r for _ in range(4) for r in refresh(db, s["job_id"])]
    msgs = [r["message"] for r in out]
    assert any("does not hash to that version" in m for m in msgs), msgs
    assert one(db, "SELECT collected_at IS NULL FROM batch_jobs") is True
    assert one(db, "SELECT count(*) FROM ai_analyses") == 0
    assert {i["status"] for i in items(db, s["job_id"])} == {"pending"}


def test_legacy_version_1_collects_with_the_builtin(db, fake_openai, connect, tmp_path):
    """A database whose job was recorded before versions were hashes: version '1' and no
    ai_processors table at all (a file written by the build before this one)."""
    s = submit(db)
    db.execute("UPDATE batch_jobs SET processor_version = '1'")
    db.execute("DROP TABLE ai_processors")
    db.close()
    con = connect(tmp_path / "test.duckdb")
    refresh_until_done(con, s["job_id"])
    check_job_invariants(con, s["job_id"], fake_openai)
    its = items(con, s["job_id"])
    assert len(its) == N and all(i["status"] == "completed" for i in its)
    assert one(con, "SELECT DISTINCT processor_version FROM ai_analyses") == "1"


def test_unresolvable_version_is_not_collected_and_says_why(db, fake_openai):
    s = submit(db)
    db.execute("UPDATE batch_jobs SET processor_version = 'fedcba987654'")
    out = [r for _ in range(4) for r in refresh(db, s["job_id"])]
    msgs = [r["message"] for r in out]
    last = msgs[-1]
    assert last.startswith("not refreshed:"), msgs
    assert "processor 'product-labeling' version 'fedcba987654'" in last, last
    assert "neither built into this ai_batch nor stored in ai_processors" in last, last
    assert one(db, "SELECT collected_at IS NULL FROM batch_jobs") is True
    assert one(db, "SELECT count(*) FROM ai_analyses") == 0
    assert {i["status"] for i in items(db, s["job_id"])} == {"pending"}
    # Once the version can be resolved again, the job collects normally.
    v = one(db, "SELECT version FROM ai_processors")
    db.execute("UPDATE batch_jobs SET processor_version = ?", [v])
    refresh_until_done(db, s["job_id"])
    check_job_invariants(db, s["job_id"], fake_openai)


def test_a_new_version_does_not_resend_analysed_issues(db, fake_openai):
    """Issues analysed by an older version of product-labeling (here '1') are skipped by a
    submit with today's version: users never pay twice because the prompt changed."""
    s = submit(db)
    db.execute("UPDATE batch_jobs SET processor_version = '1'")
    refresh_until_done(db, s["job_id"])
    assert one(db, "SELECT count(*) FROM ai_analyses WHERE processor_version = '1'") == N
    uploads = fake_openai.state()["counts"]["uploads"]
    again = rows(db, f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues$$)")
    assert again[0]["status"] == "nothing_to_submit", again
    assert again[0]["skipped_analysed"] == N and again[0]["submitted"] == 0, again
    assert fake_openai.state()["counts"]["uploads"] == uploads
    missing = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', missing_analysis := true)")
    assert missing[0]["submitted"] == 0, missing
