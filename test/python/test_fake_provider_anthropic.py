"""Conformance tests of fake_provider's Message Batches API against the official anthropic SDK
(and raw HTTP where the SDK hides the wire).

Run: .venv/bin/python -m pytest test/python/test_fake_provider_anthropic.py -q
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import anthropic  # noqa: E402
import pytest  # noqa: E402
from anthropic import Anthropic  # noqa: E402

from fake_provider.anthropic import answer_for_params, job_id_of  # noqa: E402
from fake_provider.pytest_plugin import (  # noqa: E402,F401  (fixtures are used by name)
    PRODUCT_LABELING_SCHEMA,
    fake_openai,
    fake_openai_server,
)

PL_KEYS = {"recommended_labels", "confidence", "root_cause_analysis", "current_labels_assessment", "summary"}
TEXTS = [
    "Title: kots admin console crashes\n\nThe admin console shows a blank page.",
    "Title: support bundle hangs\n\nCollecting a support bundle never finishes.",
    "Title: kurl install fails\n\nkurl join script times out.",
]


def sdk(fake, **kw: Any) -> Anthropic:
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", 20)
    base = kw.pop("base_url", fake.root_url)
    return Anthropic(base_url=base, api_key=kw.pop("api_key", fake.api_key), **kw)


def params(text: str, structured: str = "output_config", model: str = "claude-haiku-4-5") -> dict[str, Any]:
    p: dict[str, Any] = {
        "model": model,
        "max_tokens": 1024,
        "system": "You are an expert at product labeling of GitHub issues.",
        "messages": [{"role": "user", "content": text}],
    }
    if structured == "output_config":
        p["output_config"] = {"format": {"type": "json_schema", "schema": PRODUCT_LABELING_SCHEMA}}
    elif structured == "tool":
        p["tools"] = [{"name": "product_labeling", "description": "Record the labels", "input_schema": PRODUCT_LABELING_SCHEMA}]
        p["tool_choice"] = {"type": "tool", "name": "product_labeling"}
    return p


def requests(n: int, job: str = "jobA", **kw: Any) -> list[dict[str, Any]]:
    return [{"custom_id": f"{job}-i{i + 1}", "params": params(TEXTS[i % len(TEXTS)], **kw)} for i in range(n)]


def results(c: Anthropic, bid: str) -> dict[str, Any]:
    return {r.custom_id: r.result for r in c.messages.batches.results(bid)}


def raw(fake, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers=headers or {})
    r = conn.getresponse()
    out = r.status, dict(r.getheaders()), r.read()
    conn.close()
    return out


# ---------------------------------------------------------------------------- lifecycle


def test_create_retrieve_results_with_sdk(fake_openai):
    c = sdk(fake_openai)
    b = c.messages.batches.create(requests=requests(3))
    assert b.id.startswith("msgbatch_") and b.type == "message_batch"
    assert b.processing_status == "in_progress" and b.results_url is None and b.ended_at is None
    assert b.request_counts.processing == 3 and b.request_counts.succeeded == 0
    b = c.messages.batches.retrieve(b.id)  # per-retrieve: one step to ended
    assert b.processing_status == "ended" and b.ended_at is not None
    assert b.request_counts.succeeded == 3 and b.request_counts.processing == 0
    assert b.results_url == f"{fake_openai.root_url}/v1/messages/batches/{b.id}/results"
    res = results(c, b.id)
    assert set(res) == {"jobA-i1", "jobA-i2", "jobA-i3"}
    for r in res.values():
        assert r.type == "succeeded"
        msg = r.message
        assert msg.role == "assistant" and msg.model == "claude-haiku-4-5" and msg.stop_reason == "end_turn"
        answer = json.loads(msg.content[0].text)
        assert set(answer) == PL_KEYS
        assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert json.loads(res["jobA-i3"].message.content[0].text)["recommended_labels"][0]["label"] == "product::kurl"
    st = fake_openai.state()
    assert st["counts"]["batch_creates"] == 1 and st["counts"]["creates_by_job"] == {"jobA": 1}
    assert st["message_batches"][0]["_fake"]["job_id"] == "jobA"
    # the SDK's own headers reached the fake
    log = [e for e in st["requests"] if e["path"].startswith("/v1/messages")]
    assert log and all(e["anthropic_version"] for e in log)


def test_forced_tool_answers_a_tool_use_block():
    content, stop, in_tok = answer_for_params(params(TEXTS[1], structured="tool"))
    assert stop == "tool_use" and content[0]["type"] == "tool_use" and content[0]["name"] == "product_labeling"
    assert set(content[0]["input"]) == PL_KEYS and content[0]["input"]["recommended_labels"][0]["label"] == "product::troubleshoot"
    content, stop, _ = answer_for_params(params(TEXTS[1], structured="none") | {"system": "Be brief."})
    assert stop == "end_turn" and content[0]["text"].startswith("Fake answer to:")
    other = {"type": "object", "properties": {"x": {"type": "integer"}}}
    p = params("hi", structured="none") | {"system": "x", "output_config": {"format": {"type": "json_schema", "schema": other}}}
    content, _, _ = answer_for_params(p)
    # Another schema gets a valid answer of its own (the same generator as OpenAI's side).
    answer = json.loads(content[0]["text"])
    assert set(answer) == {"x"} and isinstance(answer["x"], int) and 0 <= answer["x"] <= 9
    assert job_id_of("job_1-i5") == "job_1" and job_id_of("nodash") is None


def test_results_are_shuffled_and_results_before_end_are_404(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batch={"hold_at": "in_progress"})
    b = c.messages.batches.create(requests=requests(30))
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        list(c.messages.batches.results(b.id))  # the SDK refuses: no results_url yet
    st, _, body = raw(fake_openai, "GET", f"/v1/messages/batches/{b.id}/results", headers={"x-api-key": fake_openai.api_key, "anthropic-version": "2023-06-01"})
    assert st == 404 and json.loads(body)["error"]["type"] == "not_found_error"
    raw(fake_openai, "POST", f"/_fake/batches/{b.id}", {"hold_at": None})
    c.messages.batches.retrieve(b.id)
    order = [r.custom_id for r in c.messages.batches.results(b.id)]
    assert sorted(order) == sorted(f"jobA-i{i + 1}" for i in range(30)) and order != [f"jobA-i{i + 1}" for i in range(30)]


def test_list_pagination_before_and_after(fake_openai):
    c = sdk(fake_openai)
    ids = [c.messages.batches.create(requests=requests(1, job=f"j{i}")).id for i in range(5)]
    newest_first = ids[::-1]
    page = c.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2] and page.has_more
    assert page.first_id == newest_first[0] and page.last_id == newest_first[1]
    assert [b.id for b in c.messages.batches.list(limit=2)] == newest_first  # auto-paging via after_id
    p2 = c.messages.batches.list(limit=2, after_id=newest_first[1])
    assert [b.id for b in p2.data] == newest_first[2:4] and p2.has_more
    p3 = c.messages.batches.list(limit=2, after_id=newest_first[3])
    assert [b.id for b in p3.data] == newest_first[4:] and not p3.has_more
    back = c.messages.batches.list(limit=2, before_id=newest_first[4])
    assert [b.id for b in back.data] == newest_first[2:4] and back.has_more
    assert fake_openai.state()["counts"]["list_calls"] >= 5
    with pytest.raises(anthropic.BadRequestError):
        c.messages.batches.list(limit=1001)


def test_cancel_keeps_partial_results_then_ends(fake_openai):
    c = sdk(fake_openai)
    b = c.messages.batches.create(requests=requests(10))
    b = c.messages.batches.cancel(b.id)
    assert b.processing_status == "canceling" and b.cancel_initiated_at is not None
    assert c.messages.batches.cancel(b.id).processing_status == "canceling"  # again: unchanged
    b = c.messages.batches.retrieve(b.id)
    assert b.processing_status == "ended"
    assert (b.request_counts.succeeded, b.request_counts.canceled) == (5, 5)  # partial_fraction 0.5
    kinds = [r.type for r in results(c, b.id).values()]
    assert kinds.count("canceled") == 5 and kinds.count("succeeded") == 5
    assert c.messages.batches.cancel(b.id).processing_status == "ended"  # an ended batch answers as it is
    assert fake_openai.state()["counts"]["cancels_by_batch"] == {b.id: 3}
    c.messages.batches.delete(b.id)
    with pytest.raises(anthropic.NotFoundError):
        c.messages.batches.retrieve(b.id)


# ---------------------------------------------------------------------------- outcomes


def test_errored_expired_and_param_errors(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batches=[{"outcome": "completed_mixed", "fail_every": 2}, {"outcome": "expired", "partial_fraction": 0.25}])
    b = c.messages.batches.create(requests=requests(4))
    b = c.messages.batches.retrieve(b.id)
    assert (b.request_counts.succeeded, b.request_counts.errored) == (2, 2)
    errs = [r for r in results(c, b.id).values() if r.type == "errored"]
    assert {e.error.error.type for e in errs} == {"api_error", "invalid_request_error"}
    assert all(e.error.type == "error" for e in errs)
    b = c.messages.batches.create(requests=requests(8))
    b = c.messages.batches.retrieve(b.id)
    assert (b.request_counts.succeeded, b.request_counts.expired) == (2, 6)
    # a request without max_tokens is accepted at create and errors on its own, as at Anthropic
    reqs = requests(2)
    del reqs[1]["params"]["max_tokens"]
    b = c.messages.batches.retrieve(c.messages.batches.create(requests=reqs).id)
    res = results(c, b.id)
    assert res["jobA-i1"].type == "succeeded"
    assert res["jobA-i2"].type == "errored" and "max_tokens" in res["jobA-i2"].error.error.message


def test_provider_side_cancel_and_all_failed(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batches=[{"outcome": "cancelled", "partial_fraction": 0.5}, {"outcome": "all_failed"}])
    b = c.messages.batches.create(requests=requests(4))
    assert c.messages.batches.retrieve(b.id).processing_status == "canceling"
    b = c.messages.batches.retrieve(b.id)
    assert (b.processing_status, b.request_counts.canceled, b.request_counts.succeeded) == ("ended", 2, 2)
    b = c.messages.batches.retrieve(c.messages.batches.create(requests=requests(3)).id)
    assert b.request_counts.errored == 3


def test_invalid_answers(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batch={"outcome": "invalid_answers", "invalid_kinds": ["refusal", "length", "malformed", "schema"], "output_order": "input"})
    b = c.messages.batches.retrieve(c.messages.batches.create(requests=requests(4)).id)
    res = [r.message for r in results(c, b.id).values()]
    assert res[0].stop_reason == "refusal" and res[0].content == []
    assert res[1].stop_reason == "max_tokens"
    with pytest.raises(ValueError):
        json.loads(res[2].content[0].text)
    assert "summary" not in json.loads(res[3].content[0].text)


def test_create_validation_errors(fake_openai):
    c = sdk(fake_openai)
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.batches.create(requests=[{"custom_id": "has space", "params": params("x")}])
    assert e.value.body["error"]["type"] == "invalid_request_error" and "custom_id" in e.value.message
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id"):
        c.messages.batches.create(requests=[{"custom_id": "a", "params": params("x")}] * 2)
    with pytest.raises(anthropic.BadRequestError):
        c.messages.batches.create(requests=[{"custom_id": "x" * 65, "params": params("x")}])
    with pytest.raises(anthropic.BadRequestError):
        c.messages.batches.create(requests=[])
    assert fake_openai.state()["counts"]["batch_creates"] == 0


def test_auth_headers_and_error_shape(fake_openai):
    with pytest.raises(anthropic.AuthenticationError) as e:
        sdk(fake_openai, api_key="sk-ant-wrong").messages.batches.list()
    assert e.value.status_code == 401 and e.value.body["error"]["type"] == "authentication_error"
    assert e.value.request_id and e.value.request_id.startswith("req_")
    # raw: x-api-key works, the version header is required
    st, _, body = raw(fake_openai, "GET", "/v1/messages/batches", headers={"x-api-key": fake_openai.api_key})
    assert st == 400 and "anthropic-version" in json.loads(body)["error"]["message"]
    st, hdrs, body = raw(fake_openai, "GET", "/v1/messages/batches", headers={"x-api-key": fake_openai.api_key, "anthropic-version": "2023-06-01"})
    assert st == 200 and json.loads(body)["data"] == [] and hdrs["request-id"].startswith("req_")
    st, _, _ = raw(fake_openai, "GET", "/v1/messages/batches", headers={"anthropic-version": "2023-06-01"})
    assert st == 401
    log = fake_openai.state()["requests"]
    assert log[-2]["x_api_key"] is True


# ---------------------------------------------------------------------------- faults and scenarios


def test_sdk_retries_429_and_529_with_retry_after(fake_openai):
    fake_openai.configure(
        faults=[
            {"kind": "rate_limit", "path": "/v1/messages/batches", "method": "POST", "retry_after": 0},
            {"kind": "overloaded", "path": "/v1/messages/batches", "method": "POST", "retry_after_ms": 10},
            {"kind": "server_error", "path": "/v1/messages/batches", "method": "POST"},
        ]
    )
    c = sdk(fake_openai, max_retries=3)
    t0 = time.monotonic()
    b = c.messages.batches.create(requests=requests(1))
    assert b.processing_status == "in_progress" and time.monotonic() - t0 < 5
    st = fake_openai.state()
    assert st["counts"]["faults_fired"] == 3 and st["counts"]["batch_creates"] == 1
    assert [e["status"] for e in st["requests"]][-4:] == [429, 529, 500, 200]


@pytest.mark.parametrize(
    "kind,exc,status,typ",
    [
        ("rate_limit", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("overloaded", anthropic.APIStatusError, 529, "overloaded_error"),
        ("server_error", anthropic.InternalServerError, 500, "api_error"),
        ("forbidden", anthropic.PermissionDeniedError, 403, "permission_error"),
    ],
)
def test_faults_answer_in_anthropic_shape(fake_openai, kind, exc, status, typ):
    fake_openai.configure(fault={"kind": kind, "path": "/v1/messages/batches", "retry_after": 7})
    with pytest.raises(exc) as e:
        sdk(fake_openai).messages.batches.list()
    assert e.value.status_code == status
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == typ
    assert e.value.response.headers["retry-after"] == "7"


def test_lost_create_response_still_creates_the_batch(fake_openai):
    fake_openai.configure(fault={"kind": "reset", "path": "/v1/messages/batches", "method": "POST", "after_action": True})
    c = sdk(fake_openai)
    with pytest.raises(anthropic.APIConnectionError):
        c.messages.batches.create(requests=requests(2, job="lost1"))
    # the batch exists; without metadata it is found by the job id inside its custom_ids
    st = fake_openai.state()
    assert st["counts"]["creates_by_job"] == {"lost1": 1}
    [b] = c.messages.batches.list().data
    assert b.processing_status == "in_progress"
    assert st["message_batches"][0]["_fake"]["custom_ids"] == ["lost1-i1", "lost1-i2"]


def test_parse_deferred_to_first_poll(fake_openai):
    """validate=on-first-poll (the benchmark's mode): a create checks the custom_ids found in
    the raw body and answers without parsing it; the first retrieve parses it and the batch
    runs as usual. The create's 400s are the same."""
    fake_openai.configure(validate="on-first-poll")
    c = sdk(fake_openai)
    b = c.messages.batches.create(requests=requests(3, job="lazy"))
    assert b.request_counts.processing == 3
    [view] = fake_openai.state()["message_batches"]
    assert view["_fake"]["parsed"] is False and view["_fake"]["job_id"] == "lazy"
    assert view["_fake"]["custom_ids"] == ["lazy-i1", "lazy-i2", "lazy-i3"]
    assert fake_openai.state()["counts"]["creates_by_job"] == {"lazy": 1}
    b = c.messages.batches.retrieve(b.id)
    assert b.processing_status == "ended" and b.request_counts.succeeded == 3
    assert fake_openai.state()["message_batches"][0]["_fake"]["parsed"] is True
    assert set(results(c, b.id)) == {"lazy-i1", "lazy-i2", "lazy-i3"}
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        c.messages.batches.create(requests=[{"custom_id": "has space", "params": params("x")}])
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id"):
        c.messages.batches.create(requests=[{"custom_id": "a", "params": params("x")}] * 2)
    with pytest.raises(anthropic.BadRequestError):
        c.messages.batches.create(requests=[])
    assert fake_openai.state()["counts"]["batch_creates"] == 1
    fake_openai.configure(validate="on-create")
    c.messages.batches.create(requests=requests(1, job="eager"))
    assert fake_openai.state()["message_batches"][0]["_fake"]["parsed"] is True


def test_path_prefix_and_relative_results_url(fake_openai):
    fake_openai.configure(path_prefix="/gw/anthropic", relative_results_url=True)
    c = sdk(fake_openai, base_url=fake_openai.root_url + "/gw/anthropic")
    b = c.messages.batches.retrieve(c.messages.batches.create(requests=requests(2)).id)
    assert b.results_url == f"/v1/messages/batches/{b.id}/results"
    assert len(results(c, b.id)) == 2  # the SDK resolves it against its base URL, prefix included
    with pytest.raises(anthropic.NotFoundError):
        sdk(fake_openai).messages.batches.list()  # outside the prefix
    fake_openai.configure(relative_results_url=False)
    b = c.messages.batches.retrieve(b.id)
    assert b.results_url == f"{fake_openai.root_url}/gw/anthropic/v1/messages/batches/{b.id}/results"


def test_hold_control_and_timed_advance(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(jobs={"held": {"hold_at": "in_progress"}})
    b = c.messages.batches.create(requests=requests(2, job="held"))
    for _ in range(3):
        assert c.messages.batches.retrieve(b.id).processing_status == "in_progress"
    st, _, body = raw(fake_openai, "POST", f"/_fake/batches/{b.id}", {"hold_at": None})
    assert st == 200 and json.loads(body)["_fake"]["behaviour"]["hold_at"] is None
    assert c.messages.batches.retrieve(b.id).processing_status == "ended"
    fake_openai.configure(next_batch={"advance": "timed", "step_seconds": 0.2})
    b = c.messages.batches.create(requests=requests(1))
    assert c.messages.batches.retrieve(b.id).processing_status == "in_progress"
    time.sleep(0.3)
    assert c.messages.batches.retrieve(b.id).processing_status == "ended"


def test_missing_cut_duplicate_and_unknown_results(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batches=[{"missing_files": ["output"]}, {"duplicate_custom_ids": 1, "unknown_custom_ids": 1}, {"cut_output_file": 0.5}])
    b = c.messages.batches.retrieve(c.messages.batches.create(requests=requests(2)).id)
    with pytest.raises(anthropic.NotFoundError):
        list(c.messages.batches.results(b.id))
    b = c.messages.batches.retrieve(c.messages.batches.create(requests=requests(2)).id)
    ids = [r.custom_id for r in c.messages.batches.results(b.id)]
    assert sorted(ids) == ["jobA-i1", "jobA-i1", "jobA-i2", "unknown-0"]
    b = c.messages.batches.retrieve(c.messages.batches.create(requests=requests(4)).id)
    hdrs = {"x-api-key": fake_openai.api_key, "anthropic-version": "2023-06-01"}
    st, _, body = raw(fake_openai, "GET", f"/v1/messages/batches/{b.id}/results", headers=hdrs)
    assert st == 200 and not body.endswith(b"\n")
    with pytest.raises(ValueError):
        [json.loads(line) for line in body.split(b"\n")]


def test_echo_of_the_key_in_errored_results(fake_openai):
    fake_openai.configure(next_batch={"outcome": "all_failed", "echo_authorization": True})
    hdrs = {"x-api-key": fake_openai.api_key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    st, _, body = raw(fake_openai, "POST", "/v1/messages/batches", {"requests": requests(1)}, hdrs)
    bid = json.loads(body)["id"]
    raw(fake_openai, "GET", f"/v1/messages/batches/{bid}", headers=hdrs)
    st, _, body = raw(fake_openai, "GET", f"/v1/messages/batches/{bid}/results", headers=hdrs)
    assert fake_openai.api_key.encode() in body  # what a client must scrub


def test_openai_side_is_unchanged_by_a_prefix_free_anthropic(fake_openai):
    # both APIs are served by the same fake at once
    from openai import OpenAI

    o = OpenAI(base_url=fake_openai.base_url, api_key=fake_openai.api_key, max_retries=0)
    assert o.batches.list().data == []
    c = sdk(fake_openai)
    c.messages.batches.create(requests=requests(1))
    assert o.batches.list().data == [] and len(c.messages.batches.list().data) == 1
