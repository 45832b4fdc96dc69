"""HTTP layer of the fake OpenAI Files + Batches API (stdlib only).

    from fake_provider.server import FakeOpenAI
    fake = FakeOpenAI()                 # api_key defaults to sk-fake-test-key
    base_url = fake.start()             # http://127.0.0.1:PORT/v1, served by a background thread
    fake.configure({"next_batch": {"outcome": "completed_mixed"}})
    fake.stop()
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import anthropic
from .provider import (
    FAULT_PRESETS,
    ApiError,
    FakeProvider,
    Resp,
    error_resp,
    http_date,
    mask_key,
)

_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)


class _BodyError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], provider: FakeProvider, verbose: bool = False):
        self.provider = provider
        self.verbose = verbose
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request_thread(self, request, client_address):  # type: ignore[override]
        with self.conns_lock:
            self.conns.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.conns_lock:
                self.conns.discard(request)

    def close_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1.0"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out in one write, and without Nagle's delay (a separate
        # small header segment + delayed ACK costs ~40 ms per request otherwise)
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    # ------------------------------------------------------------------ body

    def _read_exact(self, n: int, max_bytes: int) -> bytearray:
        if n > max_bytes:
            raise _BodyError(413, f"Request body of {n} bytes exceeds the limit of {max_bytes} bytes.")
        buf = bytearray(n)
        mv = memoryview(buf)
        got = 0
        while got < n:
            r = self.rfile.readinto(mv[got:])
            if not r:
                raise _BodyError(400, f"Request body truncated: got {got} of {n} bytes.")
            got += r
        return buf

    def _read_body(self, max_bytes: int) -> bytearray:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise _BodyError(400, "Chunked request body truncated.")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BodyError(400, "Bad chunk size in chunked request body.")
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65536)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    return out
                if len(out) + size > max_bytes:
                    raise _BodyError(413, f"Request body exceeds the limit of {max_bytes} bytes.")
                out += self._read_exact(size, max_bytes)
                self.rfile.readline(16)  # CRLF after the chunk
        cl = self.headers.get("Content-Length")
        if not cl:
            return bytearray()
        try:
            n = int(cl)
        except ValueError:
            raise _BodyError(400, "Bad Content-Length.")
        return self._read_exact(n, max_bytes)

    # ------------------------------------------------------------------ sending

    def _send(self, resp: Resp, request_id: str, t0: float, truncate_to: int | None = None) -> None:
        body = resp.body
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", request_id)
        self.send_header("request-id", request_id)  # Anthropic's name for it
        self.send_header("openai-version", "2020-10-01")
        self.send_header("openai-organization", "org-fake")
        self.send_header("openai-processing-ms", str(int((time.monotonic() - t0) * 1000)))
        for k, v in resp.headers:
            self.send_header(k, v)
        if truncate_to is not None or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self._headers_buffer.append(b"\r\n")
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        if truncate_to is None and len(body) <= 1 << 20:
            self.wfile.write(head + bytes(body))
            return
        self.wfile.write(head)
        if truncate_to is not None:
            self.wfile.write(memoryview(body)[: max(0, min(truncate_to, len(body) - 1))])
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            self.wfile.write(body)

    def _abort(self, how: str) -> None:
        """Close the connection without sending a response (reset: RST, close: FIN)."""
        self.close_connection = True
        try:
            if how == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()  # drop the makefile reference so close() really closes (RST)
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self) -> None:
        t0 = time.monotonic()
        request_id = "req_" + uuid.uuid4().hex
        prov = self.server.provider
        method = self.command.upper()
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = dict(parse_qsl(url.query))
        entry: dict[str, Any] = {"method": method, "path": path, "status": None, "request_id": request_id, "fault": None}
        prefix = prov.config.get("path_prefix") or ""
        if prefix and not path.startswith("/_fake"):
            # a gateway mounting the API under a path: only requests under it reach the API
            path = path[len(prefix) :] if path.startswith(prefix + "/") else "/_outside_prefix" + path
        self._anthropic = path.startswith("/v1/messages")
        if self._anthropic:
            entry["x_api_key"] = self.headers.get("x-api-key") is not None
            entry["authorization"] = self.headers.get("Authorization") is not None
            entry["anthropic_version"] = self.headers.get("anthropic-version")
        try:
            try:
                body = self._read_body(prov.config["max_upload_bytes"] + 1024 * 1024)
            except _BodyError as e:
                self.close_connection = True
                raise ApiError(e.status, str(e))

            if path.startswith("/_fake"):
                resp = self._control(method, path, query, body)
                entry["status"] = resp.status
                self._send(resp, request_id, t0)
                return

            fault = prov.take_fault(method, path) if path.startswith("/v1") else None
            if fault:
                entry["fault"] = fault["kind"]
                if fault.get("delay"):
                    time.sleep(float(fault["delay"]))
                kind = fault["kind"]
                if kind == "delay":
                    fault = None
                elif not fault.get("after_action") and kind in ("reset", "close"):
                    entry["status"] = kind
                    prov.log_request(entry)
                    self._abort(kind)
                    return
                elif not fault.get("after_action") and kind != "truncate":
                    resp = self._fault_response(fault)
                    entry["status"] = resp.status
                    prov.log_request(entry)
                    self._send(resp, request_id, t0)
                    return

            resp = self._api(method, path, query, body, request_id)
            if fault:  # after the action (or truncate)
                kind = fault["kind"]
                if kind in ("reset", "close"):
                    entry["status"] = kind
                    prov.log_request(entry)
                    self._abort(kind)
                    return
                if kind == "truncate":
                    n = len(resp.body)
                    cut = fault.get("truncate_bytes")
                    if cut is None:
                        cut = int(n * float(fault.get("truncate_fraction", 0.5)))
                    entry["status"] = resp.status
                    prov.log_request(entry)
                    self._send(resp, request_id, t0, truncate_to=int(cut))
                    return
                resp = self._fault_response(fault)
            entry["status"] = resp.status
            prov.log_request(entry)
            self._send(resp, request_id, t0)
        except ApiError as e:
            entry["status"] = e.status
            prov.log_request(entry)
            self._send(self._error_resp(e, request_id), request_id, t0)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug in the fake: answer 500 rather than hang the client
            entry["status"] = 500
            prov.log_request(entry)
            self.close_connection = True
            try:
                self._send(self._error_resp(ApiError(500, f"fake provider internal error: {e!r}", "server_error"), request_id), request_id, t0)
            except OSError:
                pass

    def _fault_response(self, f: dict[str, Any]) -> Resp:
        kind = f["kind"]
        status, message, typ, code = FAULT_PRESETS[kind]
        status = int(f.get("status", status))
        message = f.get("message", message)
        typ = f.get("type", typ)
        code = f.get("code", code)
        if "body" in f:
            raw = f["body"]
            resp = Resp(status, raw.encode() if isinstance(raw, str) else json.dumps(raw).encode())
            resp.content_type = str(f.get("content_type") or resp.content_type)
        elif kind == "bad_gateway" and "message" not in f:
            resp = Resp(status, _BAD_GATEWAY_HTML, "text/html")
        else:
            resp = self._error_resp(ApiError(status, message, f.get("type"), f.get("param"), code) if self._anthropic
                                    else ApiError(status, message, typ, f.get("param"), code), None)
        if f.get("retry_after") is not None:
            ra = f["retry_after"]
            resp.headers.append(("retry-after", str(int(ra)) if float(ra).is_integer() else str(ra)))
        if f.get("retry_after_ms") is not None:
            resp.headers.append(("retry-after-ms", str(f["retry_after_ms"])))
        if f.get("retry_after_date") is not None:
            resp.headers.append(("retry-after", http_date(float(f["retry_after_date"]))))
        for k, v in (f.get("headers") or {}).items():
            resp.headers.append((str(k), str(v)))
        return resp

    def _error_resp(self, e: ApiError, request_id: str | None) -> Resp:
        if not self._anthropic:
            return error_resp(e)
        r = Resp.json(anthropic.error_body(e.status, e.message, e.type, request_id), e.status)
        r.headers.extend(e.headers)
        return r

    def _anthropic_api(self, method: str, path: str, query: dict[str, str], body: bytearray) -> Resp:
        """``/v1/messages/batches...``: key in ``x-api-key`` (or ``Authorization: Bearer``, as the
        official SDK sends it), an ``anthropic-version`` header, Anthropic's error shape."""
        prov = self.server.provider
        key = self.headers.get("x-api-key")
        auth = self.headers.get("Authorization") or ""
        if key is None and auth.startswith("Bearer "):
            key = auth[7:]
        if key is None or key.strip() != prov.api_key:
            prov.count("auth_failures")
            msg = "invalid x-api-key" if key else "x-api-key header is required"
            raise ApiError(401, msg, "authentication_error")
        if not self.headers.get("anthropic-version"):
            raise ApiError(400, "anthropic-version: header is required", "invalid_request_error")
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        rest = [unquote(p) for p in path[len(anthropic.BATCHES_PATH) :].split("/")[1:]]
        a = prov.anthropic
        if path.startswith(anthropic.BATCHES_PATH + "/") or path == anthropic.BATCHES_PATH:
            if not rest:
                if method == "POST":
                    if len(body) > anthropic.MAX_BODY_BYTES:
                        raise ApiError(413, f"Request body of {len(body)} bytes exceeds the {anthropic.MAX_BODY_BYTES} byte limit.", "request_too_large")
                    if prov.config["validate"] == "on-first-poll":
                        deferred = a.create_deferred(body, host, self.headers.get("x-api-key"))
                        if deferred is not None:
                            return deferred
                    return a.create(_json_body(body), host, self.headers.get("x-api-key"))
                if method == "GET":
                    return a.list(query, host)
            elif len(rest) == 1 and method == "GET":
                return a.retrieve(rest[0], host)
            elif len(rest) == 1 and method == "DELETE":
                return a.delete(rest[0])
            elif len(rest) == 2 and rest[1] == "cancel" and method == "POST":
                return a.cancel(rest[0], host)
            elif len(rest) == 2 and rest[1] == "results" and method == "GET":
                return a.results(rest[0])
        raise ApiError(404, f"Not found: {method} {path}", "not_found_error")

    def _api(self, method: str, path: str, query: dict[str, str], body: bytearray, request_id: str) -> Resp:
        prov = self.server.provider
        if self._anthropic:
            return self._anthropic_api(method, path, query, body)
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or auth[7:].strip() != prov.api_key:
            prov.count("auth_failures")
            given = auth[7:].strip() if auth.startswith("Bearer ") else ""
            if given:
                msg = (
                    f"Incorrect API key provided: {mask_key(given)}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys."
                )
            else:
                msg = (
                    "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
            raise ApiError(401, msg, "invalid_request_error", None, "invalid_api_key")
        parts = [unquote(p) for p in path.split("/")[1:]]  # ['v1', 'files', ...]
        if len(parts) >= 2 and parts[0] == "v1":
            res, rest = parts[1], parts[2:]
            if res == "files":
                if not rest:
                    if method == "POST":
                        return prov.upload(self.headers.get("Content-Type") or "", body)
                    if method == "GET":
                        return prov.file_list(query)
                elif len(rest) == 1:
                    if method == "GET":
                        return prov.file_get(rest[0])
                    if method == "DELETE":
                        return prov.file_delete(rest[0])
                elif len(rest) == 2 and rest[1] == "content" and method == "GET":
                    return prov.file_content(rest[0])
            elif res == "batches":
                if not rest:
                    if method == "POST":
                        return prov.batch_create(_json_body(body), self.headers.get("Authorization"))
                    if method == "GET":
                        return prov.batch_list(query)
                elif len(rest) == 1 and method == "GET":
                    return prov.batch_retrieve(rest[0])
                elif len(rest) == 2 and rest[1] == "cancel" and method == "POST":
                    return prov.batch_cancel(rest[0])
        raise ApiError(404, f"Invalid URL ({method} {path})")

    def _control(self, method: str, path: str, query: dict[str, str], body: bytearray) -> Resp:
        prov = self.server.provider
        if path == "/_fake/health":
            return Resp.json({"ok": True})
        if path == "/_fake/config":
            if method == "POST":
                return Resp.json(prov.configure(_json_body(body)))
            return Resp.json(prov.config_snapshot())
        if path == "/_fake/reset" and method == "POST":
            prov.reset()
            if body.strip():
                prov.configure(_json_body(body))
            return Resp.json({"ok": True})
        if path == "/_fake/state" and method == "GET":
            return Resp.json(prov.state())
        if path.startswith("/_fake/batches/"):
            bid = unquote(path[len("/_fake/batches/") :])
            return prov.control_batch(bid, _json_body(body) if method == "POST" and body.strip() else None)
        raise ApiError(404, f"Invalid URL ({method} {path})")


def _json_body(body: bytearray) -> Any:
    try:
        return json.loads(body) if body.strip() else {}
    except ValueError:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
            "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        )


class FakeOpenAI:
    """A running fake; ``start()`` returns the base URL (ending in /v1)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        data_dir: str | None = None,
        advance: str = "per-retrieve",
        step_seconds: float = 1.0,
        max_requests_per_batch: int = 50_000,
        verbose: bool = False,
        validate: str = "on-create",
    ):
        self.provider = FakeProvider(api_key, data_dir, advance, step_seconds, max_requests_per_batch, validate)
        self.host, self.port, self.verbose = host, port, verbose
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # the provider's handy methods, for in-process tests
    @property
    def api_key(self) -> str:
        return self.provider.api_key

    def configure(self, cfg: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self.provider.configure({**(cfg or {}), **kw})

    def reset(self) -> None:
        self.provider.reset()

    def state(self) -> dict[str, Any]:
        return self.provider.state()

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def bind(self) -> None:
        self._httpd = _Server((self.host, self.port), self.provider, self.verbose)
        self.port = self._httpd.server_address[1]

    def serve_forever(self) -> None:
        assert self._httpd is not None
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> str:
        if self._httpd is None:
            self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "FakeOpenAI":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
