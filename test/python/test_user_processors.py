"""Processors defined in SQL (issue 13), the whole job on the loopback fake provider.

A second processor with enum, array, nested object, number and boolean fields:
define -> dry run with estimate -> submit -> refresh -> batch_results typed columns;
redefine -> new version -> `stale := true` takes the issues again while
`missing_analysis` keeps meaning "no analysis by this processor"; bad definitions each
give their message and store nothing.

Run: AI_BATCH_EXTENSION=$PWD/build/release/ai_batch.duckdb_extension \
     .venv/bin/python -m pytest -q test/python/test_user_processors.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "test" / "python"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from fake_provider.answers import schema_answer  # noqa: E402
from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: E402,F401
from test_lifecycle import (  # noqa: E402,F401  (db is a fixture)
    N,
    check_job_invariants,
    db,
    items,
    job,
    one,
    refresh_until_done,
    rows,
)

NAME = "triage-kind"
SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["bug", "feature", "question"]},
        "components": {"type": "array", "items": {"type": "string"}},
        "severity": {
            "type": "object",
            "properties": {"level": {"type": "integer"}, "reason": {"type": "string"}},
            "required": ["level", "reason"],
            "additionalProperties": False,
        },
        "confidence": {"type": "number", "description": "0 to 1"},
        "needs_bundle": {"type": "boolean"},
    },
    "required": ["kind", "components", "severity", "confidence", "needs_bundle"],
    "additionalProperties": False,
}
TEMPLATE = "Repository: {{org}}/{{repo}}\nTitle: {{title}}\nLabels: {{labels}}\n{{body}}\n{{comments}}"


def define(con, system="Classify the GitHub issue: bug, feature or question.", schema=None, **extra):
    named = {"system_prompt": system, "user_template": TEMPLATE,
             "response_schema": json.dumps(schema if schema is not None else SCHEMA), **extra}
    args = ", ".join(f"{k} := ?" for k in named)
    return rows(con, f"SELECT * FROM batch_define_processor(?, {args})", [NAME, *named.values()])[0]


def submit(con, selection="'*'", **named):
    extra = "".join(f", {k} := {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in named.items())
    return rows(con, f"SELECT * FROM batch_submit('{NAME}', {selection}{extra})")


def stored_count(con):
    return one(con, "SELECT count(*) FROM ai_processors")


def test_whole_job_of_a_sql_defined_processor(db, fake_openai):
    d = define(db, output_tokens=300, model="gpt-4.1-mini")
    assert d["status"] == "defined" and d["previous_version"] is None, d
    v1 = d["version"]
    stored = one(db, "SELECT definition::VARCHAR FROM ai_processors WHERE name = ?", [NAME])
    # The documented rule: the first 12 hex digits of sha256(canonical definition).
    assert hashlib.sha256(stored.encode()).hexdigest()[:12] == v1

    # Dry run: estimate from the user's template and schema, the processor's model.
    dry = submit(db, dry_run=True)
    assert len(dry) == 1 and dry[0]["status"] == "dry_run", dry
    assert dry[0]["model"] == "gpt-4.1-mini" and dry[0]["submitted"] == N
    assert dry[0]["estimated_output_tokens"] == 300 * N, dry
    assert dry[0]["estimated_input_tokens"] > 0 and dry[0]["cost_estimate"] > 0, dry
    assert one(db, "SELECT count(*) FROM batch_jobs") == 0
    # The schema is part of the input: a bigger schema costs more input tokens.
    wide = json.loads(json.dumps(SCHEMA))
    wide["properties"]["kind"]["description"] = "The kind of issue. " * 40
    assert define(db, schema=wide)["status"] == "redefined"
    dry_wide = submit(db, dry_run=True)[0]
    assert dry_wide["estimated_input_tokens"] > dry[0]["estimated_input_tokens"] + 200 * N, dry_wide
    assert define(db, output_tokens=300, model="gpt-4.1-mini")["version"] == v1  # back to v1

    # Submit and refresh: the requests carry the user's prompt, template and schema.
    s = submit(db)[0]
    assert s["status"] not in ("failed", "dry_run") and s["submitted"] == N, s
    j = job(db, s["job_id"])
    assert (j["processor"], j["processor_version"], j["model"]) == (NAME, v1, "gpt-4.1-mini")
    refresh_until_done(db, s["job_id"])
    check_job_invariants(db, s["job_id"], fake_openai)
    assert all(i["status"] == "completed" for i in items(db, s["job_id"]))

    # batch_results: one row per issue, the properties as typed columns.
    types = dict(db.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM batch_results('{NAME}'))").fetchall())
    assert types["kind"] == "VARCHAR" and types["components"] == "VARCHAR[]"
    assert types["severity"].startswith("STRUCT(") and "BIGINT" in types["severity"], types
    assert (types["confidence"], types["needs_bundle"], types["issue_id"]) == ("DOUBLE", "BOOLEAN", "BIGINT")
    res = rows(db, f"SELECT * FROM batch_results('{NAME}') ORDER BY issue_id")
    assert len(res) == N
    analyses = {r["issue_id"]: json.loads(r["result"]) for r in rows(db, "SELECT issue_id, result::VARCHAR AS result FROM ai_analyses")}
    for r in res:
        a = analyses[r["issue_id"]]
        assert r["kind"] == a["kind"] in ("bug", "feature", "question")
        assert r["components"] == a["components"] and len(r["components"]) == 1
        assert r["severity"] == a["severity"] and isinstance(r["severity"]["level"], int)
        assert r["confidence"] == a["confidence"] and isinstance(r["needs_bundle"], bool)
        assert r["issue"].startswith("acme/widgets#") and r["processor_version"] == v1
        assert r["job_id"] == s["job_id"] and r["model"] == "gpt-4.1-mini" and r["analysed_at"] is not None
    # The fake answered from the request's own schema (what the SDK checks, see answers.py).
    assert analyses[res[0]["issue_id"]] == schema_answer(SCHEMA, analyses_text(db, fake_openai, s["job_id"], res[0]["issue_id"]))

    # batch_processors: the version and its analyses.
    listed = rows(db, "SELECT * FROM batch_processors() WHERE name = ?", [NAME])
    mine = [r for r in listed if r["version"] == v1]
    assert mine and mine[0]["current"] and mine[0]["analyses"] == N and mine[0]["jobs"] == 1, listed

    # Nothing to do again, by name: missing_analysis and the default skip.
    again = submit(db)[0]
    assert again["status"] == "nothing_to_submit" and again["skipped_analysed"] == N, again
    assert submit(db, missing_analysis=True)[0]["submitted"] == 0

    # Redefine: a new version. missing_analysis still means "no analysis by this
    # processor" (nothing to do); stale := true takes every issue again.
    d2 = define(db, system="Classify the GitHub issue. Be strict.", output_tokens=300, model="gpt-4.1-mini")
    assert d2["status"] == "redefined" and d2["previous_version"] == v1 and d2["version"] != v1
    assert submit(db, missing_analysis=True)[0]["submitted"] == 0
    assert submit(db)[0]["skipped_analysed"] == N
    st = submit(db, stale=True, dry_run=True)[0]
    assert st["submitted"] == N and st["skipped_analysed"] == 0, st
    s2 = submit(db, "$$SELECT id FROM issues WHERE number < 103$$", stale=True, missing_analysis=True)[0]
    assert s2["submitted"] == 3, s2
    refresh_until_done(db, s2["job_id"])
    res2 = rows(db, f"SELECT issue_id, processor_version FROM batch_results('{NAME}') ORDER BY issue_id")
    assert sorted(r["processor_version"] for r in res2) == sorted([d2["version"]] * 3 + [v1] * (N - 3))
    # The new version's analyses are fresh; the rest are still stale.
    assert submit(db, stale=True, dry_run=True)[0]["submitted"] == N - 3
    # An issue updated after its analysis is stale too.
    db.execute("UPDATE issues SET updated_at = now() + INTERVAL 1 HOUR WHERE number = 100")
    assert submit(db, stale=True, dry_run=True)[0]["submitted"] == N - 2
    # The scalar form takes the same parameter (PARAMS, declared once).
    scalar = rows(db, f"SELECT unnest(batch_submit('{NAME}', list(id ORDER BY id), "
                      "{'stale': true, 'dry_run': true}), recursive := true) FROM issues")
    assert scalar[0]["submitted"] == N - 2 and scalar[0]["model"] == "gpt-4.1-mini", scalar
    # Each job's answers were validated against its own version's schema.
    per_version = rows(db, "SELECT processor_version, count(*) AS n FROM ai_analyses GROUP BY ALL ORDER BY n")
    assert [r["n"] for r in per_version] == [3, N], per_version


def analyses_text(con, fake, job_id, issue_id):
    """The user message the extension sent for one issue (from the fake's copy of the file)."""
    from test_lifecycle import fake_file  # noqa: PLC0415

    j = job(con, job_id)
    for line in fake_file(fake, j["input_file_id"]).decode().splitlines():
        req = json.loads(line)
        if req["custom_id"] == f"{job_id}-i{issue_id}":
            return next(m["content"] for m in req["body"]["messages"] if m["role"] == "user")
    raise AssertionError(f"no request for issue {issue_id}")


AUTHOR_TEMPLATE = "Author: {{author}} | {{title}}"


def sent_users(con, fake, job_id):
    """The user message of every request of a job, by issue id."""
    return {i["issue_id"]: analyses_text(con, fake, job_id, i["issue_id"]) for i in items(con, job_id)}


def test_author_field_sends_the_issue_authors_login(db, fake_openai):
    db.execute("UPDATE issues SET author_login = 'user-' || number WHERE number > 100")
    define(db, user_template=AUTHOR_TEMPLATE)
    s = submit(db)[0]
    assert s["submitted"] == N, s
    sent = sent_users(db, fake_openai, s["job_id"])
    numbers = dict(db.execute("SELECT id, number FROM issues").fetchall())
    titles = dict(db.execute("SELECT id, title FROM issues").fetchall())
    assert len(sent) == N
    for issue_id, text in sent.items():
        n = numbers[issue_id]
        # A NULL author_login renders empty, like the other missing short fields.
        login = f"user-{n}" if n > 100 else ""
        assert text == f"Author: {login} | {titles[issue_id]}", text
    refresh_until_done(db, s["job_id"])
    assert all(i["status"] == "completed" for i in items(db, s["job_id"]))


def test_issues_table_without_author_login_still_submits(db, fake_openai):
    # A table made before author_login was read: every column but that one.
    db.execute("CREATE TABLE issues_copy AS SELECT * EXCLUDE (author_login) FROM issues")
    db.execute("DROP TABLE issues")
    db.execute("ALTER TABLE issues_copy RENAME TO issues")
    assert "author_login" not in [r[0] for r in db.execute("DESCRIBE issues").fetchall()]
    define(db, user_template=AUTHOR_TEMPLATE)
    assert submit(db, dry_run=True)[0]["submitted"] == N
    s = submit(db)[0]
    assert s["status"] not in ("failed", "dry_run") and s["submitted"] == N, s
    sent = sent_users(db, fake_openai, s["job_id"])
    assert len(sent) == N and all(t.startswith("Author:  | ") for t in sent.values()), sent
    # The built-in processor, which does not use the field, submits too.
    pl = rows(db, "SELECT * FROM batch_submit('product-labeling', '*', dry_run := true)")[0]
    assert pl["submitted"] == N, pl


BAD = [
    ({"user_template": "Hi {{assignee}}"}, None, "user_template uses the unknown field '{{assignee}}'"),
    ({}, "{not json", "response_schema is not valid JSON"),
    ({}, {"type": "object", "properties": {"a": {"type": "text"}}, "required": ["a"], "additionalProperties": False},
     "it is not valid JSON Schema"),
    ({}, {"type": "object", "properties": {"a": {"type": "number", "maximum": 1}}, "required": ["a"],
          "additionalProperties": False}, "$.a uses \"maximum\", which is refused: Anthropic's strict mode"),
    ({}, {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
     "$ needs \"additionalProperties\": false"),
    ({}, {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"],
          "additionalProperties": False}, "\"required\" must list every property"),
    ({"name": "product-labeling"}, None, "'product-labeling' is a built-in processor and cannot be redefined"),
    ({"output_tokens": 0}, None, "output_tokens must be between 1 and"),
]


@pytest.mark.parametrize("change, schema, message", BAD)
def test_bad_definitions_say_why_and_store_nothing(db, change, schema, message):
    define(db)
    before = rows(db, "SELECT * FROM ai_processors ORDER BY version")
    change = dict(change)
    name = change.pop("name", NAME)
    named = {"system_prompt": "x", "user_template": TEMPLATE,
             "response_schema": schema if isinstance(schema, str) else json.dumps(schema or SCHEMA)}
    named.update(change)
    args = ", ".join(f"{k} := ?" for k in named)
    with pytest.raises(Exception) as e:
        db.execute(f"SELECT * FROM batch_define_processor(?, {args})", [name, *named.values()])
    assert f"batch_define_processor: processor '{name}' is not valid: " in str(e.value), e.value
    assert message in str(e.value), e.value
    assert rows(db, "SELECT * FROM ai_processors ORDER BY version") == before
