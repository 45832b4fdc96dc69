"""The fake provider's state: files, batches, their lifecycle, outcomes and faults.

No HTTP here (see ``server.py``): every public method takes plain Python values and
returns a ``Resp`` or raises ``ApiError``, which the HTTP layer turns into the OpenAI
wire format.
"""

from __future__ import annotations

import copy
import email.utils
import json
import os
import random
import secrets
import string
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from . import multipart
from .answers import answer_for_request, approx_tokens

DEFAULT_API_KEY = "sk-fake-test-key"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
OUTCOMES = (
    "completed",
    "completed_mixed",
    "all_failed",
    "failed_validation",
    "token_limit_exceeded",
    "expired",
    "cancelled",
    "invalid_answers",
)
ADVANCE_MODES = ("per-retrieve", "immediate", "timed")
SDK_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
IMPLEMENTED_ENDPOINTS = ("/v1/chat/completions",)
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
FAIL_KINDS = ("server_error", "invalid_request", "context_length", "request_timeout")
INVALID_KINDS = ("refusal", "length", "malformed", "schema", "content_filter")
MAX_ERRORS_LISTED = 100

DEFAULT_BEHAVIOUR: dict[str, Any] = {
    "outcome": "completed",
    "advance": None,  # None: the server-wide mode
    "retrieves_per_step": 1,
    "step_seconds": None,  # None: the server-wide value (timed mode)
    "hold_at": None,  # a status the batch does not leave until released
    "partial_fraction": 0.5,  # share of requests processed before expiry / cancellation
    "fail_every": 3,  # completed_mixed: every Nth request (1-based) fails ...
    "fail_custom_ids": None,  # ... or exactly these custom_ids
    "fail_kinds": ["server_error", "invalid_request", "request_timeout"],
    "invalid_every": 1,  # invalid_answers: every Nth request gets an invalid answer ...
    "invalid_custom_ids": None,  # ... or exactly these custom_ids
    "invalid_kinds": ["refusal", "length", "malformed", "schema"],
    "validation_errors": None,  # failed_validation: errors.data to report (default: one)
    "duplicate_custom_ids": 0,  # extra output lines repeating the first N custom_ids
    "unknown_custom_ids": 0,  # extra output lines with custom_ids that were never sent
    "output_order": "shuffled",  # shuffled | input | reversed
    "report_status": None,  # a status to report instead of the real one (the batch waits meanwhile)
    "missing_files": [],  # "output" / "error": deleted when the batch ends, as an expired file (404)
    "cut_output_file": None,  # a fraction in (0, 1): the output file is stored cut there, mid-line
    "echo_authorization": False,  # the create's Authorization header echoed in errors and error lines
}
BEHAVIOUR_KEYS = frozenset(DEFAULT_BEHAVIOUR)

FAULT_PRESETS: dict[str, tuple[int, str, str | None, str | None]] = {
    # kind: (status, message, type, code)
    "rate_limit": (
        429,
        "Rate limit reached for requests in organization org-fake on requests per min (RPM): "
        "Limit 500, Used 500, Requested 1. Please try again in 1s.",
        "requests",
        "rate_limit_exceeded",
    ),
    "insufficient_quota": (
        429,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        "insufficient_quota",
    ),
    "server_error": (500, "The server had an error while processing your request. Sorry about that!", "server_error", None),
    "bad_gateway": (502, "", None, None),  # HTML body, like the real edge proxy
    "service_unavailable": (503, "The engine is currently overloaded, please try again later.", "server_error", None),
    "unauthorized": (401, "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"),
    "forbidden": (403, "Country, region, or territory not supported", "request_forbidden", "unsupported_country_region_territory"),
    "not_found": (404, "The requested resource was not found.", "invalid_request_error", None),
    "status": (500, "Injected error.", "server_error", None),
    # Anthropic's "the API is temporarily overloaded" (on /v1/messages paths; OpenAI never sends it)
    "overloaded": (529, "Overloaded", "overloaded_error", None),
}
FAULT_ACTIONS = ("delay", "reset", "close", "truncate")
FAULT_KEYS = frozenset(
    {
        "kind", "method", "path", "count", "skip", "status", "message", "type", "code", "param", "body",
        "headers", "retry_after", "retry_after_ms", "retry_after_date", "delay", "after_action",
        "truncate_bytes", "truncate_fraction", "content_type",
    }
)
CONFIG_SCALARS = {
    "api_key": str,
    "advance": str,
    "step_seconds": (int, float),
    "max_requests_per_batch": int,
    "max_batch_file_bytes": int,
    "max_upload_bytes": int,
    "job_metadata_key": str,
    "require_jsonl_filename": bool,
    "prep_wait_seconds": (int, float),
    "validate": str,
    "list_omits_metadata": bool,
    "max_enqueued_tokens": int,
    "max_enqueued_requests": int,
    # a gateway mounting the API under a path: every /v1 request must start with it
    "path_prefix": str,
    # Anthropic batches name their results by a path (resolved against the base URL)
    "relative_results_url": bool,
}
# When a created batch's input file is validated (parsed line by line):
# "on-create": in a background thread started by POST /v1/batches (the default);
# "on-first-poll": when the batch is first advanced (retrieve, list, cancel). The real
# service validates on its own machines; a benchmark sets "on-first-poll" so the fake's
# parsing does not compete (for the GIL and the cores) with the client's next upload.
# Anthropic creates, whose requests come in the create body, follow it too (anthropic.py).
VALIDATE_MODES = ("on-create", "on-first-poll")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str | None = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or []

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class Resp:
    status: int = 200
    body: bytes | bytearray | memoryview = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @staticmethod
    def json(obj: Any, status: int = 200) -> "Resp":
        return Resp(status, json.dumps(obj).encode())


def error_resp(e: ApiError) -> Resp:
    r = Resp.json(e.body(), e.status)
    r.headers.extend(e.headers)
    return r


def _now() -> int:
    return int(time.time())


def _file_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "file-" + "".join(secrets.choice(alphabet) for _ in range(22))


def mask_key(key: str) -> str:
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


# ---------------------------------------------------------------------------- files


class FileStore:
    """File bytes in memory, or on disk under data_dir; metadata always in memory.
    Thread-safe on its own; big reads and writes happen outside its lock."""

    def __init__(self, data_dir: str | None):
        self.data_dir = data_dir
        self.lock = threading.Lock()
        self.meta: dict[str, dict[str, Any]] = {}
        self.mem: dict[str, bytes | bytearray] = {}
        self.order: list[str] = []
        if data_dir:
            os.makedirs(data_dir, exist_ok=True)

    def put(self, data: bytes | bytearray, filename: str, purpose: str) -> dict[str, Any]:
        fid = _file_id()
        created = _now()
        meta = {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": created,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": created + 30 * 86400 if purpose in ("batch", "batch_output") else None,
        }
        if self.data_dir:
            path = os.path.join(self.data_dir, fid)
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)
        with self.lock:
            if not self.data_dir:
                self.mem[fid] = data
            self.meta[fid] = meta
            self.order.append(fid)
        return dict(meta)

    def get(self, fid: str) -> dict[str, Any]:
        with self.lock:
            m = self.meta.get(fid)
            if m is None:
                raise ApiError(404, f"No such File object: {fid}", param="id")
            return dict(m)

    def data(self, fid: str) -> bytes | bytearray:
        with self.lock:
            if fid not in self.meta:
                raise ApiError(404, f"No such File object: {fid}", param="id")
            if not self.data_dir:
                return self.mem[fid]
        try:
            with open(os.path.join(self.data_dir, fid), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ApiError(404, f"No such File object: {fid}", param="id")

    def list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(self.meta[f]) for f in self.order]

    def delete(self, fid: str) -> None:
        with self.lock:
            if fid not in self.meta:
                raise ApiError(404, f"No such File object: {fid}", param="id")
            del self.meta[fid]
            self.order.remove(fid)
            self.mem.pop(fid, None)
        if self.data_dir:
            try:
                os.remove(os.path.join(self.data_dir, fid))
            except OSError:
                pass

    def clear(self) -> None:
        with self.lock:
            fids = list(self.meta)
        for fid in fids:
            try:
                self.delete(fid)
            except ApiError:
                pass


# ---------------------------------------------------------------------------- batches


@dataclass
class Prep:
    """Result of validating and 'running' an input file (computed once, in the background)."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    records: list[tuple[str, str, int]] = field(default_factory=list)  # custom_id, content, prompt_tokens
    model: str | None = None


def prepare(data: bytes | bytearray, endpoint: str, max_requests: int) -> Prep:
    p = Prep()
    seen: set[str] = set()
    errors = p.errors

    def err(code: str, line: int | None, message: str, param: str | None = None) -> None:
        if len(errors) < MAX_ERRORS_LISTED:
            errors.append({"code": code, "line": line, "message": message, "param": param})

    n_requests = 0
    lineno, pos, size = 0, 0, len(data)
    find = data.find
    while pos < size:
        # a find() loop, not data.split(): one split of 200 MB holds the GIL for long
        # enough to stall every other request of the server
        end = find(b"\n", pos)
        if end < 0:
            end = size
        raw = data[pos:end]
        pos = end + 1
        lineno += 1
        if not raw.strip():
            continue
        n_requests += 1
        if len(errors) >= MAX_ERRORS_LISTED:
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            err("invalid_json_line", lineno, "This line is not parseable as valid JSON.")
            continue
        if not isinstance(obj, dict):
            err("invalid_json_line", lineno, "This line is not a JSON object.")
            continue
        ok = True
        cid = obj.get("custom_id")
        if not isinstance(cid, str) or not cid:
            err("missing_required_parameter", lineno, "Missing required parameter: 'custom_id'.", "custom_id")
            ok = False
        elif cid in seen:
            err(
                "duplicate_custom_id",
                lineno,
                "The custom_id for this request is a duplicate of another request. "
                "The custom_id parameter must be unique for each request in a batch.",
                "custom_id",
            )
            ok = False
        else:
            seen.add(cid)
        if obj.get("method") != "POST":
            err("invalid_method", lineno, f"Invalid 'method': {obj.get('method')!r}. Only POST is supported.", "method")
            ok = False
        if obj.get("url") != endpoint:
            err(
                "invalid_url",
                lineno,
                f"The URL provided for this request ({obj.get('url')!r}) does not match the batch endpoint ({endpoint!r}).",
                "url",
            )
            ok = False
        body = obj.get("body")
        if not isinstance(body, dict):
            err("missing_required_parameter", lineno, "Missing required parameter: 'body'.", "body")
            continue
        model = body.get("model")
        if not isinstance(model, str) or not model:
            err("missing_required_parameter", lineno, "Missing required parameter: 'body.model'.", "body.model")
            ok = False
        elif p.model is None:
            p.model = model
        elif model != p.model:
            err(
                "mismatched_model",
                lineno,
                f"The provided model '{model}' does not match the model '{p.model}' used by the other requests. "
                "All requests in a batch must use the same model.",
                "body.model",
            )
            ok = False
        if not isinstance(body.get("messages"), list) or not body.get("messages"):
            err("missing_required_parameter", lineno, "Missing required parameter: 'body.messages'.", "body.messages")
            ok = False
        if ok and not errors:
            content, ptok = answer_for_request(body)
            p.records.append((cid, content, ptok))
    if n_requests == 0:
        err("empty_file", None, "The batch input file is empty.")
    elif n_requests > max_requests:
        err(
            "exceeded_max_requests",
            None,
            f"The batch input file contains {n_requests} requests; the maximum is {max_requests} requests per batch.",
        )
    if errors:
        p.records = []
    return p


class Batch:
    def __init__(self, bid: str, seq: int, req: dict[str, Any], behaviour: dict[str, Any], job_id: str | None):
        now = _now()
        self.id, self.seq, self.behaviour, self.job_id = bid, seq, behaviour, job_id
        self.lock = threading.RLock()
        self.prep_done = threading.Event()
        self.prep: Prep | None = None
        self.start_prep: Callable[[], None] | None = None  # set while validation waits for a poll
        self.retrieves = 0
        self.pending_retrieves = 0
        self.last_step = time.monotonic()
        self.cancel_processed: int | None = None
        self.client_cancelled = False
        self.prerender_started = False
        self.prerender_done = threading.Event()
        self.prerendered: tuple[Any, Any] | None = None  # (key, render_results(...))
        self.final_n: int | None = None  # set when finished (the records are then freed)
        self.echo = ""  # echo_authorization: appended to every error message
        self.obj: dict[str, Any] = {
            "id": bid,
            "object": "batch",
            "endpoint": req["endpoint"],
            "model": None,
            "errors": None,
            "input_file_id": req["input_file_id"],
            "completion_window": req["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "usage": _usage(0, 0),
            "metadata": req.get("metadata"),
        }

    @property
    def status(self) -> str:
        return self.obj["status"]

    def public(self) -> dict[str, Any]:
        """The batch object as the API shows it (a copy; `report_status` applied)."""
        d = copy.deepcopy(self.obj)
        if self.behaviour.get("report_status"):
            d["status"] = self.behaviour["report_status"]
        return d

    def n(self) -> int:
        if self.final_n is not None:
            return self.final_n
        return len(self.prep.records) if self.prep else 0

    def cut(self) -> int:
        frac = float(self.behaviour.get("partial_fraction") or 0.0)
        return max(0, min(self.n(), int(self.n() * frac)))


def _usage(inp: int, out: int) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": inp + out,
    }


# ---------------------------------------------------------------------------- the provider


class FakeProvider:
    def __init__(
        self,
        api_key: str | None = None,
        data_dir: str | None = None,
        advance: str = "per-retrieve",
        step_seconds: float = 1.0,
        max_requests_per_batch: int = 50_000,
        validate: str = "on-create",
    ):
        if advance not in ADVANCE_MODES:
            raise ValueError(f"advance must be one of {ADVANCE_MODES}")
        if validate not in VALIDATE_MODES:
            raise ValueError(f"validate must be one of {VALIDATE_MODES}")
        self.lock = threading.RLock()
        self.initial_config = {
            "api_key": api_key or os.environ.get("FAKE_OPENAI_API_KEY") or DEFAULT_API_KEY,
            "advance": advance,
            "step_seconds": step_seconds,
            "max_requests_per_batch": max_requests_per_batch,
            "max_batch_file_bytes": 200 * 1024 * 1024,
            "max_upload_bytes": 512 * 1024 * 1024,
            "job_metadata_key": "ai_batch_job_id",
            "require_jsonl_filename": True,
            "prep_wait_seconds": 2.0,
            "validate": validate,
            "list_omits_metadata": False,  # a gateway that lists batches without `metadata`
            # The organisation's queue limits per model (0: none): a batch that would take
            # the model's enqueued prompt tokens (or requests) of the unfinished batches over
            # them fails validation with OpenAI's token_limit_exceeded (request_limit_exceeded).
            "max_enqueued_tokens": 0,
            "max_enqueued_requests": 0,
            "path_prefix": "",
            "relative_results_url": False,
        }
        self.files = FileStore(data_dir)
        from .anthropic import AnthropicBatches  # it imports this module

        self.anthropic = AnthropicBatches(self)
        self.boot_config: dict[str, Any] | None = None
        self._reset_locked()

    # ------------------------------------------------------------------ config / state

    def _reset_locked(self) -> None:
        self.config: dict[str, Any] = dict(self.initial_config)
        self.defaults: dict[str, Any] = copy.deepcopy(DEFAULT_BEHAVIOUR)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.next_batches: deque[dict[str, Any]] = deque()
        self.faults: list[dict[str, Any]] = []
        self.batches: dict[str, Batch] = {}
        self.seq = 0
        self.anthropic.clear()
        self.files.clear()
        self.counts: dict[str, Any] = {
            "requests": 0,
            "uploads": 0,
            "upload_bytes": 0,
            "file_retrieves": 0,
            "file_lists": 0,
            "content_downloads": 0,
            "file_deletes": 0,
            "batch_creates": 0,
            "retrieves": 0,
            "list_calls": 0,
            "cancels": 0,
            "auth_failures": 0,
            "faults_fired": 0,
            "limit_refusals": 0,  # batches failed for the queue limits
            "enqueued_peak": {},  # model -> the most prompt tokens enqueued at once
            "enqueued_requests_peak": {},  # model -> the most requests enqueued at once
            "creates_by_job": {},
            "retrieves_by_batch": {},
            "cancels_by_batch": {},
        }
        self.request_log: deque[dict[str, Any]] = deque(maxlen=1000)

    def reset(self) -> None:
        with self.lock:
            self._reset_locked()
            if self.boot_config:
                self.configure(self.boot_config)

    def set_boot_config(self, cfg: dict[str, Any]) -> None:
        """A config applied now and again after every reset (``--config FILE``)."""
        with self.lock:
            self.configure(cfg)
            self.boot_config = copy.deepcopy(cfg)

    @property
    def api_key(self) -> str:
        return self.config["api_key"]

    def _check_behaviour(self, b: Any, where: str) -> dict[str, Any]:
        if not isinstance(b, dict):
            raise ApiError(400, f"{where} must be an object")
        unknown = set(b) - BEHAVIOUR_KEYS
        if unknown:
            raise ApiError(400, f"{where}: unknown keys {sorted(unknown)}; known: {sorted(BEHAVIOUR_KEYS)}")
        if "outcome" in b and b["outcome"] not in OUTCOMES:
            raise ApiError(400, f"{where}: outcome must be one of {list(OUTCOMES)}")
        if b.get("advance") is not None and b["advance"] not in ADVANCE_MODES:
            raise ApiError(400, f"{where}: advance must be one of {list(ADVANCE_MODES)}")
        for k in ("fail_kinds", "invalid_kinds"):
            allowed = FAIL_KINDS if k == "fail_kinds" else INVALID_KINDS
            if k in b and (not isinstance(b[k], list) or not b[k] or set(b[k]) - set(allowed)):
                raise ApiError(400, f"{where}: {k} must be a non-empty list of {list(allowed)}")
        if b.get("output_order", "input") not in ("shuffled", "input", "reversed"):
            raise ApiError(400, f"{where}: output_order must be shuffled, input or reversed")
        rs = b.get("report_status")
        if rs is not None and (not isinstance(rs, str) or not rs):
            raise ApiError(400, f"{where}: report_status must be a non-empty string or null")
        mf = b.get("missing_files", [])
        if not isinstance(mf, list) or set(mf) - {"output", "error"}:
            raise ApiError(400, f"{where}: missing_files must be a list of 'output' and 'error'")
        cut = b.get("cut_output_file")
        if cut is not None and (isinstance(cut, bool) or not isinstance(cut, (int, float)) or not 0 < cut < 1):
            raise ApiError(400, f"{where}: cut_output_file must be null or a fraction between 0 and 1")
        return copy.deepcopy(b)

    def _check_fault(self, f: Any) -> dict[str, Any]:
        if not isinstance(f, dict):
            raise ApiError(400, "a fault must be an object")
        unknown = set(f) - FAULT_KEYS
        if unknown:
            raise ApiError(400, f"fault: unknown keys {sorted(unknown)}; known: {sorted(FAULT_KEYS)}")
        kind = f.get("kind")
        if kind not in FAULT_PRESETS and kind not in FAULT_ACTIONS:
            raise ApiError(400, f"fault: kind must be one of {sorted(FAULT_PRESETS) + list(FAULT_ACTIONS)}")
        f = copy.deepcopy(f)
        f.setdefault("count", 1)
        f.setdefault("skip", 0)
        f["fired"] = 0
        if f.get("method"):
            f["method"] = str(f["method"]).upper()
        return f

    def configure(self, cfg: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(cfg, dict):
            raise ApiError(400, "config must be a JSON object")
        known = set(CONFIG_SCALARS) | {
            "defaults", "jobs", "next_batch", "next_batches", "fault", "faults",
            "clear_faults", "clear_jobs", "clear_next_batches",
        }
        unknown = set(cfg) - known
        if unknown:
            raise ApiError(400, f"config: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        with self.lock:
            for k, typ in CONFIG_SCALARS.items():
                if k in cfg:
                    if not isinstance(cfg[k], typ) or isinstance(cfg[k], bool) and typ is not bool:
                        raise ApiError(400, f"config: {k} has the wrong type")
                    if k == "advance" and cfg[k] not in ADVANCE_MODES:
                        raise ApiError(400, f"config: advance must be one of {list(ADVANCE_MODES)}")
                    if k == "validate" and cfg[k] not in VALIDATE_MODES:
                        raise ApiError(400, f"config: validate must be one of {list(VALIDATE_MODES)}")
            defaults = self._check_behaviour(cfg["defaults"], "defaults") if "defaults" in cfg else None
            jobs = {}
            if "jobs" in cfg:
                if not isinstance(cfg["jobs"], dict):
                    raise ApiError(400, "jobs must be an object {job_id: behaviour}")
                jobs = {str(k): self._check_behaviour(v, f"jobs[{k}]") for k, v in cfg["jobs"].items()}
            nexts = []
            if "next_batch" in cfg:
                nexts.append(self._check_behaviour(cfg["next_batch"], "next_batch"))
            if "next_batches" in cfg:
                if not isinstance(cfg["next_batches"], list):
                    raise ApiError(400, "next_batches must be a list")
                nexts += [self._check_behaviour(v, "next_batches[]") for v in cfg["next_batches"]]
            faults = []
            if "fault" in cfg:
                faults.append(self._check_fault(cfg["fault"]))
            if "faults" in cfg:
                if not isinstance(cfg["faults"], list):
                    raise ApiError(400, "faults must be a list")
                faults += [self._check_fault(f) for f in cfg["faults"]]
            # everything validated: apply
            for k in CONFIG_SCALARS:
                if k in cfg:
                    self.config[k] = cfg[k]
            if cfg.get("clear_faults"):
                self.faults.clear()
            if cfg.get("clear_jobs"):
                self.jobs.clear()
            if cfg.get("clear_next_batches"):
                self.next_batches.clear()
            if defaults:
                self.defaults.update(defaults)
            self.jobs.update(jobs)
            self.next_batches.extend(nexts)
            self.faults.extend(faults)
            return self.config_snapshot()

    def config_snapshot(self) -> dict[str, Any]:
        with self.lock:
            c = {k: v for k, v in self.config.items() if k != "api_key"}
            c["api_key"] = mask_key(self.config["api_key"])
            c["defaults"] = copy.deepcopy(self.defaults)
            c["jobs"] = copy.deepcopy(self.jobs)
            c["next_batches"] = list(copy.deepcopy(self.next_batches))
            c["faults"] = copy.deepcopy(self.faults)
            return c

    def state(self) -> dict[str, Any]:
        with self.lock:
            batches = sorted(self.batches.values(), key=lambda b: b.seq, reverse=True)
        snap_batches = []
        for b in batches:  # lock order: a batch's lock, then self.lock - never the reverse
            self._advance_timed(b)
            with b.lock:
                snap_batches.append(self._internal_view(b))
        with self.lock:
            msg_batches = sorted(self.anthropic.batches.values(), key=lambda b: b.seq, reverse=True)
        snap_msg = []
        for mb in msg_batches:
            self.anthropic._advance_timed(mb)
            with mb.lock:
                snap_msg.append(self.anthropic.internal_view(mb))
        with self.lock:
            return {
                "counts": copy.deepcopy(self.counts),
                "batches": snap_batches,
                "message_batches": snap_msg,
                "files": self.files.list(),
                "config": self.config_snapshot(),
                "requests": list(self.request_log),
            }

    def _internal_view(self, b: Batch) -> dict[str, Any]:
        d = copy.deepcopy(b.obj)
        d["_fake"] = {
            "job_id": b.job_id,
            "behaviour": copy.deepcopy(b.behaviour),
            "retrieves": b.retrieves,
            "requests": b.n() if b.prep_done.is_set() else None,
            "client_cancelled": b.client_cancelled,
        }
        return d

    def log_request(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.counts["requests"] += 1
            self.request_log.append(entry)

    def count(self, key: str, by: str | None = None, by_key: str | None = None) -> None:
        with self.lock:
            self.counts[key] += 1
            if by is not None and by_key is not None:
                d = self.counts[by]
                d[by_key] = d.get(by_key, 0) + 1

    # ------------------------------------------------------------------ faults

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        with self.lock:
            for i, f in enumerate(self.faults):
                if f.get("method") and f["method"] != method:
                    continue
                if f.get("path") and not path.startswith(f["path"]):
                    continue
                if f["skip"] > 0:
                    f["skip"] -= 1
                    continue
                f["fired"] += 1
                if f["count"] != -1:
                    f["count"] -= 1
                    if f["count"] <= 0:
                        del self.faults[i]
                self.counts["faults_fired"] += 1
                return copy.deepcopy(f)
        return None

    # ------------------------------------------------------------------ files API

    def upload(self, content_type: str, body: bytearray) -> Resp:
        try:
            boundary = multipart.boundary_of(content_type)
            parts = multipart.parse(body, boundary)
        except multipart.MultipartError as e:
            raise ApiError(400, f"Could not parse the multipart/form-data body: {e}")
        fields = {p.name: p for p in parts}
        purpose_part = fields.get("purpose")
        file_part = fields.get("file")
        if purpose_part is None:
            raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter")
        if file_part is None:
            raise ApiError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
        purpose = bytes(body[purpose_part.start : purpose_part.end]).decode("utf-8", "replace").strip()
        if purpose not in FILE_PURPOSES:
            raise ApiError(
                400,
                f"Invalid value for 'purpose': '{purpose}'. Supported values are: {', '.join(repr(p) for p in FILE_PURPOSES)}.",
                param="purpose",
                code="invalid_value",
            )
        filename = file_part.filename or "upload"
        size = file_part.end - file_part.start
        if purpose == "batch":
            if self.config["require_jsonl_filename"] and not filename.endswith(".jsonl"):
                raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
            if size > self.config["max_batch_file_bytes"]:
                raise ApiError(
                    400,
                    f"File is too large for Batch API: {size} bytes; the maximum is {self.config['max_batch_file_bytes']} bytes.",
                    param="file",
                )
        if size == 0:
            raise ApiError(400, "File is empty.", param="file")
        # keep the file bytes without copying: trim the body in place
        del body[file_part.end :]
        del body[: file_part.start]
        meta = self.files.put(body, filename, purpose)
        with self.lock:
            self.counts["uploads"] += 1
            self.counts["upload_bytes"] += size
        return Resp.json(meta)

    def file_list(self, query: dict[str, str]) -> Resp:
        with self.lock:
            self.counts["file_lists"] += 1
            metas = self.files.list()
            if query.get("purpose"):
                metas = [m for m in metas if m["purpose"] == query["purpose"]]
            if query.get("order", "desc") == "desc":
                metas = metas[::-1]
            limit = _int_param(query, "limit", 10000, 1, 10000)
            after = query.get("after")
            if after:
                ids = [m["id"] for m in metas]
                metas = metas[ids.index(after) + 1 :] if after in ids else []
            page = metas[:limit]
            return Resp.json(
                {
                    "object": "list",
                    "data": page,
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                    "has_more": len(metas) > limit,
                }
            )

    def file_get(self, fid: str) -> Resp:
        with self.lock:
            self.counts["file_retrieves"] += 1
            return Resp.json(self.files.get(fid))

    def file_content(self, fid: str) -> Resp:
        data = self.files.data(fid)
        self.count("content_downloads")
        return Resp(200, data, "application/octet-stream")

    def file_delete(self, fid: str) -> Resp:
        self.files.delete(fid)
        self.count("file_deletes")
        return Resp.json({"id": fid, "object": "file", "deleted": True})

    # ------------------------------------------------------------------ batches API

    def batch_create(self, req: Any, auth: str | None = None) -> Resp:
        """``auth``: the request's Authorization header (kept only for ``echo_authorization``)."""
        if not isinstance(req, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        for k in ("input_file_id", "endpoint", "completion_window"):
            if req.get(k) in (None, ""):
                raise ApiError(400, f"Missing required parameter: '{k}'.", param=k, code="missing_required_parameter")
        endpoint = req["endpoint"]
        if endpoint not in SDK_ENDPOINTS:
            raise ApiError(
                400,
                f"Invalid value for 'endpoint': '{endpoint}'. Supported values are: {', '.join(SDK_ENDPOINTS)}.",
                param="endpoint",
                code="invalid_value",
            )
        if endpoint not in IMPLEMENTED_ENDPOINTS:
            raise ApiError(400, f"The fake provider only implements {IMPLEMENTED_ENDPOINTS}.", param="endpoint", code="invalid_value")
        if req["completion_window"] != "24h":
            raise ApiError(
                400,
                f"Invalid value for 'completion_window': '{req['completion_window']}'. Supported values are: '24h'.",
                param="completion_window",
                code="invalid_value",
            )
        md = req.get("metadata")
        if md is not None:
            if not isinstance(md, dict):
                raise ApiError(400, "Invalid type for 'metadata': expected an object.", param="metadata", code="invalid_type")
            if len(md) > 16:
                raise ApiError(400, "Invalid 'metadata': too many properties. Expected an object with at most 16 properties.", param="metadata")
            for k, v in md.items():
                if len(k) > 64:
                    raise ApiError(400, f"Invalid 'metadata': key '{k[:70]}' is longer than 64 characters.", param="metadata")
                if not isinstance(v, str):
                    raise ApiError(400, f"Invalid type for 'metadata.{k}': expected a string.", param=f"metadata.{k}", code="invalid_type")
                if len(v) > 512:
                    raise ApiError(400, f"Invalid 'metadata.{k}': string too long (max 512).", param=f"metadata.{k}", code="string_above_max_length")
        with self.lock:
            fid = req["input_file_id"]
            try:
                meta = self.files.get(fid)
            except ApiError:
                raise ApiError(404, f"No such File object: {fid}", param="input_file_id")
            if meta["purpose"] != "batch":
                raise ApiError(400, f"Invalid 'input_file_id': file {fid} has purpose '{meta['purpose']}', expected 'batch'.", param="input_file_id")
            job_id = (md or {}).get(self.config["job_metadata_key"])
            behaviour = self.new_behaviour(job_id)
            self.seq += 1
            bid = "batch_" + uuid.uuid4().hex
            b = Batch(bid, self.seq, {**req, "metadata": md}, behaviour, job_id)
            if behaviour.get("echo_authorization"):
                b.echo = f" (request header Authorization: {auth})"
            self.batches[bid] = b
            self.counts["batch_creates"] += 1
            if job_id is not None:
                d = self.counts["creates_by_job"]
                d[job_id] = d.get(job_id, 0) + 1
            max_req = self.config["max_requests_per_batch"]
            obj = b.public()

        def work() -> None:
            try:
                b.prep = prepare(self.files.data(fid), endpoint, max_req)
            except Exception as e:  # never leave a batch hanging
                b.prep = Prep(errors=[{"code": "internal_error", "line": None, "message": f"fake provider: {e!r}", "param": None}])
            try:
                b.prerender_started = self._expected_end(b) is not None
            except Exception:
                b.prerender_started = False
            b.prep_done.set()
            if b.prerender_started:
                self._prerender(b)

        def start() -> None:
            threading.Thread(target=work, name=f"prep-{bid}", daemon=True).start()

        if self.config["validate"] == "on-first-poll":
            b.start_prep = start
        else:
            start()
        return Resp.json(obj)

    def _ensure_prep(self, b: Batch) -> None:
        """Starts a deferred validation (config validate = on-first-poll) once."""
        with b.lock:
            start, b.start_prep = b.start_prep, None
        if start is not None:
            start()

    def new_behaviour(self, job_id: str | None) -> dict[str, Any]:
        """A new batch's behaviour: defaults, then the job's, then the next queued (call under the lock)."""
        behaviour = copy.deepcopy(self.defaults)
        if job_id is not None:
            behaviour.update(self._job_behaviour(job_id))
        if self.next_batches:
            behaviour.update(self.next_batches.popleft())
        return behaviour

    def _job_behaviour(self, job_id: str) -> dict[str, Any]:
        if job_id in self.jobs:
            return self.jobs[job_id]
        for k, v in self.jobs.items():  # 'prefix*' keys
            if k.endswith("*") and job_id.startswith(k[:-1]):
                return v
        return {}

    def _get_batch(self, bid: str) -> Batch:
        b = self.batches.get(bid)
        if b is None:
            raise ApiError(404, f"No batch found with id '{bid}'.", param="batch_id")
        return b

    def _mode(self, b: Batch) -> str:
        return b.behaviour.get("advance") or self.config["advance"]

    def _advance_timed(self, b: Batch) -> None:
        if self._mode(b) != "timed":
            return
        with b.lock:
            step = float(b.behaviour.get("step_seconds") or self.config["step_seconds"])
            while b.status not in TERMINAL and time.monotonic() - b.last_step >= step:
                if not self._step(b):
                    break
                b.last_step += step

    def batch_retrieve(self, bid: str) -> Resp:
        with self.lock:
            b = self._get_batch(bid)
        self.count("retrieves", "retrieves_by_batch", bid)
        with b.lock:
            advance_on_retrieve(b, self._mode(b), lambda: b.status in TERMINAL, self._step, self._advance_timed)
            return Resp.json(b.public())

    def batch_list(self, query: dict[str, str]) -> Resp:
        limit = _int_param(query, "limit", 20, 1, 100)
        with self.lock:
            self.counts["list_calls"] += 1
            ordered = sorted(self.batches.values(), key=lambda x: x.seq, reverse=True)
            after = query.get("after")
            if after:
                ids = [x.id for x in ordered]
                ordered = ordered[ids.index(after) + 1 :] if after in ids else []
            page = ordered[:limit]
            has_more = len(ordered) > limit
        data = []
        for b in page:
            self._advance_timed(b)
            with b.lock:
                data.append(b.public())
                if self.config["list_omits_metadata"]:
                    del data[-1]["metadata"]
        return Resp.json(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": has_more,
            }
        )

    def batch_cancel(self, bid: str) -> Resp:
        with self.lock:
            b = self._get_batch(bid)
        self.count("cancels", "cancels_by_batch", bid)
        self._advance_timed(b)
        with b.lock:
            s = b.status
            if s in TERMINAL:
                raise ApiError(409, f"Cannot cancel a batch with status '{s}'.", param=None)
            if s != "cancelling":
                if s == "validating":
                    b.cancel_processed = 0
                    if b.prep_done.is_set():
                        self._counts_partial(b, 0)
                elif s == "in_progress":
                    b.cancel_processed = b.cut()
                else:  # finalizing: everything already ran
                    b.cancel_processed = b.n()
                    self._counts_partial(b, b.n())
                b.client_cancelled = True
                b.obj["status"] = "cancelling"
                b.obj["cancelling_at"] = _now()
                b.pending_retrieves = 0
                b.last_step = time.monotonic()
            return Resp.json(b.public())

    # ------------------------------------------------------------------ control of one batch

    def control_batch(self, bid: str, body: dict[str, Any] | None) -> Resp:
        if bid.startswith("msgbatch_"):
            with self.lock:
                mb = self.anthropic._get(bid)
            body = body if isinstance(body, dict) else {}
            steps = int(body.pop("step", 0) or 0)
            return self.anthropic.control(mb, self._check_behaviour(body, "batch behaviour"), steps)
        with self.lock:
            b = self._get_batch(bid)
        if body:
            steps = body.pop("step", 0) if isinstance(body, dict) else 0
            upd = self._check_behaviour(body, "batch behaviour")
            with b.lock:
                b.behaviour.update(upd)
                for _ in range(int(steps or 0)):
                    if not self._step(b, force=True):
                        break
        with b.lock:
            return Resp.json(self._internal_view(b))

    # ------------------------------------------------------------------ lifecycle

    def _step(self, b: Batch, force: bool = False) -> bool:
        """Advance one status. Returns False when nothing changed (terminal or held)."""
        self._ensure_prep(b)
        s = b.status
        if s in TERMINAL:
            return False
        if not force and (b.behaviour.get("hold_at") == s or b.behaviour.get("report_status")):
            return False
        beh, o, now = b.behaviour, b.behaviour["outcome"], _now()
        if s == "validating":
            if not b.prep_done.wait(float(self.config["prep_wait_seconds"])):
                return False  # still validating a big file: stay in 'validating'
            prep = b.prep
            assert prep is not None
            b.obj["model"] = prep.model
            if prep.errors:
                return self._fail(b, prep.errors)
            if o == "failed_validation":
                errs = beh.get("validation_errors") or [
                    {
                        "code": "invalid_request",
                        "line": 1,
                        "message": "Injected validation failure (fake provider outcome 'failed_validation').",
                        "param": None,
                    }
                ]
                return self._fail(b, errs)
            refusal = self._queue_refusal(b, prep)
            if refusal is not None:
                return self._fail(b, [refusal])
            if o == "token_limit_exceeded":
                return self._fail(
                    b,
                    [
                        {
                            "code": "token_limit_exceeded",
                            "line": None,
                            "message": f"Enqueued token limit reached for {prep.model} in organization org-fake. "
                            "Limit: 90,000 enqueued tokens. Please try again once some in_progress batches have been completed.",
                            "param": None,
                        }
                    ],
                )
            b.obj["status"] = "in_progress"
            b.obj["in_progress_at"] = now
            self._counts_partial(b, b.cut())
        elif s == "in_progress":
            if o == "expired":
                self._finish(b, "expired", b.cut(), "batch_expired")
            elif o == "cancelled":
                b.cancel_processed = b.cut()
                b.obj["status"] = "cancelling"
                b.obj["cancelling_at"] = now
            else:
                b.obj["status"] = "finalizing"
                b.obj["finalizing_at"] = now
                self._counts_partial(b, b.n())
        elif s == "finalizing":
            self._finish(b, "completed", b.n(), None)
        elif s == "cancelling":
            if not b.prep_done.wait(float(self.config["prep_wait_seconds"])):
                return False
            processed = b.cancel_processed if b.cancel_processed is not None else b.cut()
            self._finish(b, "cancelled", processed, "batch_cancelled")
        return True

    def _held(self, b: Batch, model: str | None) -> tuple[int, int]:
        """Prompt tokens and requests the other unfinished, validated batches of `model` hold."""
        tokens = requests = 0
        with self.lock:
            others = [x for x in self.batches.values() if x is not b]
        for x in others:
            # the status is read without the other batch's lock (lock order: one batch at a
            # time); a batch mid-step is counted as it was
            if x.status in TERMINAL or x.status == "validating" or x.prep is None or x.prep.model != model:
                continue
            tokens += sum(r[2] for r in x.prep.records)
            requests += len(x.prep.records)
        return tokens, requests

    def _queue_refusal(self, b: Batch, prep: Prep) -> dict[str, Any] | None:
        """OpenAI's error when the batch would go over the queue limits, else None (and the
        peak enqueued is recorded: tests assert it never passes the limit)."""
        max_tok = int(self.config["max_enqueued_tokens"] or 0)
        max_req = int(self.config["max_enqueued_requests"] or 0)
        tokens, requests = self._held(b, prep.model)
        mine_tok = sum(r[2] for r in prep.records)
        mine_req = len(prep.records)
        def refusal(code: str, what: str, limit: int) -> dict[str, Any]:
            return {
                "code": code,
                "line": None,
                "message": f"Enqueued {what} limit reached for {prep.model} in organization org-fake. "
                f"Limit: {limit:,} enqueued {what}s. Please try again once some in_progress batches have been completed.",
                "param": None,
            }

        err = None
        if max_tok and tokens + mine_tok > max_tok:
            err = refusal("token_limit_exceeded", "token", max_tok)
        elif max_req and requests + mine_req > max_req:
            err = refusal("request_limit_exceeded", "request", max_req)
        with self.lock:
            if err is not None:
                self.counts["limit_refusals"] += 1
                return err
            for key, v in (("enqueued_peak", tokens + mine_tok), ("enqueued_requests_peak", requests + mine_req)):
                peaks = self.counts[key]
                peaks[prep.model or ""] = max(peaks.get(prep.model or "", 0), v)
        return None

    def _fail(self, b: Batch, errors: list[dict[str, Any]]) -> bool:
        b.obj["status"] = "failed"
        b.obj["failed_at"] = _now()
        data = copy.deepcopy(errors)
        for e in data:
            if b.echo:
                e["message"] = f"{e.get('message') or ''}{b.echo}"
        b.obj["errors"] = {"object": "list", "data": data}
        b.obj["request_counts"] = {"total": 0, "completed": 0, "failed": 0}
        return True

    # which requests fail / get invalid answers ------------------------------------

    def _fail_pred(self, b: Batch):
        beh, o = b.behaviour, b.behaviour["outcome"]
        if o == "all_failed":
            return lambda i, cid: True
        if o == "completed_mixed":
            ids = beh.get("fail_custom_ids")
            if ids is not None:
                s = set(ids)
                return lambda i, cid: cid in s
            every = max(1, int(beh.get("fail_every") or 3))
            return lambda i, cid: (i + 1) % every == 0
        return lambda i, cid: False

    def _invalid_pred(self, b: Batch):
        beh = b.behaviour
        if beh["outcome"] != "invalid_answers":
            return lambda i, cid: False
        ids = beh.get("invalid_custom_ids")
        if ids is not None:
            s = set(ids)
            return lambda i, cid: cid in s
        every = max(1, int(beh.get("invalid_every") or 1))
        return lambda i, cid: (i + 1) % every == 0

    def _counts_partial(self, b: Batch, processed: int) -> None:
        fail = self._fail_pred(b)
        recs = b.prep.records if b.prep else []
        failed = sum(1 for i in range(processed) if fail(i, recs[i][0]))
        b.obj["request_counts"] = {"total": len(recs), "completed": processed - failed, "failed": failed}

    @staticmethod
    def _render_key(b: Batch, processed: int, tail_code: str | None) -> tuple[Any, ...]:
        return (processed, tail_code, json.dumps(b.behaviour, sort_keys=True))

    @staticmethod
    def _expected_end(b: Batch) -> tuple[int, str | None] | None:
        """(processed, tail_code) the batch will finish with if nobody intervenes."""
        prep = b.prep
        if prep is None or prep.errors or not prep.records:
            return None
        o = b.behaviour["outcome"]
        if o in ("failed_validation", "token_limit_exceeded"):
            return None
        if o == "expired":
            return b.cut(), "batch_expired"
        if o == "cancelled":
            return b.cut(), "batch_cancelled"
        return b.n(), None

    def _prerender(self, b: Batch) -> None:
        """Render the expected final files in the background, so the retrieve that
        reaches the terminal status does not pay for 100k lines of JSON."""
        try:
            end = self._expected_end(b)
            if end is not None:
                key = self._render_key(b, *end)
                b.prerendered = (key, render_results(b, end[0], end[1], self._fail_pred(b), self._invalid_pred(b)))
        except Exception:
            b.prerendered = None
        finally:
            b.prerender_done.set()

    def _finish(self, b: Batch, status: str, processed: int, tail_code: str | None) -> None:
        if b.prerender_started:
            b.prerender_done.wait()
        key = self._render_key(b, processed, tail_code)
        if b.prerendered is not None and b.prerendered[0] == key:
            out, err, usage_in, usage_out = b.prerendered[1]
        else:
            out, err, usage_in, usage_out = render_results(b, processed, tail_code, self._fail_pred(b), self._invalid_pred(b))
        b.prerendered = None
        cut = b.behaviour.get("cut_output_file")
        if out and cut:
            out = out[: int(len(out) * float(cut))]
            if out.endswith(b"\n"):  # cut mid-line, always
                out = out[:-2]
        if out:
            b.obj["output_file_id"] = self.files.put(out, f"{b.id}_output.jsonl", "batch_output")["id"]
        if err:
            b.obj["error_file_id"] = self.files.put(err, f"{b.id}_error.jsonl", "batch_output")["id"]
        for kind in b.behaviour.get("missing_files") or []:
            # expired at once: the batch still names the file, the file is gone (404)
            fid = b.obj.get(f"{kind}_file_id")
            if fid:
                self.files.delete(fid)
        n = b.n()
        fail = self._fail_pred(b)
        recs = b.prep.records if b.prep else []
        failed_processed = sum(1 for i in range(processed) if fail(i, recs[i][0]))
        b.obj["request_counts"] = {
            "total": n,
            "completed": processed - failed_processed,
            "failed": failed_processed + (n - processed),
        }
        b.obj["usage"] = _usage(usage_in, usage_out)
        now = _now()
        b.obj["status"] = status
        if status == "completed":
            b.obj["completed_at"] = now
        elif status == "expired":
            b.obj["expired_at"] = now
        elif status == "cancelled":
            b.obj["cancelled_at"] = now
        b.final_n = n
        if b.prep is not None:
            b.prep.records = []  # the files hold the results now; free the memory


def advance_on_retrieve(b: Any, mode: str, done: Callable[[], bool], step: Callable[[Any], bool], timed: Callable[[Any], None]) -> None:
    """What one retrieve does to a batch's status (OpenAI's and Anthropic's), under its lock."""
    b.retrieves += 1
    if mode == "immediate":
        while not done() and step(b):
            pass
    elif mode == "per-retrieve":
        b.pending_retrieves += 1
        if b.pending_retrieves >= int(b.behaviour.get("retrieves_per_step") or 1):
            b.pending_retrieves = 0
            step(b)
    else:
        timed(b)


def _int_param(query: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid '{name}': expected an integer, but got '{raw}' instead.", param=name, code="invalid_type")
    if v < lo:
        raise ApiError(400, f"Invalid '{name}': integer below minimum value. Expected a value >= {lo}, but got {v} instead.", param=name, code="integer_below_min_value")
    if v > hi:
        raise ApiError(400, f"Invalid '{name}': integer above maximum value. Expected a value <= {hi}, but got {v} instead.", param=name, code="integer_above_max_value")
    return v


# ---------------------------------------------------------------------------- output rendering

_SUCCESS_TMPL = (
    '{"id": "%s", "custom_id": %s, "response": {"status_code": 200, "request_id": "%s", "body": '
    '{"id": "chatcmpl-%s", "object": "chat.completion", "created": %d, "model": %s, "choices": '
    '[{"index": 0, "message": {"role": "assistant", "content": %s, "refusal": %s, "annotations": []}, '
    '"logprobs": null, "finish_reason": "%s"}], "usage": {"prompt_tokens": %d, "completion_tokens": %d, '
    '"total_tokens": %d, "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}, '
    '"completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, '
    '"rejected_prediction_tokens": 0}}, "service_tier": "default", "system_fingerprint": "fp_fake0000"}}, "error": null}'
)

_FAIL_BODIES = {
    "server_error": (500, {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": None, "code": None}),
    "invalid_request": (400, {"message": "Invalid 'messages[1].content': string too long. Expected a string with maximum length 1048576.", "type": "invalid_request_error", "param": "messages[1].content", "code": "string_above_max_length"}),
    "context_length": (400, {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}),
}
_TAIL_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
    "request_timeout": "The request timed out.",
}


def _invalid_content(kind: str, content: str) -> tuple[str | None, str | None, str]:
    """(content, refusal, finish_reason) for an invalid answer of the given kind."""
    if kind == "refusal":
        return None, "I'm sorry, but I can't help with that request.", "stop"
    if kind == "length":
        return content[: max(1, len(content) // 2)], None, "length"
    if kind == "malformed":
        return "Here is the analysis: " + content.replace('"', "'"), None, "stop"
    if kind == "content_filter":
        return None, None, "content_filter"
    # schema: valid JSON that breaks the strict schema
    try:
        obj = json.loads(content)
    except ValueError:
        obj = {}
    if isinstance(obj, dict):
        obj.pop("summary", None)
        obj["confidence"] = "very high"
        obj["unexpected_key"] = True
    return json.dumps(obj), None, "stop"


def render_results(b: Batch, processed: int, tail_code: str | None, fail, invalid) -> tuple[bytes, bytes, int, int]:
    """Build the output and error JSONL files for the first `processed` requests plus the
    `tail_code` error lines for the rest. Returns (output, errors, input_tokens, output_tokens)."""
    beh = b.behaviour
    recs = b.prep.records if b.prep else []
    model = json.dumps((b.prep.model if b.prep else None) or "gpt-fake")
    created = _now()
    hexid = b.id[len("batch_") :][:12]
    out: list[str] = []
    err: list[str] = []
    fail_kinds = beh.get("fail_kinds") or ["server_error"]
    invalid_kinds = beh.get("invalid_kinds") or ["refusal"]
    tin = tout = 0
    n_fail = n_invalid = 0
    dumps = json.dumps

    def success(i: int, cid: str, content: str | None, refusal: str | None, finish: str, ptok: int, suffix: str = "") -> str:
        ctok = approx_tokens(content or refusal or "")
        return _SUCCESS_TMPL % (
            f"batch_req_{hexid}{suffix}{i:012x}",
            dumps(cid),
            f"req_{hexid}{suffix}{i:012x}",
            f"{hexid}{suffix}{i:012x}",
            created,
            model,
            dumps(content),
            dumps(refusal),
            finish,
            ptok,
            ctok,
            ptok + ctok,
        ), ctok

    for i in range(processed):
        cid, content, ptok = recs[i]
        if fail(i, cid):
            kind = fail_kinds[n_fail % len(fail_kinds)]
            n_fail += 1
            rid = f"batch_req_{hexid}{i:012x}"
            if kind == "request_timeout":
                err.append(dumps({"id": rid, "custom_id": cid, "response": None, "error": {"code": kind, "message": _TAIL_MESSAGES[kind] + b.echo}}))
            else:
                status, e = _FAIL_BODIES[kind]
                e = {**e, "message": e["message"] + b.echo}
                err.append(
                    dumps(
                        {
                            "id": rid,
                            "custom_id": cid,
                            "response": {"status_code": status, "request_id": f"req_{hexid}{i:012x}", "body": {"error": e}},
                            "error": None,
                        }
                    )
                )
            continue
        refusal, finish = None, "stop"
        if invalid(i, cid):
            kind = invalid_kinds[n_invalid % len(invalid_kinds)]
            n_invalid += 1
            content, refusal, finish = _invalid_content(kind, content)
        line, ctok = success(i, cid, content, refusal, finish, ptok)
        tin += ptok
        tout += ctok
        out.append(line)
    for i in range(processed, len(recs)):
        cid = recs[i][0]
        err.append(
            dumps(
                {
                    "id": f"batch_req_{hexid}{i:012x}",
                    "custom_id": cid,
                    "response": None,
                    "error": {"code": tail_code, "message": _TAIL_MESSAGES.get(tail_code or "", "Not executed.") + b.echo},
                }
            )
        )
    # anomalies: duplicated and unknown custom_ids in the output file
    dup = int(beh.get("duplicate_custom_ids") or 0)
    if dup and processed:
        for i in range(min(dup, processed)):
            cid, content, ptok = recs[i]
            out.append(success(i, cid, content, None, "stop", ptok, "d")[0])
    for k in range(int(beh.get("unknown_custom_ids") or 0)):
        content = json.dumps({"note": "answer for a request that was never sent"})
        out.append(success(k, f"unknown-{k}", content, None, "stop", 10, "u")[0])
    order = beh.get("output_order") or "shuffled"
    if order == "shuffled":
        rng = random.Random(b.id)
        rng.shuffle(out)
        rng.shuffle(err)
    elif order == "reversed":
        out.reverse()
        err.reverse()
    out_b = ("\n".join(out) + "\n").encode() if out else b""
    err_b = ("\n".join(err) + "\n").encode() if err else b""
    return out_b, err_b, tin, tout


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)
