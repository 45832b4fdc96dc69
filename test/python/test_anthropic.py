"""Anthropic Message Batches behind the same SQL (issue 12), end to end: a real DuckDB with
the extension, the loopback fake speaking Anthropic's wire protocol (checked against the
`anthropic` SDK in test_fake_provider_anthropic.py), ANTHROPIC_API_KEY and
ANTHROPIC_BASE_URL (the fake's ROOT URL) in the environment.

submit -> refresh -> collected -> product_labels; cost from the results' usage next to the
estimate; the three ways to choose the provider and the refusal of a model that does not
fit; the key (missing, wrong, echoed back); cancel; retry of expired, canceled and
retryable errored items; a lost or failed create (found without metadata, never created
twice, `not_created` only after the settle window); 429 / 529 / 5xx; a processor defined
in SQL. The kill -9 tests run for Anthropic in test_crash.py.

Run: AI_BATCH_EXTENSION=$PWD/build/release/ai_batch.duckdb_extension \
     .venv/bin/python -m pytest -q test/python/test_anthropic.py
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "test" / "python"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from fake_provider.answers import schema_answer  # noqa: E402
from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: E402,F401
from providers import ANTHROPIC, OPENAI, anthropic_requests, anthropic_results  # noqa: E402
from test_lifecycle import (  # noqa: E402
    N,
    check_job_invariants,
    expected_product,
    fake_batch,
    issues_db,
    items,
    job,
    one,
    refresh,
    refresh_until_done,
    rows,
    run_mixed,
    snapshot,
    submit,
)
from test_reconcile import sleep_past_window, wait_until  # noqa: E402
from test_submit import (  # noqa: E402
    api_requests,
    assert_not_stored,
    assert_nothing_written,
    message_collector,
    submit_error,
    tracking_tables,
)
from test_user_processors import NAME, SCHEMA, define  # noqa: E402

MODEL = ANTHROPIC.model
# Claude Haiku 4.5 Message Batches prices, USD per million tokens: half of the standard
# $1 input / $5 output (Anthropic's pricing page).
HAIKU_BATCH_PRICES = (0.50, 2.50)


def price(input_tokens, output_tokens):
    """USD for these tokens at the Claude Haiku 4.5 batch prices."""
    return input_tokens * HAIKU_BATCH_PRICES[0] / 1e6 + output_tokens * HAIKU_BATCH_PRICES[1] / 1e6


@pytest.fixture
def db(connect, fake_openai, monkeypatch, tmp_path):
    """N issues; the environment pointed at the fake's Anthropic API, and no OpenAI
    settings, so nothing here can fall back to OpenAI; a spool folder of its own."""
    ANTHROPIC.setenv(monkeypatch, fake_openai)
    monkeypatch.setenv("AI_BATCH_SPOOL_DIR", str(tmp_path / "spool"))
    for k in OPENAI.env(fake_openai):
        monkeypatch.delenv(k, raising=False)
    return issues_db(connect)


def submit_claude(con, where="true", **named):
    """batch_submit of product-labeling with a Claude model (unless the test chooses)."""
    if "model" not in named and "provider" not in named:
        named["model"] = MODEL
    return submit(con, where, **named)


def one_row(con, sql):
    out = rows(con, sql)
    assert len(out) == 1, out
    return out[0]


def spooled(tmp_path):
    """Files left in the spool folder (staged requests wait there until their batch is recorded)."""
    return [f for f in (tmp_path / "spool").rglob("*") if not f.is_dir()]


def creates(fake):
    return fake.state()["counts"]["creates_by_job"]


def messages_of(con, job_id):
    return {i["error_code"]: i["error_message"] for i in items(con, job_id) if i["status"] != "completed"}


def assert_sent_to_anthropic(con, fake, out, model, n):
    """The job is Anthropic's, with `model`, and its n requests reached the fake's Message
    Batches API as one batch; nothing went to OpenAI's API."""
    j = job(con, out["job_id"])
    assert (j["provider"], j["model"], out["model"]) == ("anthropic", model, model), (j, out)
    assert out["submitted"] == n and j["provider_batch_id"] == out["provider_batch_id"], out
    reqs = anthropic_requests(fake, j["provider_batch_id"])
    assert len(reqs) == n and {r["params"]["model"] for r in reqs} == {model}
    st = fake.state()
    assert st["batches"] == [] and st["counts"]["uploads"] == 0
    assert creates(fake)[out["job_id"]] == 1
    return j, reqs


# ----------------------------------------------------------------------------- the whole job


def test_submit_refresh_collect_product_labels(db, fake_openai, tmp_path):
    s = submit_claude(db)
    jid = s["job_id"]
    assert s["status"] == "in_progress" and s["provider_batch_id"].startswith("msgbatch_"), s
    assert spooled(tmp_path) == []
    j, reqs = assert_sent_to_anthropic(db, fake_openai, s, MODEL, N)
    # One request per item: our custom_id (Anthropic's pattern), max_tokens always set,
    # the processor's system prompt, the issue as the user message, a forced structured
    # answer following the processor's schema.
    by_cid = {i["custom_id"]: i for i in items(db, jid)}
    assert sorted(r["custom_id"] for r in reqs) == sorted(by_cid)
    for r in reqs:
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", r["custom_id"]) and r["custom_id"].startswith(f"{jid}-i")
        p = r["params"]
        assert isinstance(p["max_tokens"], int) and p["max_tokens"] > 0, p
        assert p["system"] and [m["role"] for m in p["messages"]] == ["user"], p
        assert by_cid[r["custom_id"]]["title"] in json.dumps(p["messages"])
        fmt = (p.get("output_config") or {}).get("format")
        tool = p.get("tool_choice") or {}
        assert (fmt and fmt["type"] == "json_schema" and "recommended_labels" in json.dumps(fmt["schema"])) or (
            tool.get("type") == "tool"), p
    # Every API call carried the key in x-api-key and an anthropic-version header.
    api = api_requests(fake_openai)
    assert api and all(r["path"].startswith(ANTHROPIC.create_path) and r["x_api_key"] and r["anthropic_version"]
                       for r in api), api

    seen = refresh_until_done(db, jid)
    assert [r["status"] for r in seen][-1] == "completed", seen
    j, its = check_job_invariants(db, jid, fake_openai)
    assert j["completed_count"] == N and j["collected_at"] is not None
    pl = rows(db, "SELECT issue, title, label, confidence, job_id FROM product_labels ORDER BY issue")
    assert len(pl) == N
    for r in pl:
        assert r["label"] == f"product::{expected_product(r['title'])}" and r["job_id"] == jid, r
        assert 0 < r["confidence"] <= 1
    # The results came back in another order than sent: matched by custom_id.
    order = [x["custom_id"] for x in anthropic_results(fake_openai, j["provider_batch_id"])]
    assert sorted(order) == sorted(by_cid) and order != [r["custom_id"] for r in reqs]
    # Collected: another refresh sends nothing and changes nothing.
    before, counts = snapshot(db), fake_openai.state()["counts"]
    assert refresh(db) == [] and snapshot(db) == before
    assert fake_openai.state()["counts"]["retrieves"] == counts["retrieves"]
    # The estimate says how it was made: there is no public Claude tokenizer.
    assert j["estimate_method"] and "o200k" in j["estimate_method"], j["estimate_method"]


def test_actual_cost_from_the_results_usage_next_to_the_estimate(db, fake_openai):
    fake_openai.configure({"next_batch": {"outcome": "completed_mixed", "fail_every": 5}})
    s = submit_claude(db)
    refresh_until_done(db, s["job_id"])
    j, its = check_job_invariants(db, s["job_id"], fake_openai)
    usage = {x["custom_id"]: x["result"]["message"]["usage"]
             for x in anthropic_results(fake_openai, j["provider_batch_id"]) if x["result"]["type"] == "succeeded"}
    assert len(usage) == 8
    tin = sum(u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"]
              for u in usage.values())
    tout = sum(u["output_tokens"] for u in usage.values())
    want = price(tin, tout)
    h = rows(db, "SELECT * FROM batch_history() WHERE job_id = ?", [s["job_id"]])[0]
    assert (h["input_tokens"], h["output_tokens"]) == (tin, tout), h
    # actual_cost is DECIMAL(10,4): rounded to the 4th decimal.
    assert abs(float(h["actual_cost"]) - want) <= 0.00005 + 1e-12, (h["actual_cost"], want)
    assert h["cost_estimate"] is not None and float(h["cost_estimate"]) > 0, h
    assert h["estimate_method"] == j["estimate_method"] and "o200k" in h["estimate_method"], h
    assert (h["completed_count"], h["failed_count"], h["pending_count"]) == (8, 2, 0)
    # Per item: the tokens of its own result line, priced the same way; none for errored ones.
    for i in its:
        u = usage.get(i["custom_id"])
        if u is None:
            assert i["status"] == "failed" and i["cost"] is None, i
            continue
        assert (i["input_tokens"], i["output_tokens"]) == (u["input_tokens"], u["output_tokens"]), i
        # an item's cost is DECIMAL(12,6)
        assert abs(float(i["cost"]) - price(u["input_tokens"], u["output_tokens"])) <= 5e-7 + 1e-12, i
    d = rows(db, "SELECT * FROM batch_details(?)", [s["job_id"]])
    assert len(d) == N and abs(float(sum(r["item_cost"] or 0 for r in d)) - want) < 1e-5


def test_estimate_uses_the_built_in_claude_price_unless_ai_batch_prices_overrides_it(db, fake_openai):
    def dry():
        return one_row(db, f"SELECT * FROM batch_submit('product-labeling', '*', model := '{MODEL}', dry_run := true)")

    def priced(r, pin, pout):
        """The estimate as DECIMAL(10,4), rounded half up (test_submit.py's rule)."""
        return (Decimal(r["estimated_input_tokens"]) * Decimal(str(pin)) / 10**6
                + Decimal(r["estimated_output_tokens"]) * Decimal(str(pout)) / 10**6).quantize(
            Decimal("0.0001"), ROUND_HALF_UP)

    built_in = dry()
    assert built_in["status"] == "dry_run" and built_in["estimated_input_tokens"] > 0, built_in
    assert built_in["cost_estimate"] == priced(built_in, *HAIKU_BATCH_PRICES), built_in
    db.execute("CREATE TABLE ai_batch_prices (model VARCHAR, input_per_mtok DOUBLE, output_per_mtok DOUBLE)")
    db.execute("INSERT INTO ai_batch_prices VALUES (?, 7.0, 11.0)", [MODEL])
    over = dry()
    assert over["estimated_input_tokens"] == built_in["estimated_input_tokens"]
    assert over["cost_estimate"] == priced(over, 7.0, 11.0), over
    assert api_requests(fake_openai) == []


# ----------------------------------------------------------------------------- choosing the provider


@pytest.mark.parametrize("named, model", [
    ({"model": "claude-haiku-4-5"}, "claude-haiku-4-5"),
    ({"provider": "anthropic"}, "claude-haiku-4-5"),
    ({"model": "anthropic:claude-sonnet-4-5"}, "claude-sonnet-4-5"),
    ({"provider": "anthropic", "model": "claude-sonnet-4-5"}, "claude-sonnet-4-5"),
], ids=["claude-model", "provider", "anthropic-prefix", "provider-and-model"])
def test_three_ways_to_choose_anthropic(db, fake_openai, named, model):
    s = submit(db, "number < 103", **named)
    assert_sent_to_anthropic(db, fake_openai, s, model, 3)


def test_scalar_form_on_anthropic(db, fake_openai):
    out = rows(db, "SELECT unnest(batch_submit('product-labeling', list(id ORDER BY id), "
                   "{'model': 'anthropic:claude-haiku-4-5'}), recursive := true) FROM issues WHERE number < 104")
    assert len(out) == 1, out
    assert_sent_to_anthropic(db, fake_openai, out[0], MODEL, 4)
    refresh_until_done(db, out[0]["job_id"])
    assert check_job_invariants(db, out[0]["job_id"], fake_openai)[0]["completed_count"] == 4
    assert one(db, "SELECT count(*) FROM product_labels") == 4


# (options, the provider and the model the refusal must name)
MISFITS = [
    ({"provider": "anthropic", "model": "gpt-4o-mini"}, "anthropic", "gpt-4o-mini"),
    ({"provider": "openai", "model": "claude-haiku-4-5"}, "openai", "claude-haiku-4-5"),
    ({"model": "anthropic:gpt-4o-mini"}, "anthropic", "gpt-4o-mini"),
    ({"model": "openai:claude-haiku-4-5"}, "openai", "claude-haiku-4-5"),
    ({"provider": "openai", "model": "anthropic:claude-haiku-4-5"}, "openai", "claude-haiku-4-5"),
]


def assert_misfits_refused(con):
    """Each misfit is refused by the table and the scalar form, naming provider and model."""
    for opts, prov, model in MISFITS:
        named = ", ".join(f"{k} := '{v}'" for k, v in opts.items())
        struct = "{" + ", ".join(f"'{k}': '{v}'" for k, v in opts.items()) + "}"
        for q in (f"SELECT * FROM batch_submit('product-labeling', '*', {named})",
                  f"SELECT batch_submit('product-labeling', [1, 2], {struct})"):
            msg = submit_error(con, q)
            assert prov in msg.lower() and model in msg, (q, msg)


def test_a_model_that_does_not_fit_the_provider_is_refused_at_bind_and_nothing_happens(db, fake_openai, monkeypatch):
    # Both providers' settings point at the fake, so anything sent would show there.
    OPENAI.setenv(monkeypatch, fake_openai)
    assert_misfits_refused(db)
    assert_nothing_written(db)
    assert api_requests(fake_openai) == [] and creates(fake_openai) == {}
    # Once jobs exist: unchanged.
    s = submit_claude(db, "number < 102")
    before, sent = snapshot(db), len(api_requests(fake_openai))
    assert_misfits_refused(db)
    assert snapshot(db) == before and len(api_requests(fake_openai)) == sent
    assert creates(fake_openai) == {s["job_id"]: 1}


def test_base_url_parameter_behind_a_gateway_prefix_with_a_relative_results_url_and_batch_wait(
        db, fake_openai, monkeypatch):
    """`base_url :=` is the root the /v1/... paths hang off, here a gateway's path; the
    results_url the batch names is relative and resolves against it. https only, except
    loopback."""
    monkeypatch.delenv("ANTHROPIC_BASE_URL")
    msg = submit_error(db, f"SELECT * FROM batch_submit('product-labeling', '*', model := '{MODEL}', "
                           "base_url := 'http://api.example.com')")
    assert "https" in msg, msg
    assert_nothing_written(db)
    gateway = f"{fake_openai.root_url}/gw/anthropic"
    fake_openai.configure({"path_prefix": "/gw/anthropic", "relative_results_url": True,
                           "next_batch": {"retrieves_per_step": 2}})
    s = submit_claude(db, base_url=gateway)
    jid = s["job_id"]
    assert s["status"] == "in_progress" and job(db, jid)["base_url"] == gateway, s
    w = rows(db, "SELECT * FROM batch_wait(job_id := ?, timeout := INTERVAL '30 seconds')", [jid])
    assert [(x["job_id"], x["status"], x["applied"]) for x in w] == [(jid, "completed", N)], w
    assert check_job_invariants(db, jid, fake_openai)[0]["completed_count"] == N
    st = fake_openai.state()
    assert st["counts"]["retrieves"] == 2 and st["counts"]["content_downloads"] == 1
    api = [r for r in st["requests"] if not r["path"].startswith("/_fake")]
    assert api and all(r["path"].startswith("/gw/anthropic/v1/messages/batches") and r["status"] == 200
                       for r in api), api


def test_options_map_onto_anthropic_parameters_and_what_has_no_equivalent_is_refused(db, fake_openai):
    for named, said in [
        (f"model := '{MODEL}', temperature := 1.5", ["temperature 1.5", "Anthropic"]),
        (f"model := '{MODEL}', reasoning_effort := 'minimal'", ["'minimal'", "no Anthropic equivalent"]),
        ("model := 'claude-3-5-haiku-20241022'", ["claude-3-5-haiku-20241022", "structured outputs"]),
    ]:
        msg = submit_error(db, f"SELECT * FROM batch_submit('product-labeling', '*', {named})")
        assert all(x in msg for x in said), (named, msg)
    assert_nothing_written(db)
    assert api_requests(fake_openai) == []
    s = submit_claude(db, "number < 102", temperature=0.25, reasoning_effort="low", max_output_tokens=777)
    for r in anthropic_requests(fake_openai, s["provider_batch_id"]):
        p = r["params"]
        assert (p["temperature"], p["output_config"]["effort"], p["max_tokens"]) == (0.25, "low", 777), p
    # `none` is Claude's default (no reasoning): nothing is sent for it.
    s = submit_claude(db, "number = 102", reasoning_effort="none")
    (r,) = anthropic_requests(fake_openai, s["provider_batch_id"])
    assert "effort" not in r["params"].get("output_config", {}) and "temperature" not in r["params"], r


def test_a_status_the_code_does_not_know_stays_active_and_is_shown(db, fake_openai):
    s = submit_claude(db)
    jid, bid = s["job_id"], s["provider_batch_id"]
    fake_openai.provider.control_batch(bid, {"report_status": "paused"})
    out = refresh(db)
    assert [(r["job_id"], r["status"]) for r in out] == [(jid, "paused")], out
    assert "a status ai_batch does not know" in out[0]["message"], out
    again = one_row(db, f"SELECT * FROM batch_submit('product-labeling', '*', model := '{MODEL}')")
    assert again["status"] == "nothing_to_submit" and again["skipped_active"] == N, again
    fake_openai.provider.control_batch(bid, {"report_status": None})
    refresh_until_done(db, jid)
    assert check_job_invariants(db, jid, fake_openai)[0]["completed_count"] == N


# ----------------------------------------------------------------------------- the key


@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_missing_anthropic_key_is_refused_and_nothing_is_sent(db, fake_openai, monkeypatch, value):
    # An OpenAI key the fake accepts is set: it must not stand in for Anthropic's.
    OPENAI.setenv(monkeypatch, fake_openai)
    if value is None:
        monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    else:
        monkeypatch.setenv("ANTHROPIC_API_KEY", value)
    for q in (f"SELECT * FROM batch_submit('product-labeling', [1, 2], model := '{MODEL}')",
              "SELECT batch_submit('product-labeling', [1, 2], {'provider': 'anthropic'})"):
        msg = submit_error(db, q)
        assert "ANTHROPIC_API_KEY" in msg and "not set" in msg, msg
        assert fake_openai.api_key not in msg
    assert tracking_tables(db) == []
    assert api_requests(fake_openai) == []
    # Read at call time: set it and the same call goes through.
    monkeypatch.setenv("ANTHROPIC_API_KEY", fake_openai.api_key)
    out = rows(db, f"SELECT * FROM batch_submit('product-labeling', [1, 2], model := '{MODEL}')")
    assert_sent_to_anthropic(db, fake_openai, out[0], MODEL, 2)
    # Gone again: refresh of the Anthropic job is refused, sends nothing, changes nothing.
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    before, sent = snapshot(db), len(api_requests(fake_openai))
    with pytest.raises(duckdb.Error, match="batch_refresh: ANTHROPIC_API_KEY is not set"):
        refresh(db)
    assert snapshot(db) == before and len(api_requests(fake_openai)) == sent


def test_the_key_never_shows_in_errors_results_or_tables(db, fake_openai, monkeypatch):
    secret = uuid.uuid4().hex
    sentinel = f"sk-ant-api03-{secret}"
    monkeypatch.setenv("ANTHROPIC_API_KEY", sentinel)
    messages: list[str] = []
    run = message_collector(db, messages)

    def sub(where):
        return run(f"SELECT * FROM batch_submit('product-labeling', $$SELECT id FROM issues WHERE {where}$$, "
                   f"model := '{MODEL}')")

    # 1. A key set but wrong: the fake answers 401 to the create.
    fake_openai.configure(api_key="sk-ant-api03-the-right-one")
    r401 = sub("number = 100")
    assert r401[0]["status"] == "failed" and "401" in r401[0]["message"], r401
    assert fake_openai.state()["counts"]["auth_failures"] == 1
    # 2. The right key, and every errored result echoes the create's x-api-key header.
    fake_openai.configure(api_key=sentinel, next_batch={"outcome": "all_failed", "echo_authorization": True})
    s = sub("number IN (101, 102)")[0]
    for _ in range(4):
        messages.extend(str(v) for r in run("SELECT * FROM batch_refresh()") for v in r.values())
    raw = json.dumps(anthropic_results(fake_openai, s["provider_batch_id"]))
    assert sentinel in raw, "the fake did not echo the key: this test would prove nothing"
    its = items(db, s["job_id"])
    assert [i["status"] for i in its] == ["failed", "failed"], its
    messages.extend(i["error_message"] for i in its)
    # 3. A 500 on the create: left for batch_refresh.
    fake_openai.configure(fault=ANTHROPIC.create_fault(kind="server_error"))
    assert sub("number = 103")[0]["status"] == "uploaded"
    # 4. A base URL holding the key, not https and not loopback: refused, table and scalar forms.
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://example.com/{sentinel}")
    sub("number = 104")
    run(f"SELECT batch_submit('product-labeling', [5], {{'model': '{MODEL}'}})")
    assert len([m for m in messages if "base URL" in m]) >= 2, messages[-2:]

    assert len(messages) > 10
    for m in messages:
        assert sentinel not in m and secret not in m, m
    assert_not_stored(db, sentinel, secret)


def test_a_wrong_key_at_refresh_is_not_retried_and_leaves_the_job_intact(db, fake_openai, monkeypatch):
    s = submit_claude(db)
    before = snapshot(db)
    wrong = f"sk-ant-api03-{uuid.uuid4().hex}"
    monkeypatch.setenv("ANTHROPIC_API_KEY", wrong)
    out = refresh(db)
    msg = out[0]["message"]
    assert msg.startswith("not refreshed") and "Anthropic" in msg and "401" in msg, msg
    assert wrong not in msg and wrong[13:] not in msg, msg
    st = fake_openai.state()["counts"]
    assert (st["auth_failures"], st["retrieves"]) == (1, 0), st
    assert snapshot(db) == before
    monkeypatch.setenv("ANTHROPIC_API_KEY", fake_openai.api_key)
    refresh_until_done(db, s["job_id"])
    check_job_invariants(db, s["job_id"], fake_openai)


# ----------------------------------------------------------------------------- cancel and retry


def test_cancel_goes_canceling_then_ended_and_canceled_items_are_retryable(db, fake_openai):
    fake_openai.configure({"next_batch": {"hold_at": "in_progress", "partial_fraction": 0.3}})
    s = submit_claude(db)
    jid, bid = s["job_id"], s["provider_batch_id"]
    assert refresh(db)[0]["status"] == "in_progress"
    c = rows(db, "SELECT * FROM batch_cancel(?)", [jid])
    assert len(c) == 1 and c[0]["status"] == "cancelling", c
    assert fake_openai.state()["counts"]["cancels_by_batch"] == {bid: 1}
    assert fake_batch(fake_openai, bid)["processing_status"] == "canceling"
    seen = refresh_until_done(db, jid)
    assert seen[-1]["status"] == "cancelled", seen
    j, its = check_job_invariants(db, jid, fake_openai)
    assert j["status"] == "cancelled" and j["completed_count"] == 3
    assert {(i["status"], i["error_code"]) for i in its if i["status"] != "completed"} == {("cancelled", "batch_cancelled")}
    # Nothing to cancel any more; nothing sent.
    again = rows(db, "SELECT * FROM batch_cancel(?)", [jid])
    assert "nothing to cancel" in again[0]["message"] and fake_openai.state()["counts"]["cancels"] == 1
    # The canceled ones are sent again, on Anthropic, with the same model.
    r = rows(db, "SELECT * FROM batch_retry(?)", [jid])
    assert len(r) == 1 and r[0]["submitted"] == N - 3, r
    new = r[0]["job_id"]
    assert (job(db, new)["retry_of"], job(db, new)["provider"], r[0]["model"]) == (jid, "anthropic", MODEL)
    refresh_until_done(db, new)
    check_job_invariants(db, new, fake_openai)
    assert one(db, "SELECT count(*), count(DISTINCT issue_id) FROM ai_analyses") == (N, N)


@pytest.mark.parametrize("outcome, job_status, item_status, code", [
    ("expired", "expired", "expired", "batch_expired"),
    ("cancelled", "cancelled", "cancelled", "batch_cancelled"),  # canceled by someone else (the console)
])
def test_expired_and_canceled_requests_keep_partial_results_and_the_rest_is_retried(
        db, fake_openai, outcome, job_status, item_status, code):
    fake_openai.configure({"next_batch": {"outcome": outcome, "partial_fraction": 0.4}})
    s = submit_claude(db)
    refresh_until_done(db, s["job_id"])
    j, its = check_job_invariants(db, s["job_id"], fake_openai)
    assert j["status"] == job_status
    rest = [i for i in its if i["status"] != "completed"]
    assert len(rest) == N - 4 and {(i["status"], i["error_code"]) for i in rest} == {(item_status, code)}
    r = rows(db, "SELECT * FROM batch_retry(?)", [s["job_id"]])
    assert len(r) == 1 and r[0]["submitted"] == len(rest), r
    new = r[0]["job_id"]
    assert sorted(i["issue_id"] for i in items(db, new)) == sorted(i["issue_id"] for i in rest)
    assert all(i["attempts"] == 2 for i in items(db, new))
    refresh_until_done(db, new)
    check_job_invariants(db, new, fake_openai)
    assert one(db, "SELECT count(*), count(DISTINCT issue_id) FROM ai_analyses") == (N, N)
    assert creates(fake_openai) == {s["job_id"]: 1, new: 1}


def test_retry_takes_retryable_errored_results_and_leaves_invalid_requests(db, fake_openai):
    s, its = run_mixed(db, fake_openai, ["server_error", "invalid_request"], send=submit_claude)
    failed = messages_of(db, s["job_id"])
    assert set(failed) == {"api_error", "invalid_request"}, failed
    assert "Internal server error" in failed["api_error"] and "string too long" in failed["invalid_request"]
    retryable = sorted(i["issue_id"] for i in its if i["error_code"] == "api_error")
    assert len(retryable) == 3
    r = rows(db, "SELECT * FROM batch_retry(?)", [s["job_id"]])
    assert len(r) == 1 and r[0]["submitted"] == 3 and "2 items left alone" in r[0]["message"], r
    assert sorted(i["issue_id"] for i in items(db, r[0]["job_id"])) == retryable


# ----------------------------------------------------------------------------- bad results


def test_unusable_answers_fail_their_item_and_store_nothing(db, fake_openai):
    kinds = ["refusal", "length", "malformed", "schema"]
    fake_openai.configure({"next_batch": {"outcome": "invalid_answers", "invalid_every": 2, "invalid_kinds": kinds,
                                          "output_order": "reversed"}})
    s = submit_claude(db)
    refresh_until_done(db, s["job_id"])
    j, its = check_job_invariants(db, s["job_id"], fake_openai, invalid_answers=N // 2)
    # Items 2, 4, 6, ... got the kinds in turn (stop_reason refusal / max_tokens, not JSON, off-schema).
    want = {"refusal": ("refusal", "refusal"), "length": ("truncated", "max_tokens"),
            "malformed": ("invalid_answer", ""), "schema": ("invalid_answer", "")}
    for n, it in enumerate(its):
        if (n + 1) % 2:
            assert it["status"] == "completed", it
            continue
        code, text = want[kinds[(n // 2) % len(kinds)]]
        assert (it["status"], it["error_code"]) == ("failed", code) and text in it["error_message"], it
    assert j["completed_count"] == N // 2
    assert one(db, "SELECT count(*) FROM ai_analyses") == N // 2


def test_duplicate_results_applied_once_and_unknown_custom_ids_ignored(db, fake_openai):
    fake_openai.configure({"next_batch": {"duplicate_custom_ids": 3, "unknown_custom_ids": 2}})
    s = submit_claude(db)
    seen = refresh_until_done(db, s["job_id"])
    msg = seen[-1]["message"]
    assert "2 output lines with unknown custom_id ignored" in msg and "3 duplicate lines applied once" in msg, msg
    assert check_job_invariants(db, s["job_id"], fake_openai)[0]["completed_count"] == N
    assert one(db, "SELECT count(*), count(DISTINCT issue_id) FROM ai_analyses") == (N, N)


def test_results_gone_after_29_days_free_the_items_for_a_retry(db, fake_openai):
    fake_openai.configure({"next_batch": {"missing_files": ["output"]}})
    s = submit_claude(db)
    seen = refresh_until_done(db, s["job_id"])
    assert seen[-1]["message"].startswith("collected") and "404" in seen[-1]["message"], seen[-1]
    its = items(db, s["job_id"])
    assert {(i["status"], i["error_code"]) for i in its} == {("failed", "result_unavailable")}, its
    r = rows(db, "SELECT * FROM batch_retry(?)", [s["job_id"]])
    assert r[0]["submitted"] == N, r
    refresh_until_done(db, r[0]["job_id"])
    assert check_job_invariants(db, r[0]["job_id"], fake_openai)[0]["completed_count"] == N


def test_results_cut_mid_line_are_not_final(db, fake_openai):
    fake_openai.configure({"next_batch": {"cut_output_file": 0.55, "output_order": "input"}})
    s = submit_claude(db)
    out = refresh(db)
    assert len(out) == 1 and out[0]["message"].startswith("not collected"), out
    assert "downloaded again on the next refresh" in out[0]["message"] and out[0]["applied"] == 0, out
    assert {i["status"] for i in items(db, s["job_id"])} == {"pending"}
    assert one(db, "SELECT count(*) FROM ai_analyses") == 0


# ----------------------------------------------------------------------------- a lost or failed create


def test_a_lost_create_response_is_adopted_never_created_twice(db, fake_openai, tmp_path):
    fake_openai.configure({"fault": ANTHROPIC.create_fault(kind="reset", after_action=True)})
    s = submit_claude(db)
    jid = s["job_id"]
    assert s["status"] == "uploaded" and s["provider_batch_id"] is None, s
    assert len(spooled(tmp_path)) == 1  # kept: the create may have to be sent again
    made = [b["id"] for b in ANTHROPIC.batches(fake_openai)]
    assert len(made) == 1 and creates(fake_openai) == {jid: 1}
    refresh_until_done(db, jid)
    j, _ = check_job_invariants(db, jid, fake_openai)
    assert j["provider_batch_id"] == made[0] and j["completed_count"] == N
    assert spooled(tmp_path) == []
    counts = fake_openai.state()["counts"]
    assert counts["batch_creates"] == 1 and counts["list_calls"] >= 1


def test_two_lost_creates_of_the_same_size_are_told_apart_by_their_results(db, fake_openai):
    """Without metadata, two lost creates with as many requests each, sent together, fit
    both jobs: refresh creates neither again, and gives each job the batch whose results
    carry its own job id (once released, the batches end on their own within 0.2 s)."""
    fake_openai.configure({"advance": "timed", "step_seconds": 0.2, "defaults": {"hold_at": "in_progress"},
                           "fault": ANTHROPIC.create_fault(kind="reset", after_action=True, count=2)})
    jobs = [submit_claude(db, f"number % 2 = {k}") for k in (0, 1)]
    assert [(s["status"], s["submitted"]) for s in jobs] == [("uploaded", N // 2)] * 2, jobs
    made = {b["_fake"]["job_id"]: b["id"] for b in ANTHROPIC.batches(fake_openai)}
    assert set(made) == {s["job_id"] for s in jobs}
    # While both run, either could be either job's: both are watched, neither adopted nor created again.
    out = refresh(db)
    assert sorted((r["job_id"], r["status"]) for r in out) == sorted((s["job_id"], "uploaded") for s in jobs), out
    assert all(bid in r["message"] for r in out for bid in made.values()), out
    assert fake_openai.state()["counts"]["batch_creates"] == 2
    for bid in made.values():
        fake_openai.provider.control_batch(bid, {"hold_at": None})

    def settled():
        refresh(db)
        return all(job(db, s["job_id"])["collected_at"] is not None for s in jobs)
    wait_until(settled, timeout=20, what="both lost creates adopted and collected")
    for s in jobs:
        j, _ = check_job_invariants(db, s["job_id"], fake_openai)
        assert j["provider_batch_id"] == made[s["job_id"]] and j["completed_count"] == N // 2, j
    assert creates(fake_openai) == {s["job_id"]: 1 for s in jobs}
    assert one(db, "SELECT count(*), count(DISTINCT issue_id) FROM ai_analyses") == (N, N)


def create_foreign_batch(fake, n):
    """A batch of n requests made by another program (custom_ids not ours), as the SDK would."""
    body = {"requests": [{"custom_id": f"other-{k}", "params": {"model": MODEL, "max_tokens": 16,
                                                                "messages": [{"role": "user", "content": "hi"}]}}
                         for k in range(n)]}
    req = urllib.request.Request(f"{fake.root_url}{ANTHROPIC.create_path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"x-api-key": fake.api_key, "anthropic-version": "2023-06-01",
                                                         "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["id"]


def test_a_batch_of_the_same_size_from_another_program_is_not_taken_for_a_lost_create(db, fake_openai, monkeypatch):
    """Our create never landed; another program made a batch of as many requests meanwhile.
    Its results carry no custom_id of ours: nothing of it is applied, and the job is
    `not_created` after the settle window, never created twice."""
    monkeypatch.setenv("AI_BATCH_CREATE_TIMEOUT_SECS", "0.5")
    fake_openai.configure({"fault": ANTHROPIC.create_fault(kind="reset")})
    s = submit_claude(db)
    jid = s["job_id"]
    assert s["status"] == "uploaded", s
    foreign = create_foreign_batch(fake_openai, N)

    def decided():
        refresh(db)
        return job(db, jid)["collected_at"] is not None
    wait_until(decided, timeout=6, what="the lost create decided")
    j = job(db, jid)
    assert j["status"] == "failed" and j["provider_batch_id"] in (None, foreign), j
    assert {(i["status"], i["error_code"]) for i in items(db, jid)} == {("failed", "not_created")}
    assert one(db, "SELECT count(*) FROM ai_analyses") == 0
    assert creates(fake_openai) == {"other": 1}
    assert time.time() >= j["submitted_at"].timestamp() + 3 * 0.5  # not before the settle window


def test_a_create_in_flight_is_not_created_again_and_is_adopted_when_it_lands(db, fake_openai, monkeypatch):
    # The client gives up after 1 s; the batch appears at the provider after 3 s.
    monkeypatch.setenv("AI_BATCH_CREATE_TIMEOUT_SECS", "1")
    fake_openai.configure({"fault": ANTHROPIC.create_fault(kind="delay", delay=3)})
    s = submit_claude(db)
    jid = s["job_id"]
    assert s["status"] == "uploaded", s
    out = refresh(db)
    assert [r["status"] for r in out] == ["uploaded"] and "may still land" in out[0]["message"], out
    assert fake_openai.state()["counts"]["batch_creates"] == 0
    wait_until(lambda: fake_openai.state()["counts"]["batch_creates"] == 1, what="the delayed create")
    refresh_until_done(db, jid)
    assert check_job_invariants(db, jid, fake_openai)[0]["completed_count"] == N
    assert creates(fake_openai) == {jid: 1} and fake_openai.state()["counts"]["batch_creates"] == 1


def test_cancelling_a_job_whose_create_is_in_flight_still_stops_the_batch_once_it_lands(db, fake_openai, monkeypatch):
    """Anthropic cannot fence a create off (no input file to delete): a cancel asked for
    while the create may still land must reach the batch once it is there (the user may
    have to run batch_cancel again), never leave it running unowned."""
    monkeypatch.setenv("AI_BATCH_CREATE_TIMEOUT_SECS", "1")
    fake_openai.configure({"fault": ANTHROPIC.create_fault(kind="delay", delay=2)})
    s = submit_claude(db)
    jid = s["job_id"]
    assert s["status"] == "uploaded", s

    def cancel():
        try:
            rows(db, "SELECT * FROM batch_cancel(?)", [jid])
        except duckdb.Error:
            pass  # refusing while the create may still land is fine: the user runs it again
    cancel()
    wait_until(lambda: fake_openai.state()["counts"]["batch_creates"] == 1, what="the delayed create")
    (bid,) = [b["id"] for b in ANTHROPIC.batches(fake_openai)]
    for _ in range(4):
        cancel()
        refresh(db)
    j = job(db, jid)
    assert fake_openai.state()["counts"]["cancels_by_batch"] == {bid: 1}, fake_batch(fake_openai, bid)
    assert (j["provider_batch_id"], j["status"], j["collected_at"] is not None) == (bid, "cancelled", True), j
    check_job_invariants(db, jid, fake_openai)


@pytest.mark.parametrize("fault", [
    {"kind": "reset"},  # the connection dropped with the create unprocessed
    {"kind": "overloaded"},  # 529
    {"kind": "server_error"},  # 500
], ids=lambda f: f["kind"])
def test_a_create_that_never_landed_is_not_created_only_after_the_settle_window(db, fake_openai, monkeypatch, tmp_path,
                                                                                fault):
    monkeypatch.setenv("AI_BATCH_CREATE_TIMEOUT_SECS", "0.5")
    fake_openai.configure({"fault": ANTHROPIC.create_fault(**fault)})
    s = submit_claude(db)
    jid = s["job_id"]
    # Ambiguous: the create may have reached Anthropic, and its batches carry no metadata.
    assert s["status"] == "uploaded" and s["provider_batch_id"] is None, s
    out = refresh(db)
    assert out[0]["status"] == "uploaded" and "may still land" in out[0]["message"], out
    sleep_past_window(db, jid, 0.5)
    out = refresh(db)
    assert out[0]["status"] == "failed" and "never created a batch" in out[0]["message"], out
    assert {(i["status"], i["error_code"]) for i in items(db, jid)} == {("failed", "not_created")}
    assert fake_openai.state()["counts"]["batch_creates"] == 0 and creates(fake_openai) == {}
    assert spooled(tmp_path) == []  # the staged requests of a decided job are not kept
    # batch_retry sends the issues again, once.
    r = rows(db, "SELECT * FROM batch_retry(?)", [jid])
    assert r[0]["submitted"] == N, r
    refresh_until_done(db, r[0]["job_id"])
    assert check_job_invariants(db, r[0]["job_id"], fake_openai)[0]["completed_count"] == N
    assert creates(fake_openai) == {r[0]["job_id"]: 1}


# ----------------------------------------------------------------------------- 429 / 529 / 5xx


@pytest.mark.parametrize("fault", [
    {"kind": "rate_limit", "retry_after": 1},
    {"kind": "rate_limit", "retry_after_ms": 300, "count": 2},
], ids=["retry-after", "retry-after-ms-twice"])
def test_429_on_create_is_waited_out_and_the_batch_made_once(db, fake_openai, fault):
    fake_openai.configure({"fault": ANTHROPIC.create_fault(**fault)})
    s = submit_claude(db)
    assert s["status"] == "in_progress" and s["provider_batch_id"], s
    st = fake_openai.state()
    assert st["counts"]["faults_fired"] == fault.get("count", 1)
    assert st["counts"]["creates_by_job"] == {s["job_id"]: 1}


@pytest.mark.parametrize("where", ["poll", "results"])
@pytest.mark.parametrize("fault", [
    {"kind": "rate_limit", "retry_after": 1},
    {"kind": "overloaded"},
    {"kind": "server_error", "count": 2},
    {"kind": "service_unavailable", "retry_after_ms": 200},
], ids=lambda f: f["kind"] + ("-x2" if f.get("count") else ""))
def test_429_529_and_5xx_on_poll_and_results_are_retried_then_fine(db, fake_openai, where, fault):
    fake_openai.configure({"advance": "immediate"})
    s = submit_claude(db)
    bid = s["provider_batch_id"]
    path = f"{ANTHROPIC.create_path}/{bid}" + ("/results" if where == "results" else "")
    count = fault.get("count", 1)
    fake_openai.configure({"fault": {"method": "GET", "path": path, "count": count, **fault}})
    out = refresh(db)
    assert len(out) == 1 and out[0]["status"] == "completed" and out[0]["applied"] == N, out
    st = fake_openai.state()
    fired = [r for r in st["requests"] if r["fault"]]
    assert len(fired) == count and all(r["path"].endswith("/results") == (where == "results") for r in fired), fired
    check_job_invariants(db, s["job_id"], fake_openai)


# ----------------------------------------------------------------------------- a processor defined in SQL


def test_a_sql_defined_processor_runs_on_anthropic_with_typed_batch_results(db, fake_openai):
    d = define(db, output_tokens=300, model=MODEL)
    s = rows(db, f"SELECT * FROM batch_submit('{NAME}', '*')")[0]
    j, reqs = assert_sent_to_anthropic(db, fake_openai, s, MODEL, N)
    assert (j["processor"], j["processor_version"]) == (NAME, d["version"])
    # The user's prompt and schema travel in every request.
    for r in reqs:
        p = r["params"]
        assert "bug, feature or question" in json.dumps(p["system"]), p["system"]
        assert "needs_bundle" in json.dumps(p), p
    refresh_until_done(db, s["job_id"])
    check_job_invariants(db, s["job_id"], fake_openai)
    types = dict(db.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM batch_results('{NAME}'))")
                 .fetchall())
    assert (types["kind"], types["components"], types["confidence"], types["needs_bundle"]) == (
        "VARCHAR", "VARCHAR[]", "DOUBLE", "BOOLEAN"), types
    assert types["severity"].startswith("STRUCT(") and "BIGINT" in types["severity"], types
    res = rows(db, f"SELECT * FROM batch_results('{NAME}') ORDER BY issue_id")
    assert len(res) == N
    sent = {r["custom_id"]: r["params"]["messages"][0]["content"] for r in reqs}
    for r in res:
        # The fake answered each request from its own schema and user message.
        want = schema_answer(SCHEMA, sent[f"{s['job_id']}-i{r['issue_id']}"])
        assert {k: r[k] for k in want} == want, (r, want)
        assert r["model"] == MODEL and r["job_id"] == s["job_id"]
