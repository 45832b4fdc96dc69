"""What a batch_submit selection may do, and how failures leave the extension (issue 9,
items 7, 9, 10 and 11): the real DuckDB wheel, the built extension, real HTTP over
loopback to the fake OpenAI provider.

- A selection only reads: it may not call ai_batch's own functions (directly, through
  a view, a macro, query_table() or query()) nor DuckDB's side-effecting functions the
  READ ONLY transaction does not stop. Nothing is written or sent, and nesting returns
  at once.
- A selection whose id column cannot be read is a clear error or a correct result,
  never a panic, and leaves every pooled connection clean for the next call.
- The scalar form over several rows names the jobs earlier rows sent when a later row
  fails, and checks every row's arguments before the first is sent.
- The scalar form's options refuse values of the wrong type, naming the option.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: E402,F401
from test_submit import (  # noqa: E402,F401
    PL,
    assert_nothing_sent,
    assert_nothing_written,
    check_submitted_job,
    db,
    env,
    one,
    rows,
    scalar,
    submit_error,
)


def sql_text(s: str) -> str:
    """A single-quoted SQL string literal holding `s`."""
    return "'" + s.replace("'", "''") + "'"


def provider_counts(fake) -> tuple[int, int, int]:
    c = fake.state()["counts"]
    return c["uploads"], c["batch_creates"], c["cancels"]


def submit_one(con) -> dict:
    """A plain submit of issue 1 that must work: the extension is usable."""
    r = one(con, f"SELECT * FROM batch_submit('{PL}', [1])")
    assert r["status"] == "validating" and r["selected"] == 1 and r["submitted"] == 1, r
    return r


# ----------------------------------------------------------------------------- 7. read-only


# (what the selection does, the SQL that defines its helper view / macro or None, the
# selection, the ai_batch function named in the error)
OWN_CALLS = [
    ("table form", None, f"SELECT submitted AS id FROM batch_submit('{PL}', [7])", "batch_submit"),
    ("scalar form", None, f"SELECT unnest(batch_submit('{PL}', [7])).submitted AS id", "batch_submit"),
    (
        "table form in a view",
        f"CREATE VIEW sneaky AS SELECT submitted AS id FROM batch_submit('{PL}', [7])",
        "SELECT id FROM sneaky",
        "batch_submit",
    ),
    (
        "scalar form in a view",
        f"CREATE VIEW sneaky AS SELECT unnest(batch_submit('{PL}', [7])).submitted AS id",
        "SELECT id FROM sneaky",
        "batch_submit",
    ),
    (
        "table macro",
        f"CREATE MACRO sneaky() AS TABLE SELECT submitted AS id FROM batch_submit('{PL}', [7])",
        "SELECT id FROM sneaky()",
        "batch_submit",
    ),
    (
        "scalar macro",
        f"CREATE MACRO sneaky(x) AS unnest(batch_submit('{PL}', [x])).submitted",
        "SELECT sneaky(7) AS id",
        "batch_submit",
    ),
    (
        "query_table of a view",
        f"CREATE VIEW sneaky AS SELECT submitted AS id FROM batch_submit('{PL}', [7])",
        "SELECT id FROM query_table('sneaky')",
        "batch_submit",
    ),
    ("refresh", "CREATE VIEW sneaky AS SELECT 1 AS id FROM batch_refresh()", "SELECT id FROM sneaky", "batch_refresh"),
    ("retry", "CREATE VIEW sneaky AS SELECT 1 AS id FROM batch_retry('job_x')", "SELECT id FROM sneaky", "batch_retry"),
    ("release", "CREATE VIEW sneaky AS SELECT 1 AS id FROM batch_release()", "SELECT id FROM sneaky", "batch_release"),
    ("history", None, "SELECT 1 AS id FROM batch_history()", "batch_history"),
    ("details", "CREATE VIEW sneaky AS SELECT issue_id AS id FROM batch_details('job_x')", "SELECT id FROM sneaky",
     "batch_details"),
]


@pytest.mark.parametrize("what,define,selection,func", OWN_CALLS, ids=[c[0] for c in OWN_CALLS])
@pytest.mark.parametrize("form", ["table", "scalar"])
def test_selection_may_not_call_ai_batch_functions(db, env, what, define, selection, func, form):
    if define:
        db.execute(define)
    q = (
        f"SELECT * FROM batch_submit('{PL}', {sql_text(selection)})"
        if form == "table"
        else f"SELECT batch_submit('{PL}', {sql_text(selection)})"
    )
    msg = submit_error(db, q)
    assert f"the selection calls {func}" in msg, msg
    assert "refused" in msg and f"run {func} on its own" in msg, msg
    assert_nothing_written(db)
    assert_nothing_sent(env)
    # batch_release() did not run: the extension still works.
    submit_one(db)


def test_selection_calling_batch_cancel_cancels_nothing(db, env):
    job = submit_one(db)
    before = provider_counts(env)
    status = scalar(db, "SELECT status FROM batch_jobs WHERE job_id = ?", [job["job_id"]])
    db.execute(f"CREATE VIEW cancel_it AS SELECT 1 AS id FROM batch_cancel('{job['job_id']}')")
    for q in (
        f"SELECT * FROM batch_submit('{PL}', $$SELECT 1 AS id FROM batch_cancel('{job['job_id']}')$$)",
        f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM cancel_it$$)",
        f"SELECT batch_submit('{PL}', 'SELECT id FROM cancel_it')",
    ):
        msg = submit_error(db, q)
        assert "the selection calls batch_cancel" in msg, msg
    assert provider_counts(env) == before  # no cancel, no upload, no create
    assert scalar(db, "SELECT status FROM batch_jobs WHERE job_id = ?", [job["job_id"]]) == status
    assert scalar(db, "SELECT count(*) FROM batch_jobs") == 1


def test_nested_selections_four_deep_return_promptly(db, env):
    # Once, each level took a pooled connection; the fifth waited 120 s for one.
    inner = f"SELECT submitted AS id FROM batch_submit('{PL}', [7])"
    for _ in range(3):
        inner = f"SELECT submitted AS id FROM batch_submit('{PL}', {sql_text(inner)})"
    db.execute(f"CREATE VIEW deep AS {inner}")
    for q in (
        f"SELECT * FROM batch_submit('{PL}', {sql_text(inner)})",
        f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM deep$$)",
        f"SELECT batch_submit('{PL}', 'SELECT id FROM deep')",
    ):
        t = time.monotonic()
        msg = submit_error(db, q)
        assert time.monotonic() - t < 10, msg
        assert "the selection calls batch_submit" in msg, msg
    assert_nothing_written(db)
    assert_nothing_sent(env)
    submit_one(db)


DUCKDB_EFFECTS = [
    # Not stopped by the READ ONLY transaction (measured), so refused by name.
    ("SELECT 1 AS id FROM checkpoint()", "calls checkpoint()"),
    ("SELECT 1 AS id FROM (SELECT setseed(0.5))", "calls setseed()"),
    ("SELECT id FROM query('SELECT 1 AS id FROM checkpoint()')", "calls query()"),
    # Stopped by the READ ONLY transaction or DuckDB's own parser.
    ("SELECT 1 AS id FROM force_checkpoint()", "Cannot FORCE CHECKPOINT"),
    ("SELECT nextval('issues_id_seq') AS id", "read-only"),
]


@pytest.mark.parametrize("selection,expected", DUCKDB_EFFECTS, ids=[s for s, _ in DUCKDB_EFFECTS])
def test_selection_may_not_call_duckdb_side_effects(db, env, selection, expected):
    db.execute("CREATE SEQUENCE IF NOT EXISTS issues_id_seq")
    msg = submit_error(db, f"SELECT * FROM batch_submit('{PL}', {sql_text(selection)})")
    assert expected in msg, msg
    assert_nothing_written(db)
    assert_nothing_sent(env)


def test_reading_the_tracking_tables_in_a_selection_still_works(db, env):
    first = submit_one(db)
    # A selection may read batch_items and a user's own view directly.
    db.execute("CREATE VIEW two_and_three AS SELECT id FROM issues WHERE id IN (2, 3)")
    res = rows(
        db,
        f"SELECT * FROM batch_submit('{PL}', $$SELECT issue_id + 1 AS id FROM batch_items "
        "UNION ALL SELECT id FROM two_and_three$$)",
    )
    assert len(res) == 1 and res[0]["job_id"] != first["job_id"]
    check_submitted_job(db, env, res[0]["job_id"], [2, 3])


# ----------------------------------------------------------------------------- 9. no panic


def test_null_typed_id_column_selects_nothing_and_leaves_connections_clean(db, env):
    # Once: "Rust callback panicked: ... invalid value: Null", then the next submit
    # answered "0 selected" (a read-only transaction was left open on the connection).
    for _ in range(6):  # more than the pool's 4 connections
        r = one(db, f"SELECT * FROM batch_submit('{PL}', $$SELECT NULL AS id$$)")
        assert r["status"] == "nothing_to_submit" and r["selected"] == 0, r
        out = scalar(db, f"SELECT batch_submit('{PL}', 'SELECT NULL AS id')")
        assert out[0]["status"] == "nothing_to_submit", out
    assert_nothing_sent(env)
    r = submit_one(db)
    check_submitted_job(db, env, r["job_id"], [1])
    for i in range(2, 7):
        r = one(db, f"SELECT * FROM batch_submit('{PL}', [{i}])")
        assert r["selected"] == 1 and r["submitted"] == 1, r


ID_COLUMNS = [
    # (selection, expected error substring, or None for a result of ids)
    ("SELECT '3' AS id", "must hold integer issue ids, not VARCHAR"),
    ("SELECT 3.0::DOUBLE AS id", "must hold integer issue ids, not DOUBLE"),
    ("SELECT 3.0 AS id", "must hold integer issue ids, not DECIMAL"),
    ("SELECT true AS id", "must hold integer issue ids, not BOOLEAN"),
    ("SELECT [3] AS id", "must hold integer issue ids, not LIST"),
    ("SELECT {'x': 3} AS id", "must hold integer issue ids, not STRUCT"),
    ("SELECT 'x'::ENUM('x') AS id", "must hold integer issue ids, not ENUM"),
    ("SELECT 5000000000000000000000::HUGEINT AS id", "issue id 5000000000000000000000 is out of range"),
    ("SELECT 18446744073709551615::UBIGINT AS id", "issue id 18446744073709551615 is out of range"),
    ("SELECT 3::HUGEINT AS id", [3]),
    ("SELECT 3::UTINYINT AS id UNION ALL SELECT NULL", [3]),
    ("SELECT NULL::INTEGER AS id", []),
    ("SELECT NULL AS id UNION ALL SELECT NULL", []),
    ("SELECT 3 AS id, NULL AS other, [1, 2] AS l, 'x'::ENUM('x') AS e, union_value(k := 1) AS u", [3]),
]


@pytest.mark.parametrize("selection,expected", ID_COLUMNS, ids=[s for s, _ in ID_COLUMNS])
def test_id_column_types_give_an_error_or_a_result_never_a_panic(db, env, selection, expected):
    for form in ("table", "scalar"):
        q = (
            f"SELECT * FROM batch_submit('{PL}', {sql_text(selection)}, dry_run := true)"
            if form == "table"
            else f"SELECT batch_submit('{PL}', {sql_text(selection)}, {{'dry_run': true}})"
        )
        if isinstance(expected, str):
            msg = submit_error(db, q)
            assert expected in msg and "panicked" not in msg, msg
        else:
            res = rows(db, q) if form == "table" else scalar(db, q)
            r = res[0]
            assert r["selected"] == len(expected) and r["submitted"] == len(expected), r
    assert_nothing_sent(env)
    # Whatever happened, every pooled connection is clean.
    for i in range(1, 6):
        r = one(db, f"SELECT * FROM batch_submit('{PL}', [{i}], dry_run := true)")
        assert r["selected"] == 1 and r["submitted"] == 1, r


def test_failed_selections_leave_connections_clean(db, env):
    for _ in range(6):
        submit_error(db, f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM no_such_table$$)")
        submit_error(db, f"SELECT * FROM batch_submit('{PL}', $$SELECT error('boom')::BIGINT AS id$$)")
    for i in range(1, 6):
        r = one(db, f"SELECT * FROM batch_submit('{PL}', [{i}])")
        assert r["submitted"] == 1, r


# ----------------------------------------------------------------------------- 10. several rows


def test_scalar_over_rows_names_the_jobs_earlier_rows_sent(db, env):
    q = (
        f"SELECT batch_submit('{PL}', CASE WHEN id = 3 THEN 'SELECT id FROM no_such_table' "
        "ELSE 'SELECT ' || id || ' AS id' END) FROM (VALUES (1), (2), (3)) t(id)"
    )
    msg = submit_error(db, q)
    jobs = [r[0] for r in db.execute("SELECT job_id FROM batch_jobs ORDER BY id").fetchall()]
    assert len(jobs) == 2, jobs
    assert "no_such_table" in msg, msg
    for j in jobs:
        assert j in msg, msg
    assert "sent as usual" in msg and "batch_history()" in msg, msg
    assert env.state()["counts"]["batch_creates"] == 2


def test_scalar_over_rows_checks_every_row_before_sending(db, env):
    q = (
        f"SELECT batch_submit('{PL}', [id], CASE WHEN id = 3 THEN '{{\"model\": 5}}' ELSE '{{}}' END) "
        "FROM (VALUES (1), (2), (3)) t(id)"
    )
    msg = submit_error(db, q)
    assert "option 'model' must be a text" in msg, msg
    assert_nothing_written(db)
    assert_nothing_sent(env)


# ----------------------------------------------------------------------------- 11. options


WRONG_OPTIONS = [
    ({"model": {"a": 1}}, "option 'model' must be a text, not a JSON object"),
    ({"model": ["gpt-4o"]}, "option 'model' must be a text, not a JSON array"),
    ({"provider": True}, "option 'provider' must be a text, not true"),
    ({"base_url": {}}, "option 'base_url' must be a text, not a JSON object"),
    ({"org": 5}, "option 'org' must be a text, not the number 5"),
    ({"repo": [1]}, "option 'repo' must be a text"),
    ({"state": {"x": "open"}}, "option 'state' must be a text"),
    ({"dry_run": "true"}, "option 'dry_run' must be true or false, not a text"),
    ({"reprocess": 1}, "option 'reprocess' must be true or false, not the number 1"),
    ({"missing_analysis": [True]}, "option 'missing_analysis' must be true or false"),
    ({"max_issues": 1.5}, "option 'max_issues' must be a whole number"),
    ({"max_issues": 1e30}, "option 'max_issues' must be a whole number"),
    ({"max_output_tokens": "100"}, "option 'max_output_tokens' must be a whole number"),
    ({"max_requests_per_job": {"n": 1}}, "option 'max_requests_per_job' must be a whole number"),
    ({"temperature": "0.5"}, "option 'temperature' must be a number (DOUBLE), not a text"),
]


@pytest.mark.parametrize("options,expected", WRONG_OPTIONS, ids=[json.dumps(o) for o, _ in WRONG_OPTIONS])
def test_json_options_of_the_wrong_type_are_refused(db, env, options, expected):
    msg = submit_error(db, f"SELECT batch_submit('{PL}', [1, 2], {sql_text(json.dumps(options))})")
    assert expected in msg, msg
    assert_nothing_written(db)
    assert_nothing_sent(env)


@pytest.mark.parametrize(
    "options,expected",
    [
        ("{'model': {'a': 1}}", "option 'model' must be a text, not a STRUCT"),
        ("{'org': ['acme']}", "option 'org' must be a text, not a LIST"),
        # A HUGEINT that fits is read as the number it is; one beyond BIGINT is named.
        ("{'max_issues': 100000000000000000000::HUGEINT}", "option 'max_issues' is 100000000000000000000, out of range"),
    ],
)
def test_struct_options_of_the_wrong_type_name_the_option(db, env, options, expected):
    msg = submit_error(db, f"SELECT batch_submit('{PL}', [1, 2], {options})")
    assert expected in msg, msg
    assert_nothing_written(db)
    assert_nothing_sent(env)


def test_json_options_of_the_right_type_apply(db, env):
    opts = {"Model": "gpt-4o", "max_issues": 2.0, "temperature": 1, "dry_run": False, "org": None}
    out = scalar(db, f"SELECT batch_submit('{PL}', [1, 2, 3], {sql_text(json.dumps(opts))})")
    assert out[0]["model"] == "gpt-4o" and out[0]["submitted"] == 2, out
    _, _, lines = check_submitted_job(db, env, out[0]["job_id"], [1, 2], model="gpt-4o")
    assert all(ln["body"]["temperature"] == 1 for ln in lines)


# ----------------------------------------------------------------------------- 9. last line of defence


def test_a_panic_is_a_clear_error_and_its_connection_is_not_lent_again(db, env, monkeypatch):
    # A panic injected while the selection's read-only transaction is open: the call
    # fails with a message naming batch_submit (not "Rust callback panicked"), the
    # transaction is rolled back, and the connection is closed instead of going back
    # to the pool, so the next call sees a clean connection.
    monkeypatch.setenv("AI_BATCH_FAILPOINT", "panic:selection_read")
    for form in ("table", "scalar"):
        q = (
            f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues$$)"
            if form == "table"
            else f"SELECT batch_submit('{PL}', 'SELECT id FROM issues')"
        )
        msg = submit_error(db, q)
        assert "internal error, this is a bug: injected panic at selection_read" in msg, msg
        assert "panicked" not in msg, msg
    monkeypatch.delenv("AI_BATCH_FAILPOINT")
    assert_nothing_written(db)
    assert_nothing_sent(env)
    # Two of the four connections are gone; the other two serve, and see fresh data.
    for i in range(1, 4):
        r = one(db, f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues WHERE id = {i}$$)")
        assert r["selected"] == 1 and r["submitted"] == 1, r
    # With every connection closed after a panic, calls fail at once with what to do.
    monkeypatch.setenv("AI_BATCH_FAILPOINT", "panic:selection_read")
    for _ in range(2):
        submit_error(db, f"SELECT * FROM batch_submit('{PL}', $$SELECT id FROM issues$$)")
    monkeypatch.delenv("AI_BATCH_FAILPOINT")
    t = time.monotonic()
    msg = submit_error(db, f"SELECT * FROM batch_submit('{PL}', [5])")
    assert time.monotonic() - t < 10
    assert "no usable connection left" in msg and "LOAD ai_batch again" in msg, msg
