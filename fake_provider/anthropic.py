"""Anthropic's Message Batches API in the fake provider (no HTTP here: ``server.py``
routes ``/v1/messages/batches...`` to these methods).

The requests travel inline in the create body (Anthropic has no file upload); a batch
goes ``in_progress`` (→ ``canceling``) → ``ended``, and its results are a JSONL stream
at ``results_url`` (``succeeded`` / ``errored`` / ``canceled`` / ``expired``, in any
order). Batches carry no metadata: the fake takes the job id from the first request's
``custom_id`` (ai_batch writes ``<job_id>-i<issue_id>``), so the ``jobs`` behaviours,
``creates_by_job`` and the other layers of ``provider.py`` apply to Anthropic batches
too. Errors use Anthropic's shape ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import copy
import datetime
import json
import random
import re
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from .answers import approx_tokens, is_product_labeling, product_labeling_answer, schema_answer, _first_line, _message_text
from .provider import ApiError, Resp, _int_param, _invalid_content, advance_on_retrieve

if TYPE_CHECKING:
    from .provider import FakeProvider

BATCHES_PATH = "/v1/messages/batches"
CUSTOM_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_REQUESTS = 100_000
MAX_BODY_BYTES = 256 * 1024 * 1024
# config validate = on-first-poll (the benchmark's mode): a create finds the custom_ids with
# this scan of the raw body and answers; the body is parsed when the batch is first used.
# (Inside a JSON string a quote is escaped, so the scan sees only real "custom_id" keys
# with a string value; ai_batch's params hold none.)
_BODY_HEAD = re.compile(rb'\s*\{\s*"requests"\s*:\s*\[')
_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"([^"\\]*)"')
# Anthropic's error type for an HTTP status (the `type` of its error object).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# The per-request failures of an `errored` result, used in turn (`fail_kinds`).
_ERRORED = {
    "server_error": ("api_error", "Internal server error"),
    "invalid_request": ("invalid_request_error", "messages.0.content: string too long"),
    "context_length": ("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
    "request_timeout": ("api_error", "The request timed out."),
}


def error_body(status: int, message: str, typ: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """Anthropic's error envelope. An OpenAI-flavoured type (``server_error``, ``requests``) is
    replaced by Anthropic's type for the status."""
    if not typ or typ not in set(ERROR_TYPES.values()) | {"billing_error"}:
        typ = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": typ, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_id_of(custom_id: str) -> str | None:
    """ai_batch's job id inside one of its custom_ids (``<job_id>-i<issue id>``; job ids hold no ``-``)."""
    head, sep, _ = custom_id.partition("-")
    return head if sep and head else None


def answer_for_params(params: dict[str, Any]) -> tuple[list[dict[str, Any]], str, int]:
    """(content blocks, stop_reason, input_tokens) for one request's ``params``.

    The answer follows the forced structured mechanism the request uses: structured outputs
    (``output_config.format`` of type ``json_schema``) answer one text block holding the JSON;
    a forced tool (``tool_choice: {"type": "tool", "name": N}``) answers one ``tool_use`` block
    whose ``input`` is the object. Product labeling is recognised by the schema or tool name
    ``product_labeling`` or by the system prompt, as on the OpenAI side."""
    system = params.get("system")
    system_text = _message_text(system) if system is not None else ""
    user_text, all_text = [], [system_text]
    for m in params.get("messages") or []:
        if isinstance(m, dict):
            t = _message_text(m.get("content"))
            all_text.append(t)
            if m.get("role") == "user":
                user_text.append(t)
    issue = "\n".join(user_text)
    in_tok = approx_tokens("".join(all_text))
    fmt = (params.get("output_config") or {}).get("format") if isinstance(params.get("output_config"), dict) else None
    schema = fmt.get("schema") if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
    choice = params.get("tool_choice") if isinstance(params.get("tool_choice"), dict) else {}
    tool_name = choice.get("name") if choice.get("type") == "tool" else None
    tool_schema = None
    if tool_name:
        for tool in params.get("tools") or []:
            if isinstance(tool, dict) and tool.get("name") == tool_name:
                tool_schema = tool.get("input_schema")
    labeling = is_product_labeling({}, system_text) or tool_name == "product_labeling" or any(
        isinstance(sc, dict) and "recommended_labels" in (sc.get("properties") or {}) for sc in (schema, tool_schema)
    )
    if labeling:
        obj: Any = product_labeling_answer(issue)
    elif schema is not None or tool_schema is not None:
        obj = schema_answer(schema if schema is not None else tool_schema, issue)
    else:
        return [{"type": "text", "text": f"Fake answer to: {_first_line(issue, 80)}"}], "end_turn", in_tok
    if tool_name:
        block = {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": tool_name, "input": obj}
        return [block], "tool_use", in_tok
    return [{"type": "text", "text": json.dumps(obj)}], "end_turn", in_tok


def _param_error(params: Any) -> str | None:
    """The per-request validation failure, reported as an ``errored`` result (as Anthropic does)."""
    if not isinstance(params, dict):
        return "params: Input should be an object"
    if not isinstance(params.get("model"), str) or not params["model"]:
        return "model: Field required"
    mt = params.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        return "max_tokens: Field required" if mt is None else "max_tokens: Input should be a positive integer"
    msgs = params.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "messages: Field required" if msgs is None else "messages: at least one message is required"
    t = params.get("temperature")
    if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 1):
        return "temperature: Input should be less than or equal to 1"
    return None


class MsgBatch:
    def __init__(self, bid: str, seq: int, requests: list[dict[str, Any]] | None, behaviour: dict[str, Any],
                 job_id: str | None, ids: list[str], raw: bytearray | None = None):
        """``requests`` parsed, or None with the ``raw`` body kept (parsed on first use) and
        ``ids`` its custom_ids."""
        self.id, self.seq, self.behaviour, self.job_id = bid, seq, behaviour, job_id
        self._requests, self._raw, self._n = requests, raw, len(ids)
        self.head_ids = ids[:1000]
        self.lock = threading.RLock()
        self.status = "in_progress"
        self.created = time.time()
        self.ended_at: float | None = None
        self.cancel_initiated_at: float | None = None
        self.cancel_processed: int | None = None  # requests run before a cancel
        self.client_cancelled = False
        self.retrieves = 0
        self.pending_retrieves = 0
        self.last_step = time.monotonic()
        self.counts = {"processing": self._n, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        self.results: bytes | None = None
        self.results_missing = False
        self.echo = ""
        self.deleted = False

    @property
    def requests(self) -> list[dict[str, Any]]:
        if self._requests is None:
            self._requests = json.loads(self._raw)["requests"]
            self._raw = None
        return self._requests

    def parsed(self) -> bool:
        return self._requests is not None

    def n(self) -> int:
        return len(self._requests) if self._requests is not None else self._n

    def cut(self) -> int:
        frac = float(self.behaviour.get("partial_fraction") or 0.0)
        return max(0, min(self.n(), int(self.n() * frac)))

    def public(self, results_url: str | None) -> dict[str, Any]:
        status = self.behaviour.get("report_status") or self.status
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": dict(self.counts),
            "ended_at": rfc3339(self.ended_at),
            "created_at": rfc3339(self.created),
            "expires_at": rfc3339(self.created + 86400),
            "archived_at": None,
            "cancel_initiated_at": rfc3339(self.cancel_initiated_at),
            "results_url": results_url if self.status == "ended" else None,
        }


class AnthropicBatches:
    """The Message Batches endpoints, on the shared ``FakeProvider`` (config, behaviour layers,
    faults, counters)."""

    def __init__(self, prov: "FakeProvider"):
        self.prov = prov
        self.batches: dict[str, MsgBatch] = {}
        self.seq = 0

    def clear(self) -> None:
        self.batches = {}
        self.seq = 0

    # ------------------------------------------------------------------ helpers

    def results_url(self, b: MsgBatch, host: str) -> str:
        path = f"{BATCHES_PATH}/{b.id}/results"
        if self.prov.config.get("relative_results_url"):
            return path
        return f"http://{host}{self.prov.config.get('path_prefix') or ''}{path}"

    def _get(self, bid: str) -> MsgBatch:
        b = self.batches.get(bid)
        if b is None or b.deleted:
            raise ApiError(404, f"Message batch {bid} not found.", "not_found_error")
        return b

    def _mode(self, b: MsgBatch) -> str:
        return b.behaviour.get("advance") or self.prov.config["advance"]

    def _advance_timed(self, b: MsgBatch) -> None:
        if self._mode(b) != "timed":
            return
        with b.lock:
            step = float(b.behaviour.get("step_seconds") or self.prov.config["step_seconds"])
            while b.status != "ended" and time.monotonic() - b.last_step >= step:
                if not self._step(b):
                    break
                b.last_step += step

    # ------------------------------------------------------------------ endpoints

    def create(self, req: Any, host: str, api_key_header: str | None) -> Resp:
        if not isinstance(req, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        reqs = req.get("requests")
        if not isinstance(reqs, list):
            raise ApiError(400, "requests: Field required")
        if not reqs:
            raise ApiError(400, "requests: List should have at least 1 item after validation, not 0")
        if len(reqs) > self.prov.config.get("anthropic_max_requests", MAX_REQUESTS):
            raise ApiError(400, f"requests: List should have at most {MAX_REQUESTS} items after validation, not {len(reqs)}")
        for i, r in enumerate(reqs):
            if not isinstance(r, dict):
                raise ApiError(400, f"requests.{i}: Input should be a valid dictionary")
        ids = [r.get("custom_id") for r in reqs]
        _check_ids(ids)
        for i, r in enumerate(reqs):
            if "params" not in r:
                raise ApiError(400, f"requests.{i}.params: Field required")
        return self._new(reqs, ids, None, host, api_key_header)

    def create_deferred(self, body: bytearray, host: str, api_key_header: str | None) -> Resp | None:
        """A create under config validate = on-first-poll: the custom_ids found by a scan of
        the raw body are checked as ``create`` checks them, and the body is parsed only when
        the batch is first used (retrieve, list, state, results), as the OpenAI side defers
        validating an input file, so the fake's Python parsing is not inside the client's
        timed create. None: a body that does not look like ``{"requests": [...]}`` with
        custom_ids, for ``create`` to parse and answer now."""
        if not _BODY_HEAD.match(body):
            return None
        ids = [m.group(1).decode("utf-8", "replace") for m in _CUSTOM_ID.finditer(body)]
        if not ids:
            return None
        if len(ids) > self.prov.config.get("anthropic_max_requests", MAX_REQUESTS):
            raise ApiError(400, f"requests: List should have at most {MAX_REQUESTS} items after validation, not {len(ids)}")
        _check_ids(ids)
        return self._new(None, ids, body, host, api_key_header)

    def _new(self, reqs: list[dict[str, Any]] | None, ids: list[str], raw: bytearray | None, host: str,
             api_key_header: str | None) -> Resp:
        job_id = job_id_of(ids[0])
        prov = self.prov
        with prov.lock:
            behaviour = prov.new_behaviour(job_id)
            self.seq += 1
            bid = "msgbatch_" + uuid.uuid4().hex[:24]
            b = MsgBatch(bid, self.seq, reqs, behaviour, job_id, ids, raw)
            if behaviour.get("echo_authorization") and api_key_header:
                b.echo = f" (request header x-api-key: {api_key_header})"
            self.batches[bid] = b
            prov.counts["batch_creates"] += 1
            if job_id is not None:
                d = prov.counts["creates_by_job"]
                d[job_id] = d.get(job_id, 0) + 1
            return Resp.json(b.public(self.results_url(b, host)))

    def retrieve(self, bid: str, host: str) -> Resp:
        with self.prov.lock:
            b = self._get(bid)
        self.prov.count("retrieves", "retrieves_by_batch", bid)
        with b.lock:
            advance_on_retrieve(b, self._mode(b), lambda: b.status == "ended", self._step, self._advance_timed)
            return Resp.json(b.public(self.results_url(b, host)))

    def list(self, query: dict[str, str], host: str) -> Resp:
        limit = _int_param(query, "limit", 20, 1, 1000)
        before, after = query.get("before_id"), query.get("after_id")
        if before and after:
            raise ApiError(400, "Only one of before_id and after_id may be given.")
        with self.prov.lock:
            self.prov.counts["list_calls"] += 1
            ordered = [b for b in sorted(self.batches.values(), key=lambda x: x.seq, reverse=True) if not b.deleted]
        ids = [b.id for b in ordered]
        if after:
            rest = ordered[ids.index(after) + 1 :] if after in ids else []
            page, has_more = rest[:limit], len(rest) > limit
        elif before:
            rest = ordered[: ids.index(before)] if before in ids else []
            page, has_more = rest[-limit:], len(rest) > limit
        else:
            page, has_more = ordered[:limit], len(ordered) > limit
        data = []
        for b in page:
            self._advance_timed(b)
            with b.lock:
                data.append(b.public(self.results_url(b, host)))
        return Resp.json(
            {
                "data": data,
                "has_more": has_more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    def cancel(self, bid: str, host: str) -> Resp:
        with self.prov.lock:
            b = self._get(bid)
        self.prov.count("cancels", "cancels_by_batch", bid)
        self._advance_timed(b)
        with b.lock:
            if b.status == "in_progress":
                b.cancel_processed = b.cut()
                b.client_cancelled = True
                b.status = "canceling"
                b.cancel_initiated_at = time.time()
                b.pending_retrieves = 0
                b.last_step = time.monotonic()
            # canceling or ended: answered unchanged, as Anthropic does
            return Resp.json(b.public(self.results_url(b, host)))

    def delete(self, bid: str) -> Resp:
        with self.prov.lock:
            b = self._get(bid)
        with b.lock:
            if b.status != "ended":
                raise ApiError(400, f"Message batch {bid} is still processing; cancel it first.")
            b.deleted = True
        return Resp.json({"id": bid, "type": "message_batch_deleted"})

    def results(self, bid: str) -> Resp:
        with self.prov.lock:
            b = self._get(bid)
        with b.lock:
            if b.status != "ended" or b.results is None:
                raise ApiError(404, f"Results for message batch {bid} are not available yet: it is {b.status}.", "not_found_error")
            if b.results_missing:
                raise ApiError(404, f"Results for message batch {bid} are no longer available.", "not_found_error")
            data = b.results
        self.prov.count("content_downloads")
        return Resp(200, data, "application/binary")

    # ------------------------------------------------------------------ control and lifecycle

    def internal_view(self, b: MsgBatch) -> dict[str, Any]:
        d = b.public(None)
        d["_fake"] = {
            "job_id": b.job_id,
            "behaviour": copy.deepcopy(b.behaviour),
            "retrieves": b.retrieves,
            "requests": b.n(),
            "client_cancelled": b.client_cancelled,
            "custom_ids": list(b.head_ids),
            "parsed": b.parsed(),
        }
        return d

    def control(self, b: MsgBatch, upd: dict[str, Any], steps: int) -> Resp:
        with b.lock:
            b.behaviour.update(upd)
            for _ in range(steps):
                if not self._step(b, force=True):
                    break
            return Resp.json(self.internal_view(b))

    def _step(self, b: MsgBatch, force: bool = False) -> bool:
        if b.status == "ended":
            return False
        if not force and (b.behaviour.get("hold_at") == b.status or b.behaviour.get("report_status")):
            return False
        if b.status == "canceling":
            self._end(b, b.cancel_processed if b.cancel_processed is not None else 0, "canceled")
        elif b.behaviour["outcome"] == "expired":
            self._end(b, b.cut(), "expired")
        elif b.behaviour["outcome"] == "cancelled":  # canceled by someone else (the console)
            b.cancel_processed = b.cut()
            b.status = "canceling"
            b.cancel_initiated_at = time.time()
        else:
            self._end(b, b.n(), "expired")
        return True

    def _end(self, b: MsgBatch, processed: int, tail: str) -> None:
        beh = b.behaviour
        o = beh["outcome"]
        fail_ids = set(beh.get("fail_custom_ids") or [])
        every = max(1, int(beh.get("fail_every") or 3))
        inv_ids = set(beh.get("invalid_custom_ids") or [])
        inv_every = max(1, int(beh.get("invalid_every") or 1))
        fail_kinds = beh.get("fail_kinds") or ["server_error"]
        invalid_kinds = beh.get("invalid_kinds") or ["refusal"]
        lines: list[str] = []
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        n_fail = n_inv = 0
        dumps = json.dumps

        def succeeded(i: int, cid: str, params: dict[str, Any], invalid: str | None) -> str:
            content, stop, in_tok = answer_for_params(params)
            if invalid:
                content, stop = _invalid(invalid, content)
            text = "".join(c.get("text", "") if c["type"] == "text" else dumps(c.get("input")) for c in content)
            message = {
                "id": f"msg_{b.id[9:21]}{i:012x}",
                "type": "message",
                "role": "assistant",
                "model": params.get("model"),
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": in_tok,
                    "output_tokens": approx_tokens(text),
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            }
            return dumps({"custom_id": cid, "result": {"type": "succeeded", "message": message}})

        def errored(cid: str, typ: str, message: str) -> str:
            err = {"type": "error", "error": {"type": typ, "message": message + b.echo}, "request_id": "req_" + uuid.uuid4().hex[:24]}
            return dumps({"custom_id": cid, "result": {"type": "errored", "error": err}})

        for i, r in enumerate(b.requests):
            cid, params = r.get("custom_id"), r.get("params")
            if i >= processed:
                lines.append(dumps({"custom_id": cid, "result": {"type": tail}}))
                counts[tail] += 1
                continue
            bad = _param_error(params)
            fails = o == "all_failed" or (
                o == "completed_mixed" and (cid in fail_ids if beh.get("fail_custom_ids") is not None else (i + 1) % every == 0)
            )
            if bad is not None:
                lines.append(errored(cid, "invalid_request_error", bad))
                counts["errored"] += 1
            elif fails:
                typ, msg = _ERRORED[fail_kinds[n_fail % len(fail_kinds)]]
                n_fail += 1
                lines.append(errored(cid, typ, msg))
                counts["errored"] += 1
            else:
                inv = None
                if o == "invalid_answers" and (
                    cid in inv_ids if beh.get("invalid_custom_ids") is not None else (i + 1) % inv_every == 0
                ):
                    inv = invalid_kinds[n_inv % len(invalid_kinds)]
                    n_inv += 1
                lines.append(succeeded(i, cid, params, inv))
                counts["succeeded"] += 1
        for i in range(min(int(beh.get("duplicate_custom_ids") or 0), processed)):
            r = b.requests[i]
            if _param_error(r["params"]) is None:
                lines.append(succeeded(i, r["custom_id"], r["params"], None))
        for k in range(int(beh.get("unknown_custom_ids") or 0)):
            lines.append(succeeded(k, f"unknown-{k}", {"model": "claude-fake", "messages": []}, None))
        order = beh.get("output_order") or "shuffled"
        if order == "shuffled":
            random.Random(b.id).shuffle(lines)
        elif order == "reversed":
            lines.reverse()
        out = ("\n".join(lines) + "\n").encode()
        cut = beh.get("cut_output_file")
        if cut:
            out = out[: int(len(out) * float(cut))]
            if out.endswith(b"\n"):
                out = out[:-2]
        b.results = out
        b.results_missing = "output" in (beh.get("missing_files") or [])
        b.counts = counts
        b.status = "ended"
        b.ended_at = time.time()


def _check_ids(ids: list[Any]) -> None:
    """The 400 of a create whose custom_ids do not match Anthropic's pattern or repeat."""
    seen: set[str] = set()
    for i, cid in enumerate(ids):
        if not isinstance(cid, str) or not CUSTOM_ID_RE.match(cid):
            raise ApiError(400, f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if cid in seen:
            raise ApiError(400, f"Duplicate custom_id '{cid}': custom_id must be unique within a Message Batch.")
        seen.add(cid)


def _invalid(kind: str, content: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """(content, stop_reason) of an invalid answer of the given kind: OpenAI's invalid answers
    (``provider._invalid_content``) in Anthropic's terms."""
    text = content[0].get("text") if content and content[0]["type"] == "text" else json.dumps(content[0].get("input"))
    bad, refusal, finish = _invalid_content(kind, text)
    if refusal is not None or bad is None:
        return [], "refusal"
    return [{"type": "text", "text": bad}], "max_tokens" if finish == "length" else "end_turn"
