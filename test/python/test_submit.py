"""batch_submit end to end: the real DuckDB wheel, the built extension, real HTTP over
loopback to the fake OpenAI provider (fake_provider/).

Run: AI_BATCH_EXTENSION=$PWD/build/release/ai_batch.duckdb_extension \
         .venv/bin/python -m pytest -q test/python/test_submit.py

Every test checks three places: what batch_submit returned, what it recorded
(batch_jobs / batch_items), and what the fake provider received (its counters, its
batches, the bytes of the uploaded JSONL files).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: E402,F401

SCHEMA = ROOT / "sql" / "schema.sql"
IMPORT = ROOT / "sql" / "import_issues.sql"
SAMPLE_GLOB = str(ROOT / "data" / "sample" / "issues" / "*.json")
SAMPLE_ISSUES = 17

PL = "product-labeling"
CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
JOB_ID = re.compile(r"^job_\d{8}_\d{6}_[a-z0-9]+$")
ENDPOINT = "/v1/chat/completions"
# core/COST.md: the documented default of expected output tokens per product-labeling
# request when no collected history exists (non-reasoning models).
DEFAULT_OUTPUT_TOKENS = 400
TRACKING_TABLES = ("batch_jobs", "batch_items", "ai_analyses")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def env(fake_openai, monkeypatch, tmp_path):
    """The process environment the extension reads at call time: key, base URL, spool."""
    monkeypatch.setenv("OPENAI_API_KEY", fake_openai.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("AI_BATCH_SPOOL_DIR", str(tmp_path / "spool"))
    return fake_openai


@pytest.fixture
def db(connect, env):
    """A database file with the 17 sample issues imported and ai_batch loaded."""
    con = connect()
    import_sample(con)
    return con


def import_sample(con) -> None:
    con.execute(SCHEMA.read_text(encoding="utf-8"))
    con.execute("SET VARIABLE issues_glob = ?", [SAMPLE_GLOB])
    con.execute(IMPORT.read_text(encoding="utf-8"))
    assert con.execute("SELECT count(*) FROM issues").fetchone()[0] == SAMPLE_ISSUES


# ----------------------------------------------------------------------------- helpers


def rows(con, sql: str, params: Any = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params) if params is not None else con.execute(sql)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def one(con, sql: str, params: Any = None) -> dict[str, Any]:
    r = rows(con, sql, params)
    assert len(r) == 1, r
    return r[0]


def scalar(con, sql: str, params: Any = None) -> Any:
    cur = con.execute(sql, params) if params is not None else con.execute(sql)
    return cur.fetchone()[0]


def ids_of(con, where: str, params: Any = None) -> list[int]:
    return [r[0] for r in con.execute(f"SELECT id FROM issues WHERE {where} ORDER BY id", params or []).fetchall()]


def submit_error(con, sql: str, params: Any = None) -> str:
    """Runs a statement that must fail; returns the message from `batch_submit:` on."""
    with pytest.raises(duckdb.Error) as ei:
        cur = con.execute(sql, params) if params is not None else con.execute(sql)
        cur.fetchall()
    msg = str(ei.value)
    m = re.match(r"^[A-Za-z ]+ Error: (batch_submit: .*)$", msg, re.S)
    assert m, f"error does not start with 'batch_submit:': {msg!r}"
    return m.group(1)


def tracking_tables(con) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name IN ('batch_jobs', 'batch_items', 'ai_analyses')"
        ).fetchall()
    ]


def assert_nothing_written(con) -> None:
    """The tracking tables do not exist, or are empty."""
    for t in tracking_tables(con):
        assert scalar(con, f"SELECT count(*) FROM {t}") == 0, t


def message_collector(con, messages: list[str]):
    """run(sql) -> rows: runs a statement, adding every value of its rows, or its error, to
    `messages` (what a user sees, for checks that a secret never shows)."""

    def run(q: str) -> list[dict[str, Any]]:
        try:
            res = rows(con, q)
        except duckdb.Error as e:
            messages.append(str(e))
            return []
        messages.extend(str(v) for r in res for v in r.values())
        return res

    return run


def assert_not_stored(con, *needles: str) -> int:
    """No row of any table or view (every column, cast to text) contains any of `needles`;
    the tracking tables exist. Returns the rows searched."""
    tables = con.execute(
        "SELECT database_name, schema_name, table_name FROM duckdb_tables() "
        "UNION ALL SELECT database_name, schema_name, view_name FROM duckdb_views() WHERE NOT internal"
    ).fetchall()
    assert {"batch_jobs", "batch_items", "ai_analyses", "issues"} <= {t[2] for t in tables}
    searched = 0
    for d, s, t in tables:
        x = f'"{d}"."{s}"."{t}"'
        where = " OR ".join("contains(CAST(x AS VARCHAR), ?)" for _ in needles)
        assert scalar(con, f"SELECT count(*) FROM {x} AS x WHERE {where}", list(needles)) == 0, f"{t} holds the key"
        searched += scalar(con, f"SELECT count(*) FROM {x}")
    return searched


def api_requests(fake) -> list[dict[str, Any]]:
    return [r for r in fake.state()["requests"] if r["path"].startswith("/v1")]


def assert_nothing_sent(fake) -> None:
    st = fake.state()
    assert st["counts"]["uploads"] == 0
    assert st["counts"]["batch_creates"] == 0
    assert api_requests(fake) == [], api_requests(fake)


def uploaded_lines(fake, file_id: str) -> list[dict[str, Any]]:
    """The JSONL the fake received as `file_id`, parsed line by line."""
    data = bytes(fake.provider.files.data(file_id)).decode("utf-8")
    assert data.endswith("\n")
    return [json.loads(line) for line in data.splitlines()]


def fake_batch(fake, batch_id: str) -> dict[str, Any]:
    found = [b for b in fake.state()["batches"] if b["id"] == batch_id]
    assert len(found) == 1, batch_id
    return found[0]


def fake_file(fake, file_id: str) -> dict[str, Any]:
    found = [f for f in fake.state()["files"] if f["id"] == file_id]
    assert len(found) == 1, file_id
    return found[0]


def check_submitted_job(con, fake, job_id: str, issue_ids: list[int], *, model: str = "gpt-4o-mini"):
    """Everything one successfully submitted job must show, in our tables and at the
    provider. Returns (job row, item rows, uploaded lines)."""
    assert JOB_ID.match(job_id), job_id
    job = one(con, "SELECT * FROM batch_jobs WHERE job_id = ?", [job_id])
    # The job row.
    assert job["provider"] == "openai"
    assert job["processor"] == PL
    assert job["processor_version"], job
    assert job["model"] == model
    assert job["issues_count"] == len(issue_ids)
    assert job["provider_batch_id"] and job["input_file_id"]
    assert job["submitted_at"] is not None and job["submitted_at"] >= job["created_at"]
    assert job["error_message"] is None
    assert job["cost_estimate"] is not None and job["cost_estimate"] > 0
    assert job["estimated_input_tokens"] > 0
    assert job["base_url"] == fake.base_url
    # Its status is the provider's.
    batch = fake_batch(fake, job["provider_batch_id"])
    assert job["status"] == batch["status"] == "validating"
    assert batch["input_file_id"] == job["input_file_id"]
    assert batch["metadata"] == {"ai_batch_job_id": job_id}
    assert batch["endpoint"] == ENDPOINT and batch["completion_window"] == "24h"
    assert fake.state()["counts"]["creates_by_job"].get(job_id) == 1
    f = fake_file(fake, job["input_file_id"])
    assert f["purpose"] == "batch" and f["filename"].endswith(".jsonl")
    # The items.
    items = rows(con, "SELECT * FROM batch_items WHERE batch_job_id = ? ORDER BY issue_id", [job["id"]])
    assert [i["issue_id"] for i in items] == sorted(issue_ids)
    for i in items:
        assert CUSTOM_ID.match(i["custom_id"]), i
        assert i["status"] == "pending" and i["error_code"] is None, i
        assert i["estimated_input_tokens"] > 0
    assert len({i["custom_id"] for i in items}) == len(items)
    assert sum(i["estimated_input_tokens"] for i in items) == job["estimated_input_tokens"]
    # The uploaded file: one request per item, matched by custom_id.
    lines = uploaded_lines(fake, job["input_file_id"])
    assert len(lines) == len(items)
    assert {ln["custom_id"] for ln in lines} == {i["custom_id"] for i in items}
    titles = dict(
        con.execute(
            f"SELECT id, title FROM issues WHERE id IN ({','.join(str(i) for i in issue_ids)})"
        ).fetchall()
    )
    by_custom = {i["custom_id"]: i["issue_id"] for i in items}
    for ln in lines:
        assert ln["method"] == "POST" and ln["url"] == ENDPOINT
        body = ln["body"]
        assert body["model"] == model
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        rf = body["response_format"]
        assert rf["type"] == "json_schema"
        assert rf["json_schema"]["strict"] is True
        assert rf["json_schema"]["schema"]["additionalProperties"] is False
        # The request carries the text of the issue its custom_id names.
        assert titles[by_custom[ln["custom_id"]]] in body["messages"][1]["content"]
    return job, items, lines


def only_job_id(result: list[dict[str, Any]]) -> str:
    assert len(result) == 1, result
    assert result[0]["job_id"], result
    return result[0]["job_id"]


def pending_per_issue(con) -> dict[int, int]:
    return dict(
        con.execute(
            "SELECT issue_id, count(*) FROM batch_items WHERE status = 'pending' GROUP BY issue_id"
        ).fetchall()
    )


# ----------------------------------------------------------------------------- 1. selection forms


def test_sql_text_selection_is_kept_and_submitted(db, env):
    sel = "SELECT id FROM issues WHERE state = 'open'"
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', $${sel}$$)")
    job_id = only_job_id(res)
    open_ids = ids_of(db, "state = 'open'")
    assert res[0]["status"] == "validating"
    assert res[0]["selected"] == res[0]["submitted"] == len(open_ids)
    assert res[0]["skipped"] == 0
    job, _, _ = check_submitted_job(db, env, job_id, open_ids)
    assert job["selection_query"] == sel
    assert res[0]["provider_batch_id"] == job["provider_batch_id"]
    assert res[0]["cost_estimate"] == job["cost_estimate"]
    assert job["estimated_output_tokens"] == DEFAULT_OUTPUT_TOKENS * len(open_ids)
    assert env.state()["counts"]["uploads"] == 1


def test_list_literal_selection(db, env):
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', [3, 1, 2, 2])")
    assert res[0]["selected"] == 3  # distinct ids
    job, _, _ = check_submitted_job(db, env, only_job_id(res), [1, 2, 3])
    assert "1, 2, 3" in job["selection_query"] or "3, 1, 2" in job["selection_query"]


def test_prepared_parameter_list(db, env):
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', ?)", [[4, 5, 6]])
    check_submitted_job(db, env, only_job_id(res), [4, 5, 6])


def test_getvariable_list(db, env):
    db.execute("SET VARIABLE ids = (SELECT list(id) FROM issues WHERE repo = 'troubleshoot')")
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', getvariable('ids'))")
    expected = ids_of(db, "repo = 'troubleshoot'")
    assert len(expected) == 3
    check_submitted_job(db, env, only_job_id(res), expected)


def test_null_selection_with_filters_and_max_issues(db, env):
    expected_all = ids_of(db, "org = 'replicatedhq' AND state = 'open'")
    res = rows(
        db,
        f"SELECT * FROM batch_submit('{PL}', '*', org := 'replicatedhq', state := 'open', max_issues := 2)",
    )
    assert res[0]["submitted"] == 2
    assert res[0]["over_max"] == len(expected_all) - 2
    assert "over max_issues" in res[0]["message"]
    job, _, _ = check_submitted_job(db, env, only_job_id(res), expected_all[:2])
    assert "org = 'replicatedhq'" in job["selection_query"] and "max_issues = 2" in job["selection_query"]
    # repo filter alone; the two already submitted are skipped as active.
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', repo := 'troubleshoot')")
    ts = ids_of(db, "repo = 'troubleshoot'")
    new = [i for i in ts if i not in expected_all[:2]]
    assert res[0]["skipped_active"] == len(ts) - len(new)
    check_submitted_job(db, env, only_job_id(res), new)


def test_filters_are_bound_not_spliced(db, env):
    # Spliced into SQL text this would select every issue; bound, it matches no org.
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', org := $$x' OR '1'='1$$)")
    assert res[0]["status"] == "nothing_to_submit" and res[0]["submitted"] == 0
    assert_nothing_written(db)
    assert_nothing_sent(env)


def test_missing_analysis_takes_issues_without_a_result(db, env):
    rows(db, "SELECT * FROM batch_history()")  # creates the tracking tables
    db.execute(
        "INSERT INTO ai_analyses (issue_id, processor, processor_version, model, result) "
        f"SELECT id, '{PL}', '1', 'gpt-4o-mini', '{{}}' FROM issues WHERE id <= 5"
    )
    db.execute(
        "INSERT INTO ai_analyses (issue_id, processor, processor_version, model, result) "
        "VALUES (6, 'another-processor', '1', 'gpt-4o-mini', '{}')"
    )
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', missing_analysis := true)")
    expected = ids_of(db, "id > 5")
    assert res[0]["submitted"] == len(expected) == SAMPLE_ISSUES - 5
    check_submitted_job(db, env, only_job_id(res), expected)


def test_scalar_with_subquery(db, env):
    out = scalar(db, f"SELECT batch_submit('{PL}', (SELECT list(id) FROM issues WHERE state = 'closed'))")
    assert isinstance(out, list) and len(out) == 1
    closed = ids_of(db, "state = 'closed'")
    assert out[0]["submitted"] == len(closed) and out[0]["status"] == "validating"
    check_submitted_job(db, env, out[0]["job_id"], closed)


def test_scalar_with_list_aggregate_and_struct_options(db, env):
    out = scalar(
        db,
        f"SELECT batch_submit('{PL}', list(id), {{'model': 'gpt-4o', 'max_issues': 3, 'temperature': 0.25}}) "
        "FROM issues WHERE org = 'replicatedhq'",
    )
    assert len(out) == 1 and out[0]["model"] == "gpt-4o"
    expected = ids_of(db, "org = 'replicatedhq'")[:3]
    assert out[0]["submitted"] == 3 and out[0]["over_max"] == len(ids_of(db, "org = 'replicatedhq'")) - 3
    _, _, lines = check_submitted_job(db, env, out[0]["job_id"], expected, model="gpt-4o")
    assert all(ln["body"]["temperature"] == 0.25 for ln in lines)


def test_provider_prefix_and_reasoning_effort_reach_the_request(db, env):
    # gh-analysis's `openai:<model>` form picks the provider; reasoning_effort is sent as
    # OpenAI's own `reasoning_effort` and kept with the job's options.
    out = one(db, f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues WHERE state = 'open'$$, "
                  "model := 'openai:o4-mini', reasoning_effort := 'high')")
    assert out["model"] == "o4-mini"
    open_ids = ids_of(db, "state = 'open'")
    job, _, lines = check_submitted_job(db, env, out["job_id"], open_ids, model="o4-mini")
    assert all(ln["body"]["reasoning_effort"] == "high" for ln in lines)
    assert all("temperature" not in ln["body"] for ln in lines)
    assert json.loads(job["options"])["reasoning_effort"] == "high"


def test_typed_null_selection_selects_nothing(db, env):
    # A subquery / variable that found no issue is a NULL BIGINT[]: it must select
    # nothing, not "every issue the filters allow".
    out = scalar(
        db,
        f"SELECT batch_submit('{PL}', (SELECT list(id) FROM issues WHERE state = 'no-such-state'), {{'org': 'acme'}})",
    )
    assert out[0]["status"] == "nothing_to_submit" and out[0]["selected"] == 0
    db.execute("SET VARIABLE none_ids = (SELECT list(id) FROM issues WHERE false)")
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', getvariable('none_ids'), org := 'acme')")
    assert res[0]["status"] == "nothing_to_submit" and res[0]["selected"] == 0
    assert_nothing_written(db)
    assert_nothing_sent(env)


@pytest.mark.parametrize("selection", ["NULL", "getvariable('idz')", "CAST(NULL AS BIGINT[])", "NULL::VARCHAR"])
def test_null_selection_never_widens_to_the_filters(db, env, selection):
    # Issue 9 #8: a misspelled variable (or any NULL) with org := 'acme' once sent every
    # acme issue. NULL selects nothing, and the message says how to mean "all".
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', {selection}, org := 'acme')")
    assert len(res) == 1
    r = res[0]
    assert r["status"] == "nothing_to_submit" and r["selected"] == 0 and r["submitted"] == 0
    assert "the selection is NULL" in r["message"] and "pass '*'" in r["message"]
    assert_nothing_written(db)
    assert_nothing_sent(env)


def test_star_selection_takes_every_issue_the_filters_allow(db, env):
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', org := 'acme')")
    acme = ids_of(db, "org = 'acme'")
    check_submitted_job(db, env, only_job_id(res), acme)


# ----------------------------------------------------------------------------- 2. skipping


def test_same_submit_twice_submits_nothing_the_second_time(db, env):
    q = f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues WHERE org = 'acme'$$)"
    first = rows(db, q)
    acme = ids_of(db, "org = 'acme'")
    check_submitted_job(db, env, only_job_id(first), acme)
    second = rows(db, q)
    assert len(second) == 1
    s = second[0]
    assert s["job_id"] is None and s["status"] == "nothing_to_submit"
    assert s["selected"] == len(acme) and s["submitted"] == 0
    assert s["skipped"] == s["skipped_active"] == len(acme)
    assert f"{len(acme)} in a job still running" in s["message"]
    assert scalar(db, "SELECT count(*) FROM batch_jobs") == 1
    assert scalar(db, "SELECT count(*) FROM batch_items") == len(acme)
    counts = env.state()["counts"]
    assert counts["uploads"] == 1 and counts["batch_creates"] == 1


def test_analysed_issues_skipped_unless_reprocess(db, env):
    rows(db, "SELECT * FROM batch_history()")
    db.execute(
        "INSERT INTO ai_analyses (issue_id, processor, processor_version, model, result) "
        f"VALUES (1, '{PL}', '1', 'gpt-4o-mini', '{{}}'), (2, '{PL}', '1', 'gpt-4o-mini', '{{}}')"
    )
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2, 3])")
    assert res[0]["skipped_analysed"] == 2 and res[0]["submitted"] == 1
    assert "2 already analysed (reprocess := true to redo)" in res[0]["message"]
    check_submitted_job(db, env, only_job_id(res), [3])
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2, 3], reprocess := true)")
    # 3 is still active: never twice, even with reprocess.
    assert res[0]["skipped_active"] == 1 and res[0]["submitted"] == 2
    check_submitted_job(db, env, only_job_id(res), [1, 2])
    assert pending_per_issue(db) == {1: 1, 2: 1, 3: 1}


def test_unknown_ids_are_reported(db, env):
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2, 99999, 88888])")
    assert res[0]["unknown_ids"] == 2 and res[0]["selected"] == 4 and res[0]["submitted"] == 2
    assert "2 not in issues (e.g. 88888, 99999)" in res[0]["message"]
    job, _, _ = check_submitted_job(db, env, only_job_id(res), [1, 2])
    assert job["skipped_count"] == 2


# ----------------------------------------------------------------------------- 3. concurrency


def _generate_issues(con, n: int, repo: str = "gen", body_repeat: int = 1) -> None:
    con.execute(
        "INSERT INTO issues (org, repo, number, title, body, state) "
        "SELECT 'gen', ?, range, 'Generated issue ' || range, repeat('kots admin console ', ?), 'open' "
        "FROM range(?)",
        [repo, body_repeat, n],
    )


def test_each_request_carries_its_own_labels_and_comments_in_order(connect, env):
    """Labels and comments are read as flat streams per read batch (16,384 issues) and
    merged by issue id: every request must carry exactly its issue's labels (by name)
    and comments (by position), also across the batch boundary and when rows were
    inserted out of order."""
    con = connect()
    con.execute(SCHEMA.read_text(encoding="utf-8"))
    n = 16_500
    _generate_issues(con, n)
    # Comments on every 7th issue, positions inserted in reverse; labels on every 5th
    # issue, names inserted in reverse. Around the read-batch boundary, every issue.
    with_extras = "number % 7 = 0 OR number BETWEEN 16370 AND 16400"
    for pos in (2, 1, 0):
        con.execute(
            "INSERT INTO comments (issue_id, position, author_login, body) "
            f"SELECT id, {pos}, 'user' || number, 'note-' || number || '-p{pos}' FROM issues WHERE {with_extras}"
        )
    con.execute("INSERT INTO labels (issue_id, name) SELECT id, 'zeta-' || number FROM issues WHERE number % 5 = 0")
    con.execute("INSERT INTO labels (issue_id, name) SELECT id, 'alpha-' || number FROM issues WHERE number % 5 = 0")
    number_of = dict(con.execute("SELECT id, number FROM issues").fetchall())
    job = only_job_id(rows(con, f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues$$)"))
    file_id = scalar(con, "SELECT input_file_id FROM batch_jobs WHERE job_id = ?", [job])
    lines = uploaded_lines(env, file_id)
    assert len(lines) == n
    marker = re.compile(r"note-(\d+)-p(\d)|(alpha|zeta)-(\d+)")
    for ln in lines:
        issue_id = int(ln["custom_id"].rsplit("-i", 1)[1])
        k = number_of[issue_id]
        text = ln["body"]["messages"][1]["content"]
        found = [m.group(0) for m in marker.finditer(text)]
        want_labels = [f"alpha-{k}", f"zeta-{k}"] if k % 5 == 0 else []
        want_comments = [f"note-{k}-p{p}" for p in range(3)] if (k % 7 == 0 or 16370 <= k <= 16400) else []
        assert sorted(found) == sorted(want_labels + want_comments), (k, found)
        assert [f for f in found if f.startswith("note")] == want_comments, (k, found)
        if want_comments:
            assert f"[comment 1] user{k}:" in text, text[-500:]
        if want_labels:
            assert text.index(f"alpha-{k}") < text.index(f"zeta-{k}")


def _run_concurrently(funcs) -> list[Any]:
    barrier = threading.Barrier(len(funcs))
    results: list[Any] = [None] * len(funcs)

    def run(k):
        barrier.wait()
        try:
            results[k] = funcs[k]()
        except BaseException as e:  # noqa: BLE001 - reported below
            results[k] = e

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(funcs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a submit hung"
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def _check_no_issue_twice(con, fake, expected_ids: set[int], results) -> None:
    per_issue = pending_per_issue(con)
    assert set(per_issue) == expected_ids
    assert set(per_issue.values()) == {1}, {k: v for k, v in per_issue.items() if v != 1}
    assert scalar(con, "SELECT count(*) FROM batch_items") == len(expected_ids)
    assert sum(r["submitted"] for res in results for r in res) == len(expected_ids)
    # The provider got each issue once, too.
    jobs = rows(con, "SELECT job_id, input_file_id FROM batch_jobs")
    sent = [ln["custom_id"] for j in jobs for ln in uploaded_lines(fake, j["input_file_id"])]
    assert len(sent) == len(set(sent)) == len(expected_ids)
    assert fake.state()["counts"]["batch_creates"] == len(jobs)


def test_concurrent_overlapping_submits_from_cursors(db, env):
    _generate_issues(db, 1200)
    cursors = [db.cursor() for _ in range(4)]
    # Thread k takes every id except those = k (mod 4): each pair overlaps heavily.
    funcs = [
        (lambda c=c, k=k: rows(
            c, f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues WHERE id % 4 <> {k}$$)"
        ))
        for k, c in enumerate(cursors)
    ]
    results = _run_concurrently(funcs)
    _check_no_issue_twice(db, env, set(ids_of(db, "true")), results)
    for c in cursors:
        c.close()


def test_concurrent_overlapping_submits_from_two_connections(connect, env, tmp_path):
    path = tmp_path / "two.duckdb"
    a = connect(path)
    import_sample(a)
    _generate_issues(a, 800)
    b = connect(path)
    all_ids = set(ids_of(a, "true"))
    n = len(all_ids)
    results = _run_concurrently([
        lambda: rows(a, f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues ORDER BY id LIMIT {n * 2 // 3}$$)"),
        lambda: rows(b, f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues ORDER BY id DESC LIMIT {n * 2 // 3}$$)"),
    ])
    _check_no_issue_twice(a, env, all_ids, results)


# ----------------------------------------------------------------------------- 4. bad selections


BAD_SELECTIONS = [
    ("SELEC id FROM issues", "invalid SQL: syntax error at or near \"SELEC\""),
    ("SELECT id FROM issues; SELECT id FROM issues", "found 2 statements, expected exactly one"),
    ("INSERT INTO issues (org, repo, number) VALUES ('x', 'y', 1)", "not a read-only query"),
    ("DELETE FROM issues", "not a read-only query"),
    ("UPDATE issues SET state = 'x'", "not a read-only query"),
    ("ATTACH ':memory:' AS other", "not a read-only query"),
    ("COPY issues TO '/tmp/ai_batch_should_not_exist.csv'", "not a read-only query"),
    ("PRAGMA version", "not a read-only query"),
    ("SET threads = 1", "not a read-only query"),
    ("CREATE TABLE t AS SELECT 1 AS id", "not a read-only query"),
    ("CALL pragma_version()", "not a read-only query"),
    # DuckDB 2 accepts data-modifying CTEs; a READ ONLY transaction refuses them.
    ("WITH gone AS (DELETE FROM issues RETURNING id) SELECT id FROM gone", "read-only"),
    ("SELECT nextval('issues_id_seq') AS id", "read-only"),
    ("SELECT number FROM issues", "it has no column named id"),
    ("SELECT title AS id FROM issues", "must hold integer issue ids, not VARCHAR"),
    ("SELECT '3' AS id", "must hold integer issue ids, not VARCHAR"),
    ("SELECT 1.5 AS id", "must hold integer issue ids, not DECIMAL"),
    # An id beyond BIGINT is refused with its value: test/python/test_edges.py.
    ("SELECT id FROM no_such_table", "Table with name no_such_table does not exist"),
]


@pytest.mark.parametrize("sql,expected", BAD_SELECTIONS, ids=[s for s, _ in BAD_SELECTIONS])
def test_bad_selection_sql_is_refused_before_anything(db, env, sql, expected):
    msg = submit_error(db, f"SELECT * FROM batch_submit('{PL}', $${sql}$$)")
    assert "selection must be a single SELECT" in msg, msg
    assert expected in msg, msg
    assert tracking_tables(db) == []  # not even created
    assert_nothing_sent(env)
    assert scalar(db, "SELECT count(*) FROM issues") == SAMPLE_ISSUES
    assert not os.path.exists("/tmp/ai_batch_should_not_exist.csv")
    # The same through the scalar form.
    msg = submit_error(db, f"SELECT batch_submit('{PL}', $${sql}$$)")
    assert expected in msg, msg
    assert tracking_tables(db) == []
    assert_nothing_sent(env)


def test_bad_selection_with_existing_tables_writes_nothing(db, env):
    rows(db, "SELECT * FROM batch_history()")
    submit_error(db, f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues; DELETE FROM issues$$)")
    submit_error(db, f"SELECT * FROM batch_submit('{PL}', ['a', 'b'])")
    submit_error(db, f"SELECT batch_submit('{PL}', ['a', 'b'])")
    assert_nothing_written(db)
    assert_nothing_sent(env)


# ----------------------------------------------------------------------------- 5. missing key


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_key_is_a_clear_error_and_nothing_is_written(db, env, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", value)
    for q in (
        f"SELECT * FROM batch_submit('{PL}', [1, 2])",
        f"SELECT batch_submit('{PL}', [1, 2])",
    ):
        msg = submit_error(db, q)
        assert "OPENAI_API_KEY is not set" in msg and "environment" in msg, msg
    assert tracking_tables(db) == []
    assert_nothing_sent(env)
    # The key is read at call time: set it and the same call works.
    monkeypatch.setenv("OPENAI_API_KEY", env.api_key)
    check_submitted_job(db, env, only_job_id(rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2])")), [1, 2])


# ----------------------------------------------------------------------------- 6. the key never shows


def test_sentinel_api_key_never_appears_in_tables_or_errors(db, env, monkeypatch, tmp_path):
    secret = uuid.uuid4().hex
    sentinel = f"sk-SENTINEL-{secret}"
    monkeypatch.setenv("OPENAI_API_KEY", sentinel)
    messages: list[str] = []
    run = message_collector(db, messages)

    # 1. success (the fake accepts the sentinel).
    env.configure(api_key=sentinel)
    ok = run(f"SELECT * FROM batch_submit('{PL}', [1, 2])")
    assert ok[0]["status"] == "validating"
    # 2. upload refused: 401 (the fake expects another key).
    env.configure(api_key="sk-some-other-key")
    r401 = run(f"SELECT * FROM batch_submit('{PL}', [3])")
    assert r401[0]["status"] == "failed" and "401" in r401[0]["message"]
    assert env.state()["counts"]["auth_failures"] == 1
    # 3. 500 on create: left `uploaded` for batch_refresh.
    env.configure(api_key=sentinel, fault={"kind": "server_error", "method": "POST", "path": "/v1/batches"})
    r500 = run(f"SELECT * FROM batch_submit('{PL}', [4])")
    assert r500[0]["status"] == "uploaded"
    # 4. 400 on create.
    env.configure(fault={"kind": "status", "status": 400, "method": "POST", "path": "/v1/batches",
                         "message": "bad request", "code": "invalid_request"})
    r400 = run(f"SELECT * FROM batch_submit('{PL}', [5])")
    assert r400[0]["status"] == "failed"
    # 5. raised errors: a bad base URL that even contains the key, the scalar form.
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://example.com/{sentinel}/v1")
    run(f"SELECT * FROM batch_submit('{PL}', [6])")
    run(f"SELECT batch_submit('{PL}', [6])")
    assert len([m for m in messages if "invalid OpenAI base URL" in m]) == 2, messages
    monkeypatch.setenv("OPENAI_BASE_URL", env.base_url)

    assert len(messages) > 10
    for m in messages:
        assert sentinel not in m and secret not in m, m
    assert assert_not_stored(db, sentinel, secret) > SAMPLE_ISSUES
    # Nor any setting.
    settings = " ".join(str(v) for v in db.execute("SELECT value FROM duckdb_settings()").fetchall())
    assert secret not in settings
    # Nothing left in the spool folder holds it either.
    for p in (tmp_path / "spool").glob("**/*"):
        if p.is_file():
            assert secret not in p.read_text(errors="replace"), p


# ----------------------------------------------------------------------------- 7. dry run


def test_dry_run_returns_counts_and_estimate_writes_and_sends_nothing(db, env, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', state := 'open', dry_run := true)")
    open_ids = ids_of(db, "state = 'open'")
    assert len(res) == 1
    r = res[0]
    assert r["status"] == "dry_run" and r["job_id"] is None and r["provider_batch_id"] is None
    # `selected` counts the selection ('*': every issue) before the filters.
    assert r["selected"] == SAMPLE_ISSUES and r["submitted"] == len(open_ids)
    assert f"{SAMPLE_ISSUES - len(open_ids)} excluded by the filters" in r["message"]
    assert r["estimated_input_tokens"] > 0
    assert r["estimated_output_tokens"] == DEFAULT_OUTPUT_TOKENS * len(open_ids)
    assert r["cost_estimate"] > 0
    assert "nothing written or sent" in r["message"]
    out = scalar(db, f"SELECT batch_submit('{PL}', [1, 2], {{'dry_run': true}})")
    assert out[0]["status"] == "dry_run" and out[0]["submitted"] == 2
    assert tracking_tables(db) == []
    assert_nothing_sent(env)
    # The real submit estimates exactly what the dry run said.
    monkeypatch.setenv("OPENAI_API_KEY", env.api_key)
    real = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', state := 'open')")
    for k in ("selected", "submitted", "estimated_input_tokens", "estimated_output_tokens", "cost_estimate"):
        assert real[0][k] == r[k], k
    # A dry run with the tables present still writes nothing, and sees the active job.
    before = scalar(db, "SELECT count(*) FROM batch_items")
    again = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', state := 'open', dry_run := true)")
    assert again[0]["status"] == "nothing_to_submit" and again[0]["skipped_active"] == len(open_ids)
    assert scalar(db, "SELECT count(*) FROM batch_items") == before
    assert scalar(db, "SELECT count(*) FROM batch_jobs") == 1


# ----------------------------------------------------------------------------- 8. sharding


def test_max_requests_per_job_splits_into_jobs(db, env):
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', org := $$replicatedhq$$, max_requests_per_job := 5)")
    ids = ids_of(db, "org = 'replicatedhq'")
    n = len(ids)
    assert len(res) == -(-n // 5) == 3
    assert sorted(r["submitted"] for r in res) == [3, 5, 5]
    taken: list[int] = []
    for r in res:
        _, items, _ = check_submitted_job(db, env, r["job_id"], [
            i for (i,) in db.execute(
                "SELECT b.issue_id FROM batch_items b JOIN batch_jobs j ON j.id = b.batch_job_id WHERE j.job_id = ?",
                [r["job_id"]],
            ).fetchall()
        ])
        taken += [i["issue_id"] for i in items]
    assert sorted(taken) == ids
    # Skipped issues are counted once over the jobs of one submit.
    assert scalar(db, "SELECT sum(skipped_count) FROM batch_jobs") == 0
    assert env.state()["counts"]["batch_creates"] == 3


def test_more_than_50000_issues_become_several_jobs(db, env):
    _generate_issues(db, 50_001, repo="big")
    t0 = time.monotonic()
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', repo := 'big')")
    elapsed = time.monotonic() - t0
    print(f"\n50,001 issues submitted as {len(res)} jobs ({[r['submitted'] for r in res]}) in {elapsed:.1f} s")
    assert len(res) >= 2
    assert sum(r["submitted"] for r in res) == 50_001
    assert all(r["status"] == "validating" for r in res), [r["message"] for r in res]
    jobs = rows(db, "SELECT id, job_id, issues_count, input_file_id FROM batch_jobs ORDER BY id")
    assert len(jobs) == len(res)
    custom_ids: set[str] = set()
    for j in jobs:
        lines = uploaded_lines(env, j["input_file_id"])
        assert 0 < len(lines) <= 50_000
        assert len(lines) == j["issues_count"]
        assert fake_file(env, j["input_file_id"])["bytes"] <= 200 * 1024 * 1024
        items = {r[0] for r in db.execute("SELECT custom_id FROM batch_items WHERE batch_job_id = ?", [j["id"]]).fetchall()}
        assert {ln["custom_id"] for ln in lines} == items
        custom_ids |= items
    assert len(custom_ids) == 50_001
    assert scalar(db, "SELECT count(DISTINCT issue_id) FROM batch_items") == 50_001
    assert elapsed < 60, f"submitting 50,001 issues took {elapsed:.1f} s"


# ----------------------------------------------------------------------------- 9. provider errors


def test_upload_error_fails_the_job_and_its_items(db, env):
    env.configure(fault={"kind": "server_error", "method": "POST", "path": "/v1/files", "count": -1})
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2, 3])")
    assert len(res) == 1 and res[0]["status"] == "failed"
    job = one(db, "SELECT * FROM batch_jobs")
    assert job["job_id"] == res[0]["job_id"]
    assert job["status"] == "failed"
    assert "upload failed" in job["error_message"] and "500" in job["error_message"]
    assert f"batch_retry('{job['job_id']}')" in job["error_message"]
    assert job["input_file_id"] is None and job["provider_batch_id"] is None
    assert job["failed_count"] == 3
    items = rows(db, "SELECT * FROM batch_items ORDER BY issue_id")
    assert [i["issue_id"] for i in items] == [1, 2, 3]
    assert {(i["status"], i["error_code"]) for i in items} == {("failed", "upload_failed")}
    assert all(i["error_message"] for i in items)
    counts = env.state()["counts"]
    assert counts["batch_creates"] == 0 and counts["faults_fired"] == 1  # a POST is not repeated
    # Failed items are not active: the same issues can be submitted again.
    env.configure(clear_faults=True)
    check_submitted_job(db, env, only_job_id(rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2, 3])")), [1, 2, 3])


def test_create_error_400_fails_the_job_with_the_file_recorded(db, env):
    env.configure(fault={"kind": "status", "status": 400, "method": "POST", "path": "/v1/batches",
                         "message": "The input file is not valid", "code": "invalid_request"})
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2])")
    assert res[0]["status"] == "failed"
    job = one(db, "SELECT * FROM batch_jobs")
    assert job["status"] == "failed"
    assert "creating the batch failed" in job["error_message"]
    assert "400" in job["error_message"] and "The input file is not valid" in job["error_message"]
    assert job["input_file_id"] is not None and job["provider_batch_id"] is None
    # No batch can exist, so the upload is not left at the provider (issue 9, item 13).
    assert f"its uploaded request file {job['input_file_id']} was deleted at the provider" in job["error_message"]
    assert job["input_file_id"] not in {f["id"] for f in env.state()["files"]}
    items = rows(db, "SELECT * FROM batch_items ORDER BY issue_id")
    assert {(i["status"], i["error_code"]) for i in items} == {("failed", "create_failed")}
    assert env.state()["counts"]["batch_creates"] == 0


@pytest.mark.parametrize("fault", [
    {"kind": "reset", "method": "POST", "path": "/v1/batches", "after_action": True},
    {"kind": "server_error", "method": "POST", "path": "/v1/batches"},
], ids=["reset-after-create", "500-on-create"])
def test_create_that_may_have_reached_the_provider_is_left_for_refresh(db, env, fault):
    env.configure(fault=fault)
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2])")
    assert res[0]["status"] == "uploaded"
    job = one(db, "SELECT * FROM batch_jobs")
    assert job["status"] == "uploaded" and job["input_file_id"] and job["provider_batch_id"] is None
    assert "batch_refresh()" in job["error_message"] and "nothing is sent twice" in job["error_message"]
    items = rows(db, "SELECT * FROM batch_items")
    assert {(i["status"], i["error_code"]) for i in items} == {("pending", None)}
    counts = env.state()["counts"]
    # Not repeated blindly: one create attempt reached the server.
    creates = [r for r in env.state()["requests"] if r["method"] == "POST" and r["path"] == "/v1/batches"]
    assert len(creates) == 1
    if fault.get("after_action"):
        assert counts["creates_by_job"] == {job["job_id"]: 1}
    # Its issues are still active: a new submit skips them.
    again = rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2])")
    assert again[0]["status"] == "nothing_to_submit" and again[0]["skipped_active"] == 2


def test_rate_limited_create_is_retried(db, env):
    env.configure(fault={"kind": "rate_limit", "method": "POST", "path": "/v1/batches", "retry_after_ms": 50})
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', [1])")
    check_submitted_job(db, env, only_job_id(res), [1])
    creates = [r for r in env.state()["requests"] if r["method"] == "POST" and r["path"] == "/v1/batches"]
    assert len(creates) == 2


def test_failure_of_one_shard_stops_the_rest(db, env):
    env.configure(fault={"kind": "status", "status": 400, "method": "POST", "path": "/v1/batches",
                         "message": "nope", "code": "invalid_request"})
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2, 3, 4, 5], max_requests_per_job := 2)")
    assert [r["status"] for r in res] == ["failed"] * 3
    assert "not sent because an earlier job" in res[1]["message"]
    codes = dict(db.execute(
        "SELECT j.job_id, list(DISTINCT b.error_code) FROM batch_items b JOIN batch_jobs j ON j.id = b.batch_job_id GROUP BY 1"
    ).fetchall())
    assert codes[res[0]["job_id"]] == ["create_failed"]
    assert codes[res[1]["job_id"]] == codes[res[2]["job_id"]] == ["not_sent"]
    assert env.state()["counts"]["uploads"] == 1


# ----------------------------------------------------------------------------- 10. cost


@pytest.fixture(scope="session")
def o200k(tmp_path_factory):
    try:
        import tiktoken
    except ImportError:  # pragma: no cover - the venv has it (requirements-test.txt)
        pytest.fail("tiktoken is not installed (make venv)")
    sys.path.insert(0, str(ROOT / "core" / "testdata"))
    import install_tiktoken_cache

    cache = install_tiktoken_cache.install(tmp_path_factory.mktemp("tiktoken"))
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    return tiktoken.get_encoding("o200k_base")


def request_tokens(enc, line: dict[str, Any]) -> int:
    """core/COST.md's formula, applied to the line exactly as the provider received it."""
    body = line["body"]
    n = 3  # reply priming
    for m in body["messages"]:
        n += 3 + len(enc.encode(m["role"], disallowed_special=())) + len(enc.encode(m["content"], disallowed_special=()))
    rf = json.dumps(body["response_format"], separators=(",", ":"), ensure_ascii=False)
    return n + len(enc.encode(rf, disallowed_special=()))


def test_cost_estimate_equals_an_independent_count(db, env, o200k):
    # A user price table with round numbers: the expected price does not depend on
    # our built-in table.
    db.execute("CREATE TABLE ai_batch_prices (model VARCHAR, input_per_mtok DOUBLE, output_per_mtok DOUBLE)")
    db.execute("INSERT INTO ai_batch_prices VALUES ('gpt-4o-mini', 10, 20)")
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', '*', org := 'replicatedhq', max_requests_per_job := 7)")
    assert len(res) == 2
    for r in res:
        job = one(db, "SELECT * FROM batch_jobs WHERE job_id = ?", [r["job_id"]])
        lines = uploaded_lines(env, job["input_file_id"])
        per_line = {ln["custom_id"]: request_tokens(o200k, ln) for ln in lines}
        items = dict(db.execute(
            "SELECT custom_id, estimated_input_tokens FROM batch_items WHERE batch_job_id = ?", [job["id"]]
        ).fetchall())
        assert items == per_line
        inp = sum(per_line.values())
        out = DEFAULT_OUTPUT_TOKENS * len(lines)
        expected = (Decimal(inp) * Decimal(10) / 10**6 + Decimal(out) * Decimal(20) / 10**6).quantize(
            Decimal("0.0001"), ROUND_HALF_UP
        )
        assert job["estimated_input_tokens"] == r["estimated_input_tokens"] == inp
        assert job["estimated_output_tokens"] == out
        assert job["cost_estimate"] == r["cost_estimate"] == expected


def test_cost_estimate_respects_max_output_tokens(db, env):
    db.execute("CREATE TABLE ai_batch_prices (model VARCHAR, input_per_mtok DOUBLE, output_per_mtok DOUBLE)")
    db.execute("INSERT INTO ai_batch_prices VALUES ('gpt-4o-mini', 0, 1000)")
    res = rows(db, f"SELECT * FROM batch_submit('{PL}', [1, 2], max_output_tokens := 100, dry_run := true)")
    # The model cannot answer more than max_output_tokens: the estimate is capped.
    assert res[0]["estimated_output_tokens"] == 200
    assert res[0]["cost_estimate"] == Decimal("0.2000")


# ----------------------------------------------------------------------------- 11. exactly once


def _jobs_and_creates(con, fake) -> tuple[int, int, int]:
    jobs = scalar(con, "SELECT count(*) FROM batch_jobs") if tracking_tables(con) else 0
    c = fake.state()["counts"]
    return jobs, c["uploads"], c["batch_creates"]


def test_python_sql_and_execute_submit_exactly_once(db, env):
    q = f"SELECT * FROM batch_submit('{PL}', [1, 2])"
    rel = db.sql(q)  # binds (bind runs, maybe several times): must submit nothing
    assert _jobs_and_creates(db, env) == (0, 0, 0)
    res = rel.fetchall()
    assert len(res) == 1 and res[0][5] == 2  # submitted
    assert _jobs_and_creates(db, env) == (1, 1, 1)
    res = db.execute(f"SELECT * FROM batch_submit('{PL}', [3, 4])").fetchall()
    assert len(res) == 1 and res[0][5] == 2
    assert _jobs_and_creates(db, env) == (2, 2, 2)
    # A prepared statement executed with a parameter: once per execution.
    res = db.execute(f"SELECT * FROM batch_submit('{PL}', ?)", [[5]]).fetchall()
    assert res[0][5] == 1
    assert _jobs_and_creates(db, env) == (3, 3, 3)
    assert set(env.state()["counts"]["creates_by_job"].values()) == {1}


def test_explain_and_describe_submit_nothing(db, env):
    for q in (
        f"EXPLAIN SELECT * FROM batch_submit('{PL}', [1, 2])",
        f"DESCRIBE SELECT * FROM batch_submit('{PL}', [1, 2])",
        f"DESCRIBE SELECT batch_submit('{PL}', [1, 2])",
        f"EXPLAIN SELECT batch_submit('{PL}', [1, 2])",
        f"SELECT * FROM batch_submit('{PL}', [1, 2]) LIMIT 0",
    ):
        db.execute(q).fetchall()
    described = [r[0] for r in db.execute(f"DESCRIBE SELECT * FROM batch_submit('{PL}', [1])").fetchall()]
    assert described[:2] == ["job_id", "status"]
    assert tracking_tables(db) == []
    assert_nothing_sent(env)


def test_scalar_submits_once_per_call(db, env):
    out = scalar(db, f"SELECT batch_submit('{PL}', [1, 2])")
    assert out[0]["submitted"] == 2
    assert _jobs_and_creates(db, env) == (1, 1, 1)
    # One call per row: three rows, three jobs of one issue each.
    res = db.execute(f"SELECT id, batch_submit('{PL}', [id]) FROM issues WHERE id IN (3, 4, 5) ORDER BY id").fetchall()
    assert [r[1][0]["submitted"] for r in res] == [1, 1, 1]
    assert _jobs_and_creates(db, env) == (4, 4, 4)
    for issue_id, out in res:
        check_submitted_job(db, env, out[0]["job_id"], [issue_id])
    assert set(env.state()["counts"]["creates_by_job"].values()) == {1}
