"""The life of a job after batch_submit: refresh, collect, cancel, retry, and "lose nothing".

Every bullet of issue 4's "What lose nothing means" (except the kill -9 tests, which
live in test/python/test_crash.py) has a test here, against the loopback fake provider.

Run: AI_BATCH_EXTENSION=$PWD/build/release/ai_batch.duckdb_extension \
     .venv/bin/python -m pytest -q test/python/test_lifecycle.py
"""

from __future__ import annotations

import json
import re
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: E402,F401

SCHEMA = (ROOT / "sql" / "schema.sql").read_text(encoding="utf-8")

# Issue titles and the product the fake's deterministic "model" gives each one
# (fake_provider/answers.py: first keyword found wins). Every product differs from
# its neighbours, so an answer applied to the wrong issue shows.
ISSUES = [
    ("Support bundle collection hangs forever", "troubleshoot"),
    ("kurl join script times out", "kurl"),
    ("Embedded cluster upgrade loses data", "embedded-cluster"),
    ("Compatibility matrix cluster create fails", "compatibility-matrix"),
    ("Vendor portal login loop", "vendor"),
    ("The docs have a typo on the install page", "docs"),
    ("Admin console shows a blank page", "kots"),
    ("Download portal link is broken", "downloadportal"),
    ("Preflight check reports the wrong memory", "troubleshoot"),
    ("SDK returns a 500 on license fields", "sdk"),
]
N = len(ISSUES)
TERMINAL = {"completed", "failed", "expired", "cancelled"}
ITEM_STATES = {"completed", "failed", "expired", "cancelled"}
MAX_ATTEMPTS = 3  # src/retry.rs


# ----------------------------------------------------------------------------- helpers


def issues_db(connect):
    """A database with the issue schema and the N issues of ISSUES."""
    con = connect()
    con.execute(SCHEMA)
    for k, (title, _) in enumerate(ISSUES):
        con.execute(
            "INSERT INTO issues (org, repo, number, title, body, state) VALUES ('acme', 'widgets', ?, ?, ?, 'open')",
            [100 + k, title, f"Steps to reproduce: {title.lower()}."],
        )
    return con


@pytest.fixture
def db(connect, fake_openai, monkeypatch):
    """A database with the issue schema, N issues, and the environment pointed at the fake."""
    monkeypatch.setenv("OPENAI_API_KEY", fake_openai.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    return issues_db(connect)


def rows(con, sql, params=None):
    """Rows as dicts (an execute() result fully fetched)."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def one(con, sql, params=None):
    r = con.execute(sql, params or []).fetchall()
    assert len(r) == 1, r
    return r[0][0] if len(r[0]) == 1 else r[0]


def submit(con, where="true", **named):
    extra = "".join(f", {k} := {v!r}" if isinstance(v, str) else f", {k} := {v}" for k, v in named.items())
    extra = extra.replace("True", "true").replace("False", "false")
    out = rows(con, f"SELECT * FROM batch_submit('product-labeling', $$SELECT id FROM issues WHERE {where}$$ {extra})")
    assert len(out) == 1, out
    assert out[0]["job_id"], out
    return out[0]


def refresh(con, job_id=None):
    if job_id is None:
        return rows(con, "SELECT * FROM batch_refresh()")
    return rows(con, "SELECT * FROM batch_refresh(job_id := ?)", [job_id])


def refresh_until_done(con, job_id, max_calls=8):
    """Calls batch_refresh() until the job is terminal and collected; returns every row seen."""
    seen = []
    for _ in range(max_calls):
        out = refresh(con)
        seen += out
        st, collected = one(con, "SELECT status, collected_at IS NOT NULL FROM batch_jobs WHERE job_id = ?", [job_id])
        if st in TERMINAL and collected:
            return seen
    raise AssertionError(f"job {job_id} not done after {max_calls} refreshes: {seen}")


def job(con, job_id):
    out = rows(con, "SELECT * FROM batch_jobs WHERE job_id = ?", [job_id])
    assert len(out) == 1
    return out[0]


def items(con, job_id):
    return rows(con, """
        SELECT b.*, i.title FROM batch_items b JOIN batch_jobs j ON j.id = b.batch_job_id
        JOIN issues i ON i.id = b.issue_id WHERE j.job_id = ? ORDER BY b.id""", [job_id])


def fake_batch(fake, batch_id):
    """The fake's view of a batch: an OpenAI batch or an Anthropic message batch."""
    st = fake.state()
    for b in st["batches"] + st["message_batches"]:
        if b["id"] == batch_id:
            return b
    raise AssertionError(f"no batch {batch_id} at the fake")


def provider_counts(batch):
    """(total, completed, failed) of a fake batch, OpenAI's request_counts or Anthropic's
    (succeeded / errored / canceled / expired, known once it ended)."""
    rc = batch["request_counts"]
    if "total" in rc:
        return rc["total"], rc["completed"], rc["total"] - rc["completed"]
    if batch.get("processing_status") != "ended":
        return 0, 0, 0
    failed = rc["errored"] + rc["canceled"] + rc["expired"]
    return rc["succeeded"] + failed, rc["succeeded"], failed


def fake_file(fake, file_id) -> bytes:
    req = urllib.request.Request(f"{fake.base_url}/files/{file_id}/content",
                                 headers={"Authorization": f"Bearer {fake.api_key}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def expected_product(title):
    return dict(ISSUES)[title]


def check_job_invariants(con, job_id, fake=None, invalid_answers=0):
    """Every item in exactly one final state; counts add up to issues_count and agree with
    the provider's request_counts; one analysis per completed item and none for the others,
    each for the right issue."""
    j = job(con, job_id)
    its = items(con, job_id)
    assert len(its) == j["issues_count"]
    assert len({i["issue_id"] for i in its}) == len(its), "an issue twice in one job"
    assert len({i["custom_id"] for i in its}) == len(its)
    assert all(i["status"] in ITEM_STATES for i in its), [i["status"] for i in its]
    completed = [i for i in its if i["status"] == "completed"]
    assert j["completed_count"] == len(completed)
    assert j["failed_count"] == len(its) - len(completed)
    assert j["completed_count"] + j["failed_count"] == j["issues_count"]
    assert j["collected_at"] is not None
    # Analyses: exactly one per completed item, none for the others, right issue.
    an = rows(con, """
        SELECT a.*, b.status AS item_status, b.issue_id AS item_issue, i.title
        FROM ai_analyses a LEFT JOIN batch_items b ON b.id = a.batch_item_id
        LEFT JOIN issues i ON i.id = a.issue_id
        WHERE a.batch_job_id = ?""", [j["id"]])
    assert sorted(a["batch_item_id"] for a in an) == sorted(i["id"] for i in completed)
    for a in an:
        assert a["item_status"] == "completed"
        assert a["issue_id"] == a["item_issue"]
        if j["processor"] != "product-labeling":
            continue  # a user-defined processor: its own answers (test_user_processors.py)
        labels = [x["label"] for x in json.loads(a["result"])["recommended_labels"]]
        assert labels == [f"product::{expected_product(a['title'])}"], (a["title"], labels)
    for i in its:
        if i["status"] != "completed":
            assert i["error_code"] and i["error_message"], i
    if fake is not None and j["provider_batch_id"]:
        total, completed, failed = provider_counts(fake_batch(fake, j["provider_batch_id"]))
        if total:
            assert total == j["issues_count"]
            assert j["completed_count"] + invalid_answers == completed
            assert j["failed_count"] - invalid_answers == failed
    return j, its


def snapshot(con):
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
            for t in ("batch_jobs", "batch_items", "ai_analyses")}


# ----------------------------------------------------------------------------- matching


def test_results_matched_by_custom_id_not_line_order(db, fake_openai):
    fake_openai.configure({"next_batch": {"outcome": "completed", "output_order": "shuffled"}})
    s = submit(db)
    assert s["submitted"] == N
    seen = refresh_until_done(db, s["job_id"])
    statuses = [r["status"] for r in seen]
    assert statuses[-1] == "completed" and "in_progress" in statuses, statuses
    j, its = check_job_invariants(db, s["job_id"], fake_openai)
    assert j["completed_count"] == N and all(i["status"] == "completed" for i in its)
    # The output really was out of input order, so line-order matching would have failed.
    fb = fake_batch(fake_openai, j["provider_batch_id"])
    out_ids = [json.loads(x)["custom_id"] for x in fake_file(fake_openai, fb["output_file_id"]).splitlines()]
    assert sorted(out_ids) == sorted(i["custom_id"] for i in its)
    assert out_ids != [i["custom_id"] for i in its]


def test_unknown_custom_ids_ignored_duplicates_applied_once(db, fake_openai):
    fake_openai.configure({"next_batch": {"outcome": "completed", "duplicate_custom_ids": 3,
                                          "unknown_custom_ids": 2}})
    s = submit(db)
    seen = refresh_until_done(db, s["job_id"])
    msg = seen[-1]["message"]
    assert "2 output lines with unknown custom_id ignored" in msg, msg
    assert "3 duplicate lines applied once" in msg, msg
    j, its = check_job_invariants(db, s["job_id"], fake_openai)
    assert j["completed_count"] == N
    assert seen[-1]["applied"] == N
    assert one(db, "SELECT count(*) FROM ai_analyses") == N
    assert one(db, "SELECT count(DISTINCT issue_id) FROM ai_analyses") == N
    assert one(db, "SELECT count(*) FROM ai_analyses WHERE batch_item_id IS NULL") == 0
    # The unknown answers ({"note": ...}) landed nowhere.
    assert one(db, "SELECT count(*) FROM ai_analyses WHERE result::VARCHAR LIKE '%never sent%'") == 0
    # The fake's answers for unknown ids are not model answers that failed here.
    assert "0 answers failed validation" in msg, msg


# ----------------------------------------------------------------------------- outcomes


def test_completed_mixed_reads_output_and_error_files(db, fake_openai):
    fake_openai.configure({"next_batch": {
        "outcome": "completed_mixed", "fail_every": 2,
        "fail_kinds": ["server_error", "invalid_request", "request_timeout", "context_length"]}})
    s = submit(db)
    refresh_until_done(db, s["job_id"])
    j, its = check_job_invariants(db, s["job_id"], fake_openai)
    assert j["status"] == "completed"
    assert (j["completed_count"], j["failed_count"]) == (N // 2, N // 2)
    fb = fake_batch(fake_openai, j["provider_batch_id"])
    assert fb["output_file_id"] and fb["error_file_id"]
    assert j["output_file_id"] == fb["output_file_id"] and j["error_file_id"] == fb["error_file_id"]
    assert fake_openai.state()["counts"]["content_downloads"] == 2
    failed = {i["error_code"]: i["error_message"] for i in its if i["status"] == "failed"}
    # Both error-line shapes: response.body.error (HTTP 500/400) and a top-level error.
    assert set(failed) == {"http_500", "string_above_max_length", "request_timeout", "context_length_exceeded"}, failed
    assert "maximum context length" in failed["context_length_exceeded"]
    assert "timed out" in failed["request_timeout"]
    # Failed line items have no tokens or cost billed to them here.
    assert all(i["cost"] is None for i in its if i["status"] == "failed")


def test_completed_with_every_line_failed_and_no_output_file(db, fake_openai):
    fake_openai.configure({"next_batch": {"outcome": "all_failed", "fail_kinds": ["server_error", "request_timeout"]}})
    s = submit(db)
    refresh_until_done(db, s["job_id"])
    j, its = check_job_invariants(db, s["job_id"], fake_openai)
    fb = fake_batch(fake_openai, j["provider_batch_id"])
    assert fb["status"] == "completed" and fb["output_file_id"] is None and fb["error_file_id"]
    assert j["status"] == "completed"
    assert (j["completed_count"], j["failed_count"]) == (0, N)
    assert {i["error_code"] for i in its} == {"http_500", "request_timeout"}
    assert one(db, "SELECT count(*) FROM ai_analyses") == 0
    assert float(j["actual_cost"]) == 0.0


@pytest.mark.parametrize("outcome,item_state,code", [("expired", "expired", "batch_expired"),
                                                     ("cancelled", "cancelled", "batch_cancelled")])
def test_expired_and_cancelled_keep_partial_results_rest_is_retryable(db, fake_openai, outcome, item_state, code):
    fake_openai.configure({"next_batch": {"outcome": outcome, "partial_fraction": 0.4}})
    s = submit(db)
    refresh_until_done(db, s["job_id"])
    j, its = check_job_invariants(db, s["job_id"], fake_openai)
    assert j["status"] == outcome
    done = [i for i in its if i["status"] == "completed"]
    rest = [i for i in its if i["status"] != "completed"]
    assert len(done) == 4 and len(rest) == N - 4
    assert {(i["status"], i["error_code"]) for i in rest} == {(item_state, code)}
    # The retry takes exactly the rest, and completing it finishes every issue once.
    r = rows(db, "SELECT * FROM batch_retry(?)", [s["job_id"]])
    assert len(r) == 1 and r[0]["submitted"] == len(rest), r
    new = r[0]["job_id"]
    assert job(db, new)["retry_of"] == s["job_id"]
    new_items = items(db, new)
    assert sorted(i["issue_id"] for i in new_items) == sorted(i["issue_id"] for i in rest)
    assert all(i["attempts"] == 2 for i in new_items)
    refresh_until_done(db, new)
    check_job_invariants(db, new, fake_openai)
    assert one(db, "SELECT count(*), count(DISTINCT issue_id) FROM ai_analyses") == (N, N)


def test_failed_validation_records_errors_on_job_and_named_items(db, fake_openai):
    errors = [
        {"code": "invalid_json_line", "line": 2, "message": "This line is not parseable as valid JSON.", "param": None},
        {"code": "missing_required_parameter", "line": 5, "message": "Missing required parameter: 'body.model'.",
         "param": "body.model"},
        {"code": "invalid_url", "line": 5, "message": "The URL is not a valid endpoint.", "param": "url"},
    ]
    fake_openai.configure({"next_batch": {"outcome": "failed_validation", "validation_errors": errors}})
    s = submit(db)
    seen = refresh_until_done(db, s["job_id"])
    assert "invalid_json_line (line 2)" in seen[-1]["message"]
    j, its = check_job_invariants(db, s["job_id"], fake_openai)
    assert j["status"] == "failed" and j["completed_count"] == 0 and j["failed_count"] == N
    for e in errors:
        assert e["code"] in j["error_message"] and e["message"] in j["error_message"], j["error_message"]
    # Line N of the request file is the item whose custom_id is on that line.
    lines = fake_file(fake_openai, j["input_file_id"]).splitlines()
    cid_at = {n + 1: json.loads(x)["custom_id"] for n, x in enumerate(lines)}
    by_cid = {i["custom_id"]: i for i in its}
    assert by_cid[cid_at[2]]["error_code"] == "invalid_json_line"
    assert "line 2" in by_cid[cid_at[2]]["error_message"]
    # Two errors on one line: the item carries the first code and both messages.
    five = by_cid[cid_at[5]]
    assert five["error_code"] == "missing_required_parameter"
    assert "line 5" in five["error_message"]
    assert errors[1]["message"] in five["error_message"] and errors[2]["message"] in five["error_message"]
    others = [i for i in its if i["custom_id"] not in (cid_at[2], cid_at[5])]
    assert len(others) == N - 2
    # The items no error names failed because of the others, and say so: not with a
    # code that blames their own line.
    assert {i["error_code"] for i in others} == {"batch_failed"}, {i["error_code"] for i in others}
    assert all(i["status"] == "failed" for i in others)
    assert one(db, "SELECT count(*) FROM ai_analyses") == 0


def test_token_limit_exceeded_requeues_and_never_fails_the_items(db, fake_openai):
    # Issue 14: a batch the provider refuses for its enqueued-token limit goes back to
    # `queued` with its items untouched (test_limits.py follows it until it is sent again).
    fake_openai.configure({"next_batch": {"outcome": "token_limit_exceeded"}})
    s = submit(db)
    r = refresh(db, s["job_id"])[0]
    j = job(db, s["job_id"])
    assert j["status"] == "queued" and "token_limit_exceeded" in j["error_message"], j
    assert "Enqueued token limit reached" in r["message"], r
    its = items(db, s["job_id"])
    assert {(i["status"], i["error_code"]) for i in its} == {("pending", None)}
    with pytest.raises(Exception, match="is still queued"):
        db.execute("SELECT * FROM batch_retry(?)", [s["job_id"]])
    assert one(db, "SELECT count(*) FROM batch_jobs") == 1


def test_schema_invalid_answers_fail_the_item_and_store_nothing(db, fake_openai):
    kinds = ["refusal", "length", "malformed", "schema", "content_filter"]
    fake_openai.configure({"next_batch": {"outcome": "invalid_answers", "invalid_every": 2,
                                          "invalid_kinds": kinds, "output_order": "reversed"}})
    s = submit(db)
    refresh_until_done(db, s["job_id"])
    j, its = check_job_invariants(db, s["job_id"], fake_openai, invalid_answers=N // 2)
    # Lines 2, 4, 6, ... (1-based) got the invalid kinds in turn; line n is item n.
    want = {"refusal": ("refusal", "refused"), "length": ("truncated", "finish_reason: length"),
            "malformed": ("invalid_answer", ""), "schema": ("invalid_answer", ""),
            "content_filter": ("content_filter", "content filter")}
    for n, it in enumerate(its):
        if (n + 1) % 2:
            assert it["status"] == "completed", it
            continue
        code, text = want[kinds[(n // 2) % len(kinds)]]
        assert it["status"] == "failed" and it["error_code"] == code, it
        assert text in it["error_message"], it
        # The model was paid for the answer even though it is unusable.
        assert it["input_tokens"] and it["input_tokens"] > 0
    assert j["completed_count"] == N // 2
    bad = [i["id"] for i in its if i["status"] == "failed"]
    assert one(db, f"SELECT count(*) FROM ai_analyses WHERE batch_item_id IN ({','.join(map(str, bad))})") == 0


# ----------------------------------------------------------------------------- idempotence / concurrency


def test_second_refresh_changes_nothing(db, fake_openai):
    fake_openai.configure({"next_batch": {"outcome": "completed_mixed", "duplicate_custom_ids": 1}})
    s = submit(db)
    refresh_until_done(db, s["job_id"])
    check_job_invariants(db, s["job_id"], fake_openai)
    before = snapshot(db)
    counts = fake_openai.state()["counts"]
    assert refresh(db) == []
    assert snapshot(db) == before
    # Naming the collected job explicitly changes nothing either, and sends nothing.
    again = refresh(db, s["job_id"])
    assert len(again) == 1 and again[0]["applied"] == 0 and again[0]["status"] == "completed"
    assert "already collected" in again[0]["message"]
    assert snapshot(db) == before
    after = fake_openai.state()["counts"]
    assert (after["retrieves"], after["content_downloads"]) == (counts["retrieves"], counts["content_downloads"])


def test_concurrent_refresh_from_two_connections_applies_each_result_once(db, connect, fake_openai, tmp_path):
    # Three jobs stepping one status per retrieve; two connections refresh in a loop at once.
    jobs = [submit(db, f"number % 3 = {k}")["job_id"] for k in range(3)]
    path = tmp_path / "test.duckdb"
    cons = [connect(path), connect(path)]
    barrier = threading.Barrier(2)
    results: list = [[], []]

    def run(k):
        barrier.wait()
        try:
            for _ in range(6):
                results[k] += rows(cons[k], "SELECT * FROM batch_refresh()")
        except Exception as e:  # noqa: BLE001 - reported below
            results[k].append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    seen = results[0] + results[1]
    assert all(not isinstance(r, Exception) for r in seen), seen
    for r in seen:
        assert not r["message"].startswith("not refreshed"), r
    assert sum(r["applied"] for r in seen) == N, seen
    assert refresh(db) == []
    for jid in jobs:
        j, _ = check_job_invariants(db, jid, fake_openai)
        assert j["status"] == "completed"
    assert one(db, "SELECT count(*), count(DISTINCT batch_item_id) FROM ai_analyses") == (N, N)
    counts = fake_openai.state()["counts"]
    assert sorted(counts["creates_by_job"].values()) == [1, 1, 1]
    # Each job's files were downloaded once: the second connection never collected again.
    assert counts["content_downloads"] == 3


def test_refresh_during_a_submit_leaves_the_submit_alone(db, connect, fake_openai, tmp_path):
    """A refresh on another connection while a submit is still uploading or creating must not
    take the job for an interrupted one (marking it failed, or creating its batch a second time)."""
    db.execute("SELECT count(*) FROM batch_history()").fetchall()
    fake_openai.configure({"advance": "immediate", "faults": [
        {"kind": "delay", "delay": 1.0, "method": "POST", "path": "/v1/files"},
        {"kind": "delay", "delay": 1.0, "method": "POST", "path": "/v1/batches"}]})
    other = connect(tmp_path / "test.duckdb")
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(s=submit(db)))
    t.start()
    seen = []
    while t.is_alive():
        seen += refresh(other)
        t.join(timeout=0.3)
    assert out["s"]["status"] == "validating", out
    jid = out["s"]["job_id"]
    assert seen, "no refresh ran during the submit"
    assert fake_openai.state()["counts"]["creates_by_job"] == {jid: 1}
    refresh_until_done(other, jid)
    j, _ = check_job_invariants(db, jid, fake_openai)
    assert j["completed_count"] == N, seen


# ----------------------------------------------------------------------------- lost create


def test_lost_create_is_adopted_by_job_id_never_created_twice(db, fake_openai):
    fake_openai.configure({"fault": {"kind": "reset", "method": "POST", "path": "/v1/batches", "after_action": True}})
    s = submit(db)
    jid = s["job_id"]
    assert s["status"] == "uploaded" and s["provider_batch_id"] is None, s
    assert "batch_refresh()" in s["message"]
    st = fake_openai.state()
    assert st["counts"]["creates_by_job"] == {jid: 1}
    made = [b["id"] for b in st["batches"] if b["_fake"]["job_id"] == jid]
    assert len(made) == 1
    assert job(db, jid)["provider_batch_id"] is None
    refresh_until_done(db, jid)
    j, _ = check_job_invariants(db, jid, fake_openai)
    assert j["provider_batch_id"] == made[0] and j["completed_count"] == N
    counts = fake_openai.state()["counts"]
    assert counts["creates_by_job"] == {jid: 1} and counts["batch_creates"] == 1
    assert counts["list_calls"] >= 1


# ----------------------------------------------------------------------------- transient / fatal provider errors


@pytest.mark.parametrize("fault", [
    {"kind": "rate_limit", "retry_after": 1},
    {"kind": "rate_limit", "retry_after_ms": 300, "count": 2},
    {"kind": "rate_limit", "retry_after_date": 1},
    {"kind": "server_error"},
    {"kind": "bad_gateway"},
    {"kind": "service_unavailable", "count": 2},
    {"kind": "reset"},
    {"kind": "close"},
    {"kind": "delay", "delay": 0.5},
    {"kind": "truncate", "method": "GET", "path": "/v1/files/", "truncate_fraction": 0.3},
], ids=lambda f: f["kind"] + "".join(f"-{k}" for k in f if k.startswith("retry_after") or k == "count"))
def test_transient_trouble_is_retried_and_refresh_succeeds(db, fake_openai, fault):
    fake_openai.configure({"advance": "immediate"})
    s = submit(db)
    rule = {"method": "GET", "path": "/v1/batches/", "count": 1, **fault}
    fake_openai.configure({"fault": rule})
    out = refresh(db)
    assert len(out) == 1 and out[0]["status"] == "completed", out
    assert out[0]["message"].startswith("collected"), out
    assert out[0]["applied"] == N
    st = fake_openai.state()
    assert st["counts"]["faults_fired"] == rule["count"]
    faulted = [r for r in st["requests"] if r["fault"]]
    assert len(faulted) == rule["count"]
    check_job_invariants(db, s["job_id"], fake_openai)


def test_transient_trouble_that_outlasts_the_retries_says_try_again_and_keeps_the_job(db, fake_openai):
    s = submit(db)
    before = snapshot(db)
    fake_openai.configure({"fault": {"kind": "service_unavailable", "method": "GET", "path": "/v1/batches/",
                                     "count": -1, "retry_after_ms": 20}})
    out = refresh(db)
    msg = out[0]["message"]
    assert msg.startswith("not refreshed: OpenAI returned 503"), msg
    assert "5 attempts" in msg and "run batch_refresh() again later" in msg, msg
    assert out[0]["status"] == s["status"]
    assert snapshot(db) == before
    assert fake_openai.state()["counts"]["faults_fired"] == 5
    fake_openai.configure({"clear_faults": True})
    refresh_until_done(db, s["job_id"])
    check_job_invariants(db, s["job_id"], fake_openai)


@pytest.mark.parametrize("kind,status,code", [
    ("unauthorized", 401, "invalid_api_key"),
    ("forbidden", 403, "unsupported_country_region_territory"),
    ("not_found", 404, None),
    ("insufficient_quota", 429, "insufficient_quota"),
])
def test_non_retryable_errors_are_not_retried_and_leave_the_job_intact(db, fake_openai, monkeypatch, kind, status, code):
    key = "sk-proj-LIFECYCLEsecretKEY0123456789abcdef"
    fake_openai.configure({"api_key": key})
    monkeypatch.setenv("OPENAI_API_KEY", key)
    s = submit(db)
    before = snapshot(db)
    fake_openai.configure({"fault": {"kind": kind, "method": "GET", "path": "/v1/batches/", "count": 1}})
    out = refresh(db)
    assert len(out) == 1, out
    msg = out[0]["message"]
    assert msg.startswith("not refreshed"), msg
    assert "OpenAI" in msg and str(status) in msg, msg
    if code:
        assert code in msg, msg
    st = fake_openai.state()
    faulted = [r for r in st["requests"] if r["fault"]]
    assert len(faulted) == 1
    assert faulted[0]["request_id"] in msg, (faulted, msg)
    # Not retried: the fault fired once and no other retrieve was made.
    assert st["counts"]["retrieves"] == 0
    assert key not in msg and key[8:] not in msg
    assert out[0]["status"] == s["status"] == out[0]["old_status"]
    assert snapshot(db) == before
    # Nothing in the database holds the key.
    for t in before.values():
        assert key not in repr(t)
    # The job is intact: a later refresh picks it up and finishes it.
    refresh_until_done(db, s["job_id"])
    check_job_invariants(db, s["job_id"], fake_openai)


# ----------------------------------------------------------------------------- cancel


def test_batch_cancel_collects_partial_results_then_nothing_to_cancel(db, fake_openai):
    fake_openai.configure({"next_batch": {"hold_at": "in_progress", "partial_fraction": 0.3}})
    s = submit(db)
    jid = s["job_id"]
    assert refresh(db)[0]["status"] == "in_progress"
    c = rows(db, "SELECT * FROM batch_cancel(?)", [jid])
    assert len(c) == 1 and c[0]["status"] == "cancelling", c
    assert "cancel requested" in c[0]["message"]
    assert fake_openai.state()["counts"]["cancels"] == 1
    refresh_until_done(db, jid)
    j, its = check_job_invariants(db, jid, fake_openai)
    assert j["status"] == "cancelled"
    assert j["completed_count"] == 3
    assert {(i["status"], i["error_code"]) for i in its if i["status"] != "completed"} == {("cancelled", "batch_cancelled")}
    # A finished job: nothing to cancel, nothing sent, nothing changed.
    before = snapshot(db)
    again = rows(db, "SELECT * FROM batch_cancel(?)", [jid])
    assert "nothing to cancel" in again[0]["message"] and again[0]["status"] == "cancelled"
    assert fake_openai.state()["counts"]["cancels"] == 1
    assert snapshot(db) == before
    # batch_retry picks up the cancelled ones.
    r = rows(db, "SELECT * FROM batch_retry(?)", [jid])
    assert r[0]["submitted"] == N - 3


def test_batch_cancel_failing_at_the_provider_says_what_to_do(db, fake_openai):
    s = submit(db)
    before = snapshot(db)
    fake_openai.configure({"fault": {"kind": "server_error", "method": "POST", "path": "/v1/batches/", "count": 1}})
    with pytest.raises(Exception, match=rf"batch_cancel: OpenAI returned 500 .*request req_.*"
                                        rf"run batch_cancel\('{s['job_id']}'\) again"):
        db.execute("SELECT * FROM batch_cancel(?)", [s["job_id"]]).fetchall()
    assert snapshot(db) == before
    c = rows(db, "SELECT * FROM batch_cancel(?)", [s["job_id"]])
    assert c[0]["status"] == "cancelling", c
    refresh_until_done(db, s["job_id"])
    j, _ = check_job_invariants(db, s["job_id"], fake_openai)
    assert j["status"] == "cancelled"


def test_batch_cancel_of_a_batch_that_finished_meanwhile_collects_it(db, fake_openai):
    s = submit(db)
    jid = s["job_id"]
    bid = s["provider_batch_id"]
    # The provider finishes while our record still says 'validating'.
    req = urllib.request.Request(f"{fake_openai.root_url}/_fake/batches/{bid}", data=b'{"step": 3}', method="POST")
    urllib.request.urlopen(req, timeout=10).read()
    c = rows(db, "SELECT * FROM batch_cancel(?)", [jid])
    assert c[0]["status"] == "completed" and c[0]["applied"] == N, c
    check_job_invariants(db, jid, fake_openai)


# ----------------------------------------------------------------------------- retry


def run_mixed(con, fake, fail_kinds, send=submit):
    """A collected job whose every second request failed, with `fail_kinds` in turn."""
    fake.configure({"next_batch": {"outcome": "completed_mixed", "fail_every": 2, "fail_kinds": fail_kinds}})
    s = send(con)
    refresh_until_done(con, s["job_id"])
    return s, check_job_invariants(con, s["job_id"], fake)[1]


def test_batch_retry_takes_only_retryable_items(db, fake_openai):
    s, its = run_mixed(db, fake_openai, ["server_error", "context_length"])
    retryable = sorted(i["issue_id"] for i in its if i["error_code"] == "http_500")
    hopeless = [i for i in its if i["error_code"] == "context_length_exceeded"]
    assert len(retryable) == 3 and len(hopeless) == 2
    r = rows(db, "SELECT * FROM batch_retry(?)", [s["job_id"]])
    assert len(r) == 1 and r[0]["submitted"] == 3, r
    assert "2 items left alone" in r[0]["message"], r
    new = r[0]["job_id"]
    assert job(db, new)["retry_of"] == s["job_id"]
    assert sorted(i["issue_id"] for i in items(db, new)) == retryable
    assert all(i["attempts"] == 2 for i in items(db, new))
    # The original job's items are untouched.
    assert [i["attempts"] for i in items(db, s["job_id"])] == [1] * N
    # Retrying the same job again would send its items a second time: refused, pointing at the retry.
    with pytest.raises(Exception, match=rf"batch_retry: .*already retried by {new}"):
        db.execute("SELECT * FROM batch_retry(?)", [s["job_id"]]).fetchall()


def test_batch_retry_sends_the_same_model_and_reasoning_effort(db, fake_openai):
    fake_openai.configure({"next_batch": {"outcome": "completed_mixed", "fail_every": 2,
                                          "fail_kinds": ["server_error"]}})
    s = submit(db, model="openai:o4-mini", reasoning_effort="low")
    refresh_until_done(db, s["job_id"])
    r = rows(db, "SELECT * FROM batch_retry(?)", [s["job_id"]])
    assert len(r) == 1 and r[0]["submitted"] > 0 and r[0]["model"] == "o4-mini", r
    lines = [json.loads(ln) for ln in fake_file(fake_openai, job(db, r[0]["job_id"])["input_file_id"]).splitlines()]
    assert len(lines) == r[0]["submitted"]
    assert all(ln["body"]["model"] == "o4-mini" and ln["body"]["reasoning_effort"] == "low" for ln in lines)


def test_batch_retry_leaves_items_alone_after_max_attempts(db, fake_openai):
    fake_openai.configure({"advance": "immediate", "defaults": {"outcome": "all_failed", "fail_kinds": ["server_error"]}})
    jid = submit(db, "number < 103")["job_id"]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        refresh_until_done(db, jid)
        _, its = check_job_invariants(db, jid, fake_openai)
        assert [i["attempts"] for i in its] == [attempt] * 3
        r = rows(db, "SELECT * FROM batch_retry(?)", [jid])
        assert len(r) == 1
        if attempt < MAX_ATTEMPTS:
            assert r[0]["submitted"] == 3, r
            jid = r[0]["job_id"]
    assert r[0]["status"] == "nothing_to_retry" and r[0]["job_id"] is None, r
    assert r[0]["skipped"] == 3
    assert f"{MAX_ATTEMPTS} attempts" in r[0]["message"] and "3 items left alone" in r[0]["message"], r
    assert one(db, "SELECT count(*) FROM batch_jobs") == MAX_ATTEMPTS


def test_batch_retry_of_an_active_or_uncollected_job_is_a_clear_error(db, fake_openai):
    s = submit(db)
    with pytest.raises(Exception, match=r"batch_retry: .*still validating.*batch_refresh\(\)"):
        db.execute("SELECT * FROM batch_retry(?)", [s["job_id"]]).fetchall()
    db.execute("UPDATE batch_jobs SET status = 'completed' WHERE job_id = ?", [s["job_id"]]).fetchall()
    with pytest.raises(Exception, match=r"batch_retry: .*not collected yet.*batch_refresh\(\)"):
        db.execute("SELECT * FROM batch_retry(?)", [s["job_id"]]).fetchall()
    assert one(db, "SELECT count(*) FROM batch_jobs") == 1


# ----------------------------------------------------------------------------- views


def test_product_labels_view_is_readable_without_json(db, fake_openai):
    s = submit(db)
    refresh_until_done(db, s["job_id"])
    types = {r[0]: r[1] for r in db.execute("DESCRIBE product_labels").fetchall()}
    assert types["issue"] == "VARCHAR" and types["label"] == "VARCHAR" and types["reasoning"] == "VARCHAR"
    assert types["confidence"] == "DOUBLE"
    assert "JSON" not in types.values(), types
    pl = rows(db, "SELECT issue, title, label, reasoning, confidence, job_id FROM product_labels ORDER BY issue")
    assert len(pl) == N
    assert [r["issue"] for r in pl] == [f"acme/widgets#{100 + k}" for k in range(N)]
    for r in pl:
        assert r["label"] == f"product::{expected_product(r['title'])}"
        assert r["reasoning"] and 0 < r["confidence"] <= 1 and r["job_id"] == s["job_id"]
    # Reprocessed: still one row per issue and label (the latest analysis).
    s2 = submit(db, "number = 100", reprocess=True)
    refresh_until_done(db, s2["job_id"])
    assert one(db, "SELECT count(*) FROM ai_analyses") == N + 1
    assert one(db, "SELECT count(*), count(DISTINCT issue) FROM product_labels") == (N, N)
    assert one(db, "SELECT job_id FROM product_labels WHERE issue = 'acme/widgets#100'") == s2["job_id"]


def test_history_and_details_show_actual_tokens_and_cost_next_to_estimate(db, fake_openai):
    fake_openai.configure({"next_batch": {"outcome": "completed_mixed", "fail_every": 5}})
    s = submit(db)
    refresh_until_done(db, s["job_id"])
    j, its = check_job_invariants(db, s["job_id"], fake_openai)
    usage = fake_batch(fake_openai, j["provider_batch_id"])["usage"]
    h = rows(db, "SELECT * FROM batch_history() WHERE job_id = ?", [s["job_id"]])[0]
    assert h["cost_estimate"] is not None and h["cost_estimate"] > 0
    assert (h["input_tokens"], h["output_tokens"]) == (usage["input_tokens"], usage["output_tokens"])
    assert h["actual_cost"] is not None and h["actual_cost"] > 0
    assert (h["completed_count"], h["failed_count"], h["pending_count"]) == (8, 2, 0)
    # gpt-4o-mini batch prices: $0.075 / $0.30 per million tokens.
    want = usage["input_tokens"] * 0.075e-6 + usage["output_tokens"] * 0.30e-6
    assert abs(float(h["actual_cost"]) - want) < 0.0001
    d = rows(db, "SELECT * FROM batch_details(?)", [s["job_id"]])
    assert len(d) == N
    assert all(r["actual_cost"] == h["actual_cost"] and r["cost_estimate"] == h["cost_estimate"] for r in d)
    assert sum(r["item_input_tokens"] or 0 for r in d) == usage["input_tokens"]
    assert abs(sum(r["item_cost"] or 0 for r in d) - want) < 0.0001
