"""Conformance tests of fake_provider against the official openai SDK (and raw HTTP).

Run: /work/venv/bin/python -m pytest test/python/test_fake_provider.py -q
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import openai  # noqa: E402
import pytest  # noqa: E402
from openai import OpenAI  # noqa: E402
from openai.types.chat import ChatCompletion  # noqa: E402

from fake_provider.answers import schema_answer  # noqa: E402
from fake_provider.provider import ApiError  # noqa: E402
from fake_provider.pytest_plugin import (  # noqa: E402,F401  (fixtures are used by name)
    chat_request_line,
    fake_openai,
    fake_openai_server,
    make_jsonl,
)

ENDPOINT = "/v1/chat/completions"
PL_KEYS = {"recommended_labels", "confidence", "root_cause_analysis", "current_labels_assessment", "summary"}
TERMINAL = {"completed", "failed", "expired", "cancelled"}


# ---------------------------------------------------------------------------- helpers


def sdk(fake, **kw: Any) -> OpenAI:
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", 20)
    return OpenAI(base_url=fake.base_url, api_key=kw.pop("api_key", fake.api_key), **kw)


def upload(c: OpenAI, data: bytes, name: str = "input.jsonl"):
    return c.files.create(file=(name, data, "application/jsonl"), purpose="batch")


def create(c: OpenAI, file_id: str, job: str | None = None):
    md = {"ai_batch_job_id": job} if job else None
    return c.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h", metadata=md)


def submit(c: OpenAI, n: int = 6, job: str | None = None, data: bytes | None = None):
    f = upload(c, data if data is not None else make_jsonl(n))
    return create(c, f.id, job)


def run_to_end(c: OpenAI, batch_id: str, limit: int = 10) -> tuple[Any, list[str]]:
    seen = []
    for _ in range(limit):
        b = c.batches.retrieve(batch_id)
        seen.append(b.status)
        if b.status in TERMINAL:
            return b, seen
    raise AssertionError(f"batch never finished: {seen}")


def lines_of(c: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = c.files.content(file_id).text
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_files(c: OpenAI, b, input_ids: list[str]) -> tuple[list[dict], list[dict]]:
    """The invariants every finished (non-failed) batch keeps: counts agree with files,
    every input custom_id appears exactly once, every line parses."""
    out, err = lines_of(c, b.output_file_id), lines_of(c, b.error_file_id)
    rc = b.request_counts
    assert rc.total == len(input_ids)
    assert rc.completed == len(out) and rc.failed == len(err)
    assert (b.output_file_id is None) == (rc.completed == 0)
    assert (b.error_file_id is None) == (rc.failed == 0)
    ids = [x["custom_id"] for x in out + err]
    assert sorted(ids) == sorted(input_ids)
    prompt_tokens = completion_tokens = 0
    for x in out:
        assert x["id"].startswith("batch_req_") and x["error"] is None
        assert x["response"]["status_code"] == 200 and x["response"]["request_id"].startswith("req_")
        cc = ChatCompletion.model_validate(x["response"]["body"])
        assert cc.object == "chat.completion" and cc.choices[0].message.role == "assistant"
        assert cc.usage.total_tokens == cc.usage.prompt_tokens + cc.usage.completion_tokens
        prompt_tokens += cc.usage.prompt_tokens
        completion_tokens += cc.usage.completion_tokens
    for x in err:
        assert x["id"].startswith("batch_req_")
        if x["response"] is None:
            assert x["error"]["code"] and x["error"]["message"]
        else:
            assert x["response"]["status_code"] >= 400 and x["error"] is None
            assert x["response"]["body"]["error"]["message"]
    assert b.usage.input_tokens == prompt_tokens and b.usage.output_tokens == completion_tokens
    assert b.usage.total_tokens == prompt_tokens + completion_tokens
    return out, err


def ids(n: int, prefix: str = "issue-") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def raw(fake, method: str, path: str, body: bytes | None = None, headers: dict | None = None, key: str | None = "default"):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    h = {} if key is None else {"Authorization": f"Bearer {fake.api_key if key == 'default' else key}"}
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r, data


def control(fake, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(
        fake.root_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def multipart_body(fields: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, str]:
    bnd = uuid.uuid4().hex
    out = b""
    for name, (filename, value) in fields.items():
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{bnd}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n"
    out += f"--{bnd}--\r\n".encode()
    return out, f"multipart/form-data; boundary={bnd}"


# ---------------------------------------------------------------------------- the happy path


def test_full_lifecycle_with_sdk(fake_openai):
    c = sdk(fake_openai)
    texts = [
        "Title: KOTS admin console crashes\n\nThe admin console shows a blank page.",
        "Title: support bundle hangs\n\nCollecting a support bundle never finishes. Labels: product::kots",
        "Title: kURL join fails\n\nThe kurl join script times out.",
        "Title: Embedded Cluster upgrade\n\nembedded cluster upgrade loses data; kots too.",
        "Title: typo in docs\n\nThe documentation has a typo.",
        "Title: CMX cluster create\n\ncompatibility matrix clusters fail to start.",
        "Title: nothing specific\n\nSomething is broken.",
    ]
    data = make_jsonl(len(texts), texts=texts)
    f = upload(c, data)
    assert f.object == "file" and f.id.startswith("file-") and f.purpose == "batch"
    assert f.bytes == len(data) and f.filename == "input.jsonl" and f.status == "processed"
    assert c.files.retrieve(f.id).id == f.id
    assert c.files.content(f.id).content == data

    b = create(c, f.id, job="job-1")
    assert b.object == "batch" and b.id.startswith("batch_") and b.status == "validating"
    assert b.endpoint == ENDPOINT and b.input_file_id == f.id and b.completion_window == "24h"
    assert b.metadata == {"ai_batch_job_id": "job-1"} and b.errors is None
    assert b.expires_at == b.created_at + 86400 and b.output_file_id is None

    b1 = c.batches.retrieve(b.id)
    assert b1.status == "in_progress" and b1.in_progress_at and b1.model == "gpt-4o-mini"
    assert b1.request_counts.total == len(texts)
    b2 = c.batches.retrieve(b.id)
    assert b2.status == "finalizing" and b2.finalizing_at
    b3 = c.batches.retrieve(b.id)
    assert b3.status == "completed" and b3.completed_at and b3.error_file_id is None
    assert b3.failed_at is b3.expired_at is b3.cancelled_at is None
    assert c.batches.retrieve(b.id).status == "completed"  # terminal stays terminal

    out, err = check_files(c, b3, ids(len(texts)))
    assert not err
    of = c.files.retrieve(b3.output_file_id)
    assert of.purpose == "batch_output" and of.bytes == len(c.files.content(of.id).content)

    labels = {}
    for x in out:
        msg = x["response"]["body"]["choices"][0]["message"]
        assert x["response"]["body"]["choices"][0]["finish_reason"] == "stop" and msg["refusal"] is None
        ans = json.loads(msg["content"])
        assert set(ans) == PL_KEYS
        assert 0.0 <= ans["confidence"] <= 1.0
        assert all(set(r) == {"label", "reasoning"} for r in ans["recommended_labels"])
        labels[x["custom_id"]] = ans["recommended_labels"][0]["label"]
    assert labels == {
        "issue-0": "product::kots",
        "issue-1": "product::troubleshoot",
        "issue-2": "product::kurl",
        "issue-3": "product::embedded-cluster",
        "issue-4": "product::docs",
        "issue-5": "product::compatibility-matrix",
        "issue-6": "product::kots",
    }
    # answers are deterministic
    b_again = submit(c, data=data)
    out2, _ = check_files(c, run_to_end(c, b_again.id)[0], ids(len(texts)))
    content = lambda lines: {x["custom_id"]: x["response"]["body"]["choices"][0]["message"]["content"] for x in lines}  # noqa: E731
    assert content(out) == content(out2)

    deleted = c.files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve(f.id)

    st = fake_openai.state()
    assert st["counts"]["uploads"] == 2 and st["counts"]["batch_creates"] == 2
    assert st["counts"]["creates_by_job"] == {"job-1": 1}


USER_SCHEMA = {
    "type": "object",
    "properties": {
        "a": {"type": "string"},
        "n": {"type": "integer"},
        "x": {"type": "number"},
        "ok": {"type": "boolean"},
        "kind": {"type": "string", "enum": ["bug", "feature", "question"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "nested": {
            "type": "object",
            "properties": {"items": {"type": "array", "items": {
                "type": "object", "properties": {"v": {"type": "string", "enum": ["p", "q"]}},
                "required": ["v"], "additionalProperties": False}}},
            "required": ["items"],
            "additionalProperties": False,
        },
    },
    "required": ["a", "n", "x", "ok", "kind", "tags", "nested"],
    "additionalProperties": False,
}


def test_results_are_not_in_input_order_and_other_schemas(fake_openai):
    c = sdk(fake_openai)
    b, _ = run_to_end(c, submit(c, 40).id)
    out, _ = check_files(c, b, ids(40))
    assert [x["custom_id"] for x in out] != ids(40)  # shuffled by default: match by custom_id
    # non-product-labeling requests (user-defined processors): a valid answer for the
    # request's own strict schema, deterministic per message; text otherwise
    line_schema = json.dumps(
        {
            "custom_id": "s1",
            "method": "POST",
            "url": ENDPOINT,
            "body": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "hello"}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "other",
                        "strict": True,
                        "schema": USER_SCHEMA,
                    },
                },
            },
        }
    )
    line_text = chat_request_line("t1", "just chat", product_labeling=False).replace("product labeling", "chatting")
    b, _ = run_to_end(c, submit(c, data=(line_schema + "\n" + line_text + "\n").encode()).id)
    out, _ = check_files(c, b, ["s1", "t1"])
    got = {x["custom_id"]: x["response"]["body"]["choices"][0]["message"]["content"] for x in out}
    answer = json.loads(got["s1"])
    assert answer == schema_answer(USER_SCHEMA, "hello")
    assert set(answer) == set(USER_SCHEMA["properties"])
    assert answer["kind"] in ("bug", "feature", "question") and answer["a"] == "hello"
    assert isinstance(answer["n"], int) and 0 <= answer["n"] <= 9
    assert isinstance(answer["x"], float) and 0 <= answer["x"] <= 1 and isinstance(answer["ok"], bool)
    assert answer["tags"] == ["hello"] and answer["nested"]["items"][0]["v"] in ("p", "q")
    assert got["t1"].startswith("Fake answer")


# ---------------------------------------------------------------------------- auth, headers, errors


def test_auth_and_error_envelope(fake_openai):
    with pytest.raises(openai.AuthenticationError) as ei:
        sdk(fake_openai, api_key="sk-wrong-key-123456").batches.list()
    assert ei.value.status_code == 401 and ei.value.code == "invalid_api_key"
    assert "sk-wrong-key-123456" not in str(ei.value)  # the key is masked
    r, body = raw(fake_openai, "GET", "/v1/batches", key=None)
    assert r.status == 401 and r.getheader("x-request-id").startswith("req_")
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_api_key" and err["param"] is None
    r, _ = raw(fake_openai, "GET", "/v1/batches")
    assert r.status == 200 and r.getheader("x-request-id").startswith("req_")

    c = sdk(fake_openai)
    with pytest.raises(openai.NotFoundError):
        c.batches.retrieve("batch_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve("file-doesnotexist")
    with pytest.raises(openai.NotFoundError):
        c.files.content("file-doesnotexist")
    with pytest.raises(openai.NotFoundError):
        c.batches.cancel("batch_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        create(c, "file-doesnotexist")
    r, body = raw(fake_openai, "GET", "/v1/nothing")
    assert r.status == 404 and "Invalid URL" in json.loads(body)["error"]["message"]
    assert fake_openai.state()["counts"]["auth_failures"] == 2


def test_bad_params(fake_openai):
    c = sdk(fake_openai)
    f = upload(c, make_jsonl(2))
    with pytest.raises(openai.BadRequestError) as ei:
        c.batches.create(input_file_id=f.id, endpoint="/v1/nope", completion_window="24h")  # type: ignore[arg-type]
    assert ei.value.param == "endpoint"
    with pytest.raises(openai.BadRequestError) as ei:
        c.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="48h")  # type: ignore[arg-type]
    assert ei.value.param == "completion_window"
    with pytest.raises(openai.BadRequestError):
        c.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h", metadata={"k": "v" * 513})
    with pytest.raises(openai.BadRequestError):
        c.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h", metadata={f"k{i}": "v" for i in range(17)})
    with pytest.raises(openai.BadRequestError) as ei:
        c.batches.list(limit=101)
    assert ei.value.param == "limit"
    with pytest.raises(openai.BadRequestError):
        c.files.create(file=("input.txt", b'{"a": 1}\n'), purpose="batch")  # must be .jsonl
    fu = c.files.create(file=("notes.jsonl", make_jsonl(1)), purpose="user_data")
    with pytest.raises(openai.BadRequestError):  # input file must have purpose batch
        create(c, fu.id)
    r, body = raw(fake_openai, "POST", "/v1/batches", b"{not json", {"Content-Type": "application/json"})
    assert r.status == 400
    r, body = raw(fake_openai, "POST", "/v1/batches", b"{}", {"Content-Type": "application/json"})
    assert r.status == 400 and json.loads(body)["error"]["code"] == "missing_required_parameter"


def test_upload_multipart_validation(fake_openai):
    data = make_jsonl(3)
    body, ctype = multipart_body({"file": ("in.jsonl", data)})
    r, resp = raw(fake_openai, "POST", "/v1/files", body, {"Content-Type": ctype})
    assert r.status == 400 and json.loads(resp)["error"]["param"] == "purpose"
    body, ctype = multipart_body({"purpose": (None, b"batch")})
    r, resp = raw(fake_openai, "POST", "/v1/files", body, {"Content-Type": ctype})
    assert r.status == 400 and json.loads(resp)["error"]["param"] == "file"
    r, resp = raw(fake_openai, "POST", "/v1/files", b"purpose=batch", {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400
    # a file containing CRLFs and the boundary-like text '--' is kept byte for byte
    tricky = data + b"\r\n--not-a-boundary\r\n"
    body, ctype = multipart_body({"purpose": (None, b"batch"), "file": ("in.jsonl", tricky)})
    r, resp = raw(fake_openai, "POST", "/v1/files", body, {"Content-Type": ctype})
    assert r.status == 200
    fid = json.loads(resp)["id"]
    r, content = raw(fake_openai, "GET", f"/v1/files/{fid}/content")
    assert content == tricky and r.getheader("Content-Type") == "application/octet-stream"
    # chunked transfer encoding (what streaming clients send)
    body, ctype = multipart_body({"purpose": (None, b"batch"), "file": ("in.jsonl", data)})
    conn = http.client.HTTPConnection("127.0.0.1", fake_openai.port, timeout=10)
    conn.putrequest("POST", "/v1/files")
    conn.putheader("Authorization", f"Bearer {fake_openai.api_key}")
    conn.putheader("Content-Type", ctype)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(body), 1000):
        chunk = body[i : i + 1000]
        conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    meta = json.loads(r.read())
    conn.close()
    assert r.status == 200 and meta["bytes"] == len(data)


# ---------------------------------------------------------------------------- list / pagination


def test_list_pagination(fake_openai):
    c = sdk(fake_openai)
    f = upload(c, make_jsonl(2))
    created = [create(c, f.id, job=f"job-{i}").id for i in range(7)]
    newest_first = created[::-1]
    page = c.batches.list(limit=3)
    assert [b.id for b in page.data] == newest_first[:3] and page.has_more is True
    r, body = raw(fake_openai, "GET", "/v1/batches?limit=3")
    lst = json.loads(body)
    assert lst["object"] == "list" and lst["first_id"] == newest_first[0] and lst["last_id"] == newest_first[2]
    page2 = c.batches.list(limit=3, after=newest_first[2])
    assert [b.id for b in page2.data] == newest_first[3:6] and page2.has_more is True
    page3 = c.batches.list(limit=3, after=newest_first[5])
    assert [b.id for b in page3.data] == newest_first[6:] and page3.has_more is False
    assert [b.id for b in c.batches.list(limit=3)] == newest_first  # SDK auto-pagination
    assert [b.id for b in c.batches.list()] == newest_first  # default limit 20
    # listing does not advance batches (only retrieves do, in per-retrieve mode)
    assert {b.status for b in c.batches.list()} == {"validating"}
    assert fake_openai.state()["counts"]["list_calls"] >= 7
    assert [x.id for x in c.files.list(purpose="batch")] == [f.id]


# ---------------------------------------------------------------------------- cancel


def test_cancel_in_progress_keeps_partial_results(fake_openai):
    c = sdk(fake_openai)
    b = submit(c, 10)
    assert c.batches.retrieve(b.id).status == "in_progress"
    cb = c.batches.cancel(b.id)
    assert cb.status == "cancelling" and cb.cancelling_at
    assert c.batches.cancel(b.id).status == "cancelling"  # idempotent while cancelling
    done, seen = run_to_end(c, b.id)
    assert seen == ["cancelled"] and done.cancelled_at
    out, err = check_files(c, done, ids(10))
    assert len(out) == 5 and len(err) == 5
    assert {x["error"]["code"] for x in err} == {"batch_cancelled"}
    with pytest.raises(openai.ConflictError):
        c.batches.cancel(b.id)
    st = fake_openai.state()
    assert st["counts"]["cancels"] == 3 and st["counts"]["cancels_by_batch"] == {b.id: 3}


def test_cancel_while_validating_processes_nothing(fake_openai):
    c = sdk(fake_openai)
    b = submit(c, 4)
    assert c.batches.cancel(b.id).status == "cancelling"
    done, _ = run_to_end(c, b.id)
    assert done.status == "cancelled" and done.output_file_id is None
    _, err = check_files(c, done, ids(4))
    assert len(err) == 4


# ---------------------------------------------------------------------------- outcomes


def test_outcome_completed_mixed(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batch={"outcome": "completed_mixed", "fail_every": 3})
    b, seen = run_to_end(c, submit(c, 12).id)
    assert seen == ["in_progress", "finalizing", "completed"]
    out, err = check_files(c, b, ids(12))
    assert sorted(x["custom_id"] for x in err) == sorted(f"issue-{i}" for i in (2, 5, 8, 11))
    kinds = {(x["response"] or {}).get("status_code") or x["error"]["code"] for x in err}
    assert kinds == {500, 400, "request_timeout"}
    # by custom_id list
    fake_openai.configure(next_batch={"outcome": "completed_mixed", "fail_custom_ids": ["issue-0"], "fail_kinds": ["context_length"]})
    b, _ = run_to_end(c, submit(c, 3).id)
    _, err = check_files(c, b, ids(3))
    assert [x["custom_id"] for x in err] == ["issue-0"]
    assert err[0]["response"]["body"]["error"]["code"] == "context_length_exceeded"


def test_outcome_all_failed(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batch={"outcome": "all_failed"})
    b, _ = run_to_end(c, submit(c, 5).id)
    assert b.status == "completed" and b.output_file_id is None and b.request_counts.failed == 5
    check_files(c, b, ids(5))


def test_outcome_expired(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batch={"outcome": "expired", "partial_fraction": 0.4})
    b, seen = run_to_end(c, submit(c, 10).id)
    assert seen == ["in_progress", "expired"] and b.expired_at
    out, err = check_files(c, b, ids(10))
    assert len(out) == 4 and {x["error"]["code"] for x in err} == {"batch_expired"}


def test_outcome_cancelled_by_provider(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batch={"outcome": "cancelled"})
    b, seen = run_to_end(c, submit(c, 6).id)
    assert seen == ["in_progress", "cancelling", "cancelled"]
    out, err = check_files(c, b, ids(6))
    assert len(out) == 3 and len(err) == 3


def test_outcome_invalid_answers(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batch={"outcome": "invalid_answers", "invalid_kinds": ["refusal", "length", "malformed", "schema"]})
    b, _ = run_to_end(c, submit(c, 8).id)
    out, err = check_files(c, b, ids(8))
    assert not err
    by_kind: dict[str, int] = {}
    for x in out:
        choice = x["response"]["body"]["choices"][0]
        msg = choice["message"]
        if msg["refusal"]:
            assert msg["content"] is None
            kind = "refusal"
        elif choice["finish_reason"] == "length":
            kind = "length"
        else:
            try:
                ans = json.loads(msg["content"])
            except ValueError:
                kind = "malformed"
            else:
                assert set(ans) != PL_KEYS or not isinstance(ans["confidence"], float)
                kind = "schema"
        if kind == "length":
            with pytest.raises(ValueError):
                json.loads(msg["content"])
        by_kind[kind] = by_kind.get(kind, 0) + 1
    assert by_kind == {"refusal": 2, "length": 2, "malformed": 2, "schema": 2}
    # only some lines invalid
    fake_openai.configure(next_batch={"outcome": "invalid_answers", "invalid_every": 2, "invalid_kinds": ["malformed"]})
    b, _ = run_to_end(c, submit(c, 4).id)
    out, _ = check_files(c, b, ids(4))
    valid = 0
    for x in out:
        try:
            valid += set(json.loads(x["response"]["body"]["choices"][0]["message"]["content"])) == PL_KEYS
        except ValueError:
            pass
    assert valid == 2


def test_outcome_failed_validation_and_token_limit(fake_openai):
    c = sdk(fake_openai)
    errs = [{"code": "invalid_request", "line": 2, "message": "boom", "param": "body"}]
    fake_openai.configure(next_batches=[{"outcome": "failed_validation", "validation_errors": errs}, {"outcome": "token_limit_exceeded"}])
    b, seen = run_to_end(c, submit(c, 3).id)
    assert seen == ["failed"] and b.failed_at and b.output_file_id is None and b.error_file_id is None
    assert b.errors.object == "list" and [e.model_dump() for e in b.errors.data] == errs
    assert b.request_counts.total == 0
    b, _ = run_to_end(c, submit(c, 3).id)
    assert b.status == "failed" and b.errors.data[0].code == "token_limit_exceeded" and b.errors.data[0].line is None
    b, _ = run_to_end(c, submit(c, 3).id)  # the queue is used up: back to the default
    assert b.status == "completed"


def test_queue_limits_refuse_as_openai_words_it_and_record_the_peak(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(advance="per-retrieve", next_batches=[{"hold_at": "in_progress"}])
    first = submit(c, 3).id
    assert c.batches.retrieve(first).status == "in_progress"
    held = fake_openai.state()["counts"]["enqueued_peak"]["gpt-4o-mini"]
    assert held > 0
    # Room for what is held plus a little: the next batch of 3 does not fit.
    fake_openai.configure(max_enqueued_tokens=held + 1)
    b, _ = run_to_end(c, submit(c, 3).id)
    assert b.status == "failed" and b.request_counts.total == 0
    e = b.errors.data[0]
    assert (e.code, e.line, e.param) == ("token_limit_exceeded", None, None)
    assert e.message == (f"Enqueued token limit reached for gpt-4o-mini in organization org-fake. "
                         f"Limit: {held + 1:,} enqueued tokens. Please try again once some in_progress "
                         "batches have been completed.")
    # The request limit, worded the same way.
    fake_openai.configure(max_enqueued_tokens=0, max_enqueued_requests=4)
    b, _ = run_to_end(c, submit(c, 3).id)
    assert b.errors.data[0].code == "request_limit_exceeded"
    assert b.errors.data[0].message.startswith("Enqueued request limit reached for gpt-4o-mini in organization org-fake. "
                                               "Limit: 4 enqueued requests.")
    st = fake_openai.state()["counts"]
    assert st["limit_refusals"] == 2
    # Once the held batch ends, the same batch fits; the peak never passed a limit in force.
    control(fake_openai, f"/_fake/batches/{first}", {"hold_at": None})
    assert run_to_end(c, first)[0].status == "completed"
    b, _ = run_to_end(c, submit(c, 3).id)
    assert b.status == "completed"
    st = fake_openai.state()["counts"]
    assert st["enqueued_requests_peak"]["gpt-4o-mini"] == 3 and st["limit_refusals"] == 2


@pytest.mark.parametrize(
    "lines, code, line_no",
    [
        (lambda ok: [ok(0), "{not json", ok(2)], "invalid_json_line", 2),
        (lambda ok: [ok(0), ok(1), ok(0)], "duplicate_custom_id", 3),
        (lambda ok: [ok(0), ok(1).replace("gpt-4o-mini", "gpt-4o")], "mismatched_model", 2),
        (lambda ok: [ok(0).replace('"/v1/chat/completions"', '"/v1/embeddings"')], "invalid_url", 1),
        (lambda ok: [ok(0).replace('"POST"', '"GET"')], "invalid_method", 1),
        (lambda ok: [ok(0).replace('"custom_id"', '"customid"')], "missing_required_parameter", 1),
        (lambda ok: ["", "  "], "empty_file", None),
    ],
)
def test_input_validation_errors(fake_openai, lines, code, line_no):
    c = sdk(fake_openai)
    ok = lambda i: chat_request_line(f"issue-{i}", "kots")  # noqa: E731
    data = ("\n".join(lines(ok)) + "\n").encode()
    b, seen = run_to_end(c, submit(c, data=data).id)
    assert seen == ["failed"]
    e = b.errors.data[0]
    assert (e.code, e.line) == (code, line_no) and e.message


def test_too_many_requests(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(max_requests_per_batch=3)
    b, _ = run_to_end(c, submit(c, 4).id)
    assert b.status == "failed" and b.errors.data[0].code == "exceeded_max_requests"


def test_behaviour_by_job_id_and_control_api(fake_openai):
    c = sdk(fake_openai)
    cfg = control(fake_openai, "/_fake/config", {"jobs": {"job-bad": {"outcome": "all_failed"}, "split-*": {"outcome": "expired"}}})
    assert "job-bad" in cfg["jobs"] and "sk-fake-test-key" not in json.dumps(cfg)
    f = upload(c, make_jsonl(4))
    good, bad, part = create(c, f.id, "job-good"), create(c, f.id, "job-bad"), create(c, f.id, "split-7")
    assert run_to_end(c, good.id)[0].request_counts.failed == 0
    assert run_to_end(c, bad.id)[0].request_counts.completed == 0
    assert run_to_end(c, part.id)[0].status == "expired"
    st = control(fake_openai, "/_fake/state")
    assert st["counts"]["creates_by_job"] == {"job-good": 1, "job-bad": 1, "split-7": 1}
    assert st["counts"]["retrieves"] == 8 and st["counts"]["uploads"] == 1
    assert {b["_fake"]["job_id"] for b in st["batches"]} == {"job-good", "job-bad", "split-7"}
    with pytest.raises(urllib.error.HTTPError) as ei:
        control(fake_openai, "/_fake/config", {"next_batch": {"outcome": "nope"}})
    assert ei.value.code == 400
    control(fake_openai, "/_fake/reset", {})
    st = control(fake_openai, "/_fake/state")
    assert st["batches"] == [] and st["files"] == [] and st["counts"]["uploads"] == 0


def test_advance_modes_and_hold(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(advance="immediate")
    b, seen = run_to_end(c, submit(c, 3).id)
    assert seen == ["completed"]
    fake_openai.configure(advance="per-retrieve", next_batch={"hold_at": "in_progress"})
    b = submit(c, 3)
    assert [c.batches.retrieve(b.id).status for _ in range(3)] == ["in_progress"] * 3
    view = control(fake_openai, f"/_fake/batches/{b.id}", {"hold_at": None})
    assert view["_fake"]["behaviour"]["hold_at"] is None
    assert run_to_end(c, b.id)[1] == ["finalizing", "completed"]
    fake_openai.configure(next_batch={"retrieves_per_step": 2})
    b = submit(c, 3)
    assert [c.batches.retrieve(b.id).status for _ in range(4)] == ["validating", "in_progress", "in_progress", "finalizing"]
    fake_openai.configure(advance="timed", step_seconds=0.05)
    b = submit(c, 3)
    time.sleep(0.35)
    assert c.batches.retrieve(b.id).status == "completed"
    # control API can also force steps
    fake_openai.configure(advance="per-retrieve")
    b = submit(c, 3)
    view = control(fake_openai, f"/_fake/batches/{b.id}", {"step": 10})
    assert view["status"] == "completed"


def test_validation_deferred_to_first_poll(fake_openai):
    """validate=on-first-poll: nothing parses the input file until the batch is polled,
    then the batch runs as usual (the benchmark's mode)."""
    c = sdk(fake_openai)
    fake_openai.configure(validate="on-first-poll", advance="immediate")
    b = submit(c, 5)
    time.sleep(0.3)  # an on-create validation of 5 lines would be long done
    view = control(fake_openai, f"/_fake/batches/{b.id}")
    assert view["status"] == "validating" and view["_fake"]["requests"] is None
    done = c.batches.retrieve(b.id)
    assert done.status == "completed" and done.request_counts.completed == 5
    fake_openai.configure(validate="on-create")
    b = submit(c, 4)
    deadline = time.monotonic() + 5
    while control(fake_openai, f"/_fake/batches/{b.id}")["_fake"]["requests"] is None:
        assert time.monotonic() < deadline, "on-create validation never ran"
        time.sleep(0.02)
    assert control(fake_openai, f"/_fake/batches/{b.id}")["_fake"]["requests"] == 4
    with pytest.raises(urllib.error.HTTPError):
        control(fake_openai, "/_fake/config", {"validate": "later"})


def test_duplicate_and_unknown_custom_ids_in_output(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batch={"duplicate_custom_ids": 2, "unknown_custom_ids": 1, "output_order": "input"})
    b, _ = run_to_end(c, submit(c, 4).id)
    out = lines_of(c, b.output_file_id)
    got = [x["custom_id"] for x in out]
    assert got == ["issue-0", "issue-1", "issue-2", "issue-3", "issue-0", "issue-1", "unknown-0"]
    assert b.request_counts.completed == 4 and len({x["id"] for x in out}) == len(out)


# ---------------------------------------------------------------------------- faults


def test_sdk_retries_recover_from_429_and_500(fake_openai):
    c = sdk(fake_openai, max_retries=2)
    fake_openai.configure(
        faults=[
            {"kind": "rate_limit", "method": "POST", "path": "/v1/files", "retry_after_ms": 20},
            {"kind": "server_error", "method": "POST", "path": "/v1/batches", "count": 2, "headers": {"retry-after-ms": "10"}},
        ]
    )
    b = submit(c, 2)
    assert b.status == "validating"
    st = fake_openai.state()
    assert st["counts"]["faults_fired"] == 3 and st["counts"]["batch_creates"] == 1 and st["config"]["faults"] == []
    statuses = [(r["path"], r["status"]) for r in st["requests"]]
    assert statuses == [("/v1/files", 429), ("/v1/files", 200), ("/v1/batches", 500), ("/v1/batches", 500), ("/v1/batches", 200)]
    # without retries the error surfaces with the right class
    c0 = sdk(fake_openai)
    fake_openai.configure(faults=[{"kind": "rate_limit", "path": "/v1/batches/"}])
    with pytest.raises(openai.RateLimitError) as ei:
        c0.batches.retrieve(b.id)
    assert ei.value.code == "rate_limit_exceeded"


@pytest.mark.parametrize(
    "kind, exc, status",
    [
        ("insufficient_quota", openai.RateLimitError, 429),
        ("unauthorized", openai.AuthenticationError, 401),
        ("forbidden", openai.PermissionDeniedError, 403),
        ("not_found", openai.NotFoundError, 404),
        ("server_error", openai.InternalServerError, 500),
        ("bad_gateway", openai.InternalServerError, 502),
        ("service_unavailable", openai.InternalServerError, 503),
    ],
)
def test_error_presets(fake_openai, kind, exc, status):
    c = sdk(fake_openai)
    fake_openai.configure(fault={"kind": kind, "method": "GET", "path": "/v1/batches"})
    with pytest.raises(exc) as ei:
        c.batches.list()
    assert ei.value.status_code == status
    if kind == "insufficient_quota":
        assert ei.value.code == "insufficient_quota" and ei.value.type == "insufficient_quota"
    assert c.batches.list().data == []  # only the next matching request is affected


def test_retry_after_header_forms(fake_openai):
    fake_openai.configure(
        faults=[
            {"kind": "rate_limit", "path": "/v1/batches", "retry_after": 7},
            {"kind": "rate_limit", "path": "/v1/batches", "retry_after_ms": 1500},
            {"kind": "service_unavailable", "path": "/v1/batches", "retry_after_date": 30},
            {"kind": "status", "status": 418, "code": "teapot", "message": "short and stout", "path": "/v1/batches"},
        ]
    )
    r, body = raw(fake_openai, "GET", "/v1/batches")
    assert r.status == 429 and r.getheader("Retry-After") == "7" and r.getheader("retry-after-ms") is None
    assert json.loads(body)["error"]["type"] == "requests"
    r, _ = raw(fake_openai, "GET", "/v1/batches")
    assert r.status == 429 and r.getheader("retry-after-ms") == "1500" and r.getheader("Retry-After") is None
    r, _ = raw(fake_openai, "GET", "/v1/batches")
    assert r.status == 503
    when = email.utils.parsedate_to_datetime(r.getheader("Retry-After")).timestamp()
    assert 25 <= when - time.time() <= 32
    r, body = raw(fake_openai, "GET", "/v1/batches")
    assert r.status == 418 and json.loads(body)["error"]["code"] == "teapot"
    assert raw(fake_openai, "GET", "/v1/batches")[0].status == 200


def test_skip_and_count_and_method_matching(fake_openai):
    fake_openai.configure(fault={"kind": "server_error", "method": "GET", "path": "/v1/batches", "skip": 1, "count": 2})
    assert raw(fake_openai, "POST", "/v1/batches", b"{}")[0].status == 400  # method does not match
    got = [raw(fake_openai, "GET", "/v1/batches")[0].status for _ in range(4)]
    assert got == [200, 500, 500, 200]


def test_delay_fault(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(fault={"kind": "delay", "delay": 0.4, "path": "/v1/batches"})
    t = time.monotonic()
    c.batches.list()
    assert time.monotonic() - t >= 0.4
    fake_openai.configure(fault={"kind": "delay", "delay": 1.0, "path": "/v1/batches"})
    with pytest.raises(openai.APITimeoutError):
        sdk(fake_openai, timeout=0.3).batches.list()


@pytest.mark.parametrize("how", ["reset", "close"])
def test_connection_dropped_before_and_after_action(fake_openai, how):
    c = sdk(fake_openai)
    f = upload(c, make_jsonl(2))
    fake_openai.configure(fault={"kind": how, "method": "POST", "path": "/v1/batches"})
    with pytest.raises(openai.APIConnectionError):
        create(c, f.id, "job-x")
    assert fake_openai.state()["counts"]["batch_creates"] == 0
    # after the action: the batch exists, the client only saw the connection drop
    fake_openai.configure(fault={"kind": how, "method": "POST", "path": "/v1/batches", "after_action": True})
    with pytest.raises(openai.APIConnectionError):
        create(c, f.id, "job-x")
    st = fake_openai.state()
    assert st["counts"]["batch_creates"] == 1 and st["counts"]["creates_by_job"] == {"job-x": 1}
    assert [b.metadata["ai_batch_job_id"] for b in c.batches.list()] == ["job-x"]
    # an SDK with retries recovers (and, after the action, creates a duplicate: the client must dedupe)
    fake_openai.configure(fault={"kind": how, "method": "POST", "path": "/v1/batches", "after_action": True})
    sdk(fake_openai, max_retries=1).batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h", metadata={"ai_batch_job_id": "job-x"})
    assert fake_openai.state()["counts"]["creates_by_job"] == {"job-x": 3}


def test_error_status_after_action(fake_openai):
    c = sdk(fake_openai)
    f = upload(c, make_jsonl(2))
    fake_openai.configure(fault={"kind": "server_error", "method": "POST", "path": "/v1/batches", "after_action": True})
    with pytest.raises(openai.InternalServerError):
        create(c, f.id, "job-y")
    assert fake_openai.state()["counts"]["creates_by_job"] == {"job-y": 1}


def test_delayed_create_lands_after_the_client_gave_up(fake_openai):
    """A slow create (delay fault on POST /v1/batches): the SDK times out, the batch is
    not listed until the provider finishes the create, then it is, with its metadata."""
    c = sdk(fake_openai)
    f = upload(c, make_jsonl(2))
    fake_openai.configure(fault={"kind": "delay", "delay": 1.0, "method": "POST", "path": "/v1/batches"})
    t = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        sdk(fake_openai, timeout=0.3).batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h",
                                                     metadata={"ai_batch_job_id": "job-slow"})
    assert list(c.batches.list()) == []
    time.sleep(max(0.0, t + 1.3 - time.monotonic()))
    listed = list(c.batches.list())
    assert [(b.metadata["ai_batch_job_id"], b.input_file_id) for b in listed] == [("job-slow", f.id)]


def test_create_from_a_deleted_file_is_refused(fake_openai):
    """A batch is created from exactly one uploaded file: once that file is deleted, a
    create naming it (even one already in flight) is refused and makes no batch."""
    c = sdk(fake_openai)
    f = upload(c, make_jsonl(2))
    assert c.files.delete(f.id).deleted
    with pytest.raises(openai.NotFoundError) as ei:
        create(c, f.id, "job-gone")
    assert ei.value.status_code == 404 and f.id in ei.value.message
    # in flight: the file is deleted while the provider is still working on the create
    g = upload(c, make_jsonl(2))
    fake_openai.configure(fault={"kind": "delay", "delay": 0.8, "method": "POST", "path": "/v1/batches"})
    with pytest.raises(openai.APITimeoutError):
        sdk(fake_openai, timeout=0.2).batches.create(input_file_id=g.id, endpoint=ENDPOINT, completion_window="24h")
    c.files.delete(g.id)
    time.sleep(1.0)
    st = fake_openai.state()
    assert st["counts"]["batch_creates"] == 0 and list(c.batches.list()) == []
    assert [r["status"] for r in st["requests"] if r["method"] == "POST" and r["path"] == "/v1/batches"] == [404, 404]


def test_list_without_metadata(fake_openai):
    """list_omits_metadata: a gateway that lists batches without `metadata` (retrieve keeps it)."""
    c = sdk(fake_openai)
    b = submit(c, 2, job="job-meta")
    fake_openai.configure(list_omits_metadata=True)
    listed = list(c.batches.list())
    assert [x.id for x in listed] == [b.id] and listed[0].metadata is None
    assert "metadata" not in json.loads(c.batches.with_raw_response.list().text)["data"][0]
    assert c.batches.retrieve(b.id).metadata == {"ai_batch_job_id": "job-meta"}


def test_report_an_unknown_status(fake_openai):
    """report_status: the API shows any status (here one the SDK does not know) and the
    batch waits; cleared, it goes on."""
    c = sdk(fake_openai)
    b = submit(c, 3, job="job-paused")
    view = control(fake_openai, f"/_fake/batches/{b.id}", {"report_status": "paused"})
    assert view["_fake"]["behaviour"]["report_status"] == "paused" and view["status"] == "validating"
    for _ in range(3):
        assert c.batches.retrieve(b.id).status == "paused"
    assert [x.status for x in c.batches.list()] == ["paused"]
    assert control(fake_openai, f"/_fake/batches/{b.id}")["status"] == "validating"
    control(fake_openai, f"/_fake/batches/{b.id}", {"report_status": None})
    done, seen = run_to_end(c, b.id)
    assert done.status == "completed" and "paused" not in seen
    with pytest.raises(ApiError, match="report_status"):
        fake_openai.configure(next_batch={"report_status": 7})
    fake_openai.configure(next_batch={"report_status": "queued_for_capacity"})
    assert submit(c, 2).status == "queued_for_capacity"


def test_truncated_download(fake_openai):
    c = sdk(fake_openai)
    b, _ = run_to_end(c, submit(c, 5).id)
    full = c.files.content(b.output_file_id).content
    path = f"/v1/files/{b.output_file_id}/content"
    fake_openai.configure(fault={"kind": "truncate", "path": path, "truncate_bytes": 100})
    conn = http.client.HTTPConnection("127.0.0.1", fake_openai.port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {fake_openai.api_key}"})
    r = conn.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length")) == len(full)
    with pytest.raises(http.client.IncompleteRead) as ei:
        r.read()
    assert len(ei.value.partial) == 100
    conn.close()
    fake_openai.configure(fault={"kind": "truncate", "path": path, "truncate_fraction": 0.5})
    with pytest.raises(openai.APIConnectionError):
        c.files.content(b.output_file_id).content
    assert c.files.content(b.output_file_id).content == full  # next download is complete


# ---------------------------------------------------------------------------- result files gone or bad, key echoed


@pytest.mark.parametrize("missing", [["output"], ["error"], ["output", "error"]])
def test_missing_result_files_answer_404_like_expired_files(fake_openai, missing):
    c = sdk(fake_openai)
    fake_openai.configure(next_batch={"outcome": "completed_mixed", "fail_every": 2, "missing_files": missing})
    b, _ = run_to_end(c, submit(c, 6).id)
    # The batch still names both files and counts their lines ...
    assert b.output_file_id and b.error_file_id
    assert (b.request_counts.completed, b.request_counts.failed) == (3, 3)
    for kind in ("output", "error"):
        fid = getattr(b, f"{kind}_file_id")
        if kind in missing:
            # ... but a missing file is gone, as an expired file is at OpenAI.
            with pytest.raises(openai.NotFoundError) as ei:
                c.files.content(fid)
            assert ei.value.status_code == 404 and fid in ei.value.message
            with pytest.raises(openai.NotFoundError):
                c.files.retrieve(fid)
        else:
            assert len(lines_of(c, fid)) == 3
    with pytest.raises(urllib.error.HTTPError):
        control(fake_openai, "/_fake/config", {"next_batch": {"missing_files": ["input"]}})


def test_cut_output_file_ends_mid_line_with_a_consistent_length(fake_openai):
    c = sdk(fake_openai)
    fake_openai.configure(next_batch={"cut_output_file": 0.5, "output_order": "input"})
    b, _ = run_to_end(c, submit(c, 6).id)
    assert b.request_counts.completed == 6
    r, data = raw(fake_openai, "GET", f"/v1/files/{b.output_file_id}/content")
    assert r.status == 200 and int(r.getheader("Content-Length")) == len(data)
    assert not data.endswith(b"\n")
    lines = data.split(b"\n")
    assert 1 < len(lines) < 6
    for line in lines[:-1]:
        json.loads(line)
    with pytest.raises(ValueError):
        json.loads(lines[-1])
    assert c.files.content(b.output_file_id).content == data
    for bad in (0, 1, True, "half"):
        with pytest.raises(urllib.error.HTTPError):
            control(fake_openai, "/_fake/config", {"next_batch": {"cut_output_file": bad}})


def test_html_page_with_status_200_in_place_of_a_file(fake_openai):
    c = sdk(fake_openai)
    b, _ = run_to_end(c, submit(c, 2).id)
    page = "<!DOCTYPE html>\n<html><body>Service is being updated</body></html>\n"
    path = f"/v1/files/{b.output_file_id}/content"
    fake_openai.configure(fault={"kind": "status", "status": 200, "body": page, "content_type": "text/html",
                                 "path": path})
    content = c.files.content(b.output_file_id)
    assert content.response.status_code == 200 and content.response.headers["content-type"] == "text/html"
    assert content.text == page
    assert len(lines_of(c, b.output_file_id)) == 2  # one request only


def test_echo_authorization_in_errors_and_error_lines(fake_openai):
    key = fake_openai.api_key
    c = sdk(fake_openai)
    fake_openai.configure(next_batches=[{"outcome": "failed_validation", "echo_authorization": True},
                                        {"outcome": "completed_mixed", "fail_every": 2, "echo_authorization": True,
                                         "fail_kinds": ["server_error", "request_timeout"]},
                                        {"outcome": "completed_mixed", "fail_every": 2}])
    b, _ = run_to_end(c, submit(c, 3).id)
    assert b.status == "failed"
    assert b.errors.data[0].message.endswith(f"(request header Authorization: Bearer {key})")
    b, _ = run_to_end(c, submit(c, 4).id)
    _, err = check_files(c, b, ids(4))
    msgs = [x["error"]["message"] if x["response"] is None else x["response"]["body"]["error"]["message"] for x in err]
    assert len(msgs) == 2 and all(m.endswith(f"Authorization: Bearer {key})") for m in msgs), msgs
    b, _ = run_to_end(c, submit(c, 4).id)  # off by default
    _, err = check_files(c, b, ids(4))
    assert key not in json.dumps(err)


# ---------------------------------------------------------------------------- CLI and data dir


def test_cli_port_file_data_dir_and_sigterm(tmp_path):
    port_file = tmp_path / "fake.port"
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fake_provider", "--port", "0", "--port-file", str(port_file), "--api-key", "sk-cli", "--data-dir", str(data_dir), "--advance", "immediate"],
        cwd=str(ROOT),
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "port file never written"
            time.sleep(0.05)
        port = int(port_file.read_text())
        c = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-cli", max_retries=0, timeout=10)
        f = upload(c, make_jsonl(3))
        assert (data_dir / f.id).read_bytes() == make_jsonl(3)
        b = create(c, f.id)
        done = c.batches.retrieve(b.id)
        assert done.status == "completed"
        check_files(c, done, ids(3))
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-fake-test-key", max_retries=0).batches.list()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_moderately_large_file_is_fast(fake_openai):
    c = sdk(fake_openai)
    n = 5000
    data = make_jsonl(n)
    t = time.monotonic()
    b = submit(c, data=data)
    done, _ = run_to_end(c, b.id)
    out, _ = check_files(c, done, ids(n))
    assert len(out) == n
    assert time.monotonic() - t < 15


def test_concurrent_clients(fake_openai):
    from concurrent.futures import ThreadPoolExecutor

    fake_openai.configure(defaults={"outcome": "completed_mixed"})

    def one(k: int) -> int:
        c = sdk(fake_openai)
        total = 0
        for j in range(3):
            data = make_jsonl(20, prefix=f"t{k}-{j}-")
            b, _ = run_to_end(c, submit(c, data=data, job=f"job-{k}").id)
            check_files(c, b, ids(20, prefix=f"t{k}-{j}-"))
            total += b.request_counts.total
        return total

    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(one, range(6))) == 6 * 3 * 20
    st = fake_openai.state()
    assert st["counts"]["batch_creates"] == 18 and len(st["counts"]["creates_by_job"]) == 6
