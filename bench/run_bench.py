#!/usr/bin/env python3
"""The ai_batch benchmark: `make bench` (see BENCHMARKS.md).

    python bench/run_bench.py --extension build/release/ai_batch.duckdb_extension \
        [--sizes 1000[,10000,50000,100000]] [--runs 3] [--seed 1] [--skip-rows 1000000]
        [--no-skip-check] [--no-collect] [--tokbench auto|always|never]
        [--provider openai|anthropic|both] [--out DIR]

For each size: generate the corpus once (cached in bench/out/ while gen_corpus.py does
not change), then per run, on fresh copies of the database and against one loopback
fake provider (a separate process, reset before each run):

- extension submit: `batch_submit('product-labeling', $$SELECT id FROM issues$$)` in a
  child process (bench/ext_run.py) with AI_BATCH_PROFILE set: wall time, stage times,
  peak RSS (wait4 of that child);
- peer submit: bench/peer_submit.py (duckdb + openai SDK + json.dumps) on the same data;
- the fake alone: a raw http.client upload of the peer's JSONL and a raw download of an
  output file;
- collect: the fake completes every batch first (so its own rendering is not timed),
  then `batch_refresh()` (only if the extension has it) and bench/peer_collect.py.

With --provider anthropic or both (the default), each run then does the same on the
fake's Anthropic side, after the OpenAI part and on a reset fake, so the OpenAI figures
are taken exactly as before: the extension's submit with model := 'claude-haiku-4-5'
(ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL), the fake completes the batches, batch_refresh(),
then the fake alone: a raw download of one results stream, and a raw create (POST
/v1/messages/batches) of the exact body the extension streams for its first job. Anthropic
has no file upload: the requests travel in the create body, which the fake parses
(json.loads) before it answers, so the extension's upload+create includes that parse;
the raw create measures it. The body is captured once per size by a submit stopped with
AI_BATCH_FAILPOINT=submit_after_upload (the request file is then left in its spool
directory). There is no Anthropic peer script.

Once per invocation: the skip check over --skip-rows issues x --skip-rows analyses, the
raw TCP loopback speed, and the token-counting floor (core/examples/tokbench.rs).

Prints the tables (medians over --runs) and the command line; writes everything as JSON
to bench/out/results-<time>.json and bench/out/latest.json. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
WORK = OUT / "work"
PY = sys.executable
API_KEY = "sk-fake-test-key"
PROCESSOR = "product-labeling"
SUBMIT_SQL = f"SELECT * FROM batch_submit('{PROCESSOR}', $$SELECT id FROM issues$$)"
ANTHROPIC_MODEL = "claude-haiku-4-5"
ANTHROPIC_VERSION = "2023-06-01"
PROVIDERS = ("openai", "anthropic")
# The extension's submit statement per provider: the same, with a Claude model for Anthropic.
SUBMIT_SQLS = {
    "openai": SUBMIT_SQL,
    "anthropic": f"SELECT * FROM batch_submit('{PROCESSOR}', $$SELECT id FROM issues$$, model := '{ANTHROPIC_MODEL}')",
}

sys.path.insert(0, str(BENCH))
import gen_corpus  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# The fake-alone figures of a size: {name: (key of a run, field)} (see run_medians).
FAKE_OPENAI = {"raw_upload_mb": ("fake_raw_upload", "bytes"), "raw_upload_mb_s": ("fake_raw_upload", "mb_s"),
               "raw_download_mb": ("fake_raw_download", "bytes"), "raw_download_mb_s": ("fake_raw_download", "mb_s"),
               "complete_after_ext_s": ("fake_complete_after_ext_s", None)}
FAKE_ANTHROPIC = {"raw_create_mb": ("fake_raw_create", "bytes"), "raw_create_s": ("fake_raw_create", "seconds"),
                  "raw_create_mb_s": ("fake_raw_create", "mb_s"), "raw_create_requests": ("fake_raw_create", "requests"),
                  "raw_create_parsed_s": ("fake_raw_create_parsed", "seconds"),
                  "raw_create_parsed_mb_s": ("fake_raw_create_parsed", "mb_s"),
                  "raw_results_mb": ("fake_raw_results", "bytes"), "raw_results_mb_s": ("fake_raw_results", "mb_s"),
                  "complete_after_ext_s": ("fake_complete_after_ant_s", None)}


def run_medians(runs: list[dict], spec: dict[str, tuple[str, str | None]]) -> dict:
    """{name: median over the runs of run[key][field]} for spec {name: (key, field)}
    (field None: run[key] itself; a field "bytes" is given in MB); None where no run has it."""
    out = {}
    for name, (key, field) in spec.items():
        vals = [r.get(key) if field is None else (r.get(key) or {}).get(field) for r in runs]
        out[name] = median(v / 1e6 if field == "bytes" and v is not None else v for v in vals)
    return out


# --------------------------------------------------------------------------- child processes

def run_child(cmd: list[str], env: dict[str, str] | None = None, tag: str = "child") -> dict:
    """Runs cmd; returns wall seconds, exit status and the child's own peak RSS (wait4)."""
    stdout = open(WORK / f"{tag}.stdout", "w")
    stderr = open(WORK / f"{tag}.stderr", "w")
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=stdout, stderr=stderr)
    _pid, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    stdout.close()
    stderr.close()
    res = {"wall": wall, "rc": p.returncode, "maxrss_kb": ru.ru_maxrss}
    if p.returncode != 0:
        res["stderr"] = (WORK / f"{tag}.stderr").read_text()[-3000:]
    return res


def peak_mb(r: dict) -> float:
    """Peak RSS of a child in MB: its own VmHWM when it reported one. (wait4's ru_maxrss
    is not used when VmHWM is known: Linux carries the parent's RSS at fork into it.)"""
    kb = r.get("vmhwm_kb") or r.get("maxrss_kb") or 0
    return kb / 1024


def read_profile(path: Path, op: str) -> dict:
    """Sums the AI_BATCH_PROFILE lines of one op: {stage: {"seconds", "items"}}."""
    stages: dict[str, dict] = {}
    if not path.exists():
        return stages
    for line in path.read_text().splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("op") != op:
            continue
        s = stages.setdefault(d["stage"], {"seconds": 0.0, "items": 0})
        s["seconds"] += float(d.get("seconds") or 0)
        s["items"] += int(d.get("items") or 0)
    return stages


def ext_sql(ext: Path, db: Path, sqls: list[str], tag: str, env: dict | None = None) -> dict:
    """Runs SQL statements in a fresh process with the extension loaded (ext_run.py)."""
    out = WORK / f"{tag}.json"
    prof = WORK / f"{tag}.profile.jsonl"
    for p in (out, prof):
        if p.exists():
            p.unlink()
    cmd = [PY, str(BENCH / "ext_run.py"), "--extension", str(ext), "--db", str(db), "--out", str(out)]
    for s in sqls:
        cmd += ["--sql", s]
    r = run_child(cmd, {**(env or {}), "AI_BATCH_PROFILE": str(prof)}, tag)
    if out.exists():
        r.update(json.loads(out.read_text()))
    r["profile_path"] = prof
    return r


# --------------------------------------------------------------------------- the fake provider

class Fake:
    def __init__(self):
        self.proc = None
        self.port = None

    def start(self) -> None:
        pf = WORK / "fake.port"
        if pf.exists():
            pf.unlink()
        self.log = open(WORK / "fake.log", "w")
        self.proc = subprocess.Popen(
            [PY, "-m", "fake_provider", "--host", "127.0.0.1", "--port", "0", "--port-file", str(pf),
             "--advance", "immediate", "--validate", "on-first-poll", "--api-key", API_KEY],
            cwd=ROOT, stdout=self.log, stderr=self.log)
        for _ in range(200):
            if pf.exists():
                self.port = int(pf.read_text().strip())
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake provider exited: {(WORK / 'fake.log').read_text()[-2000:]}")
            time.sleep(0.05)
        else:
            raise RuntimeError("fake provider did not start")
        self.call("GET", "/_fake/health")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """Anthropic's base URL: the root its /v1/... paths hang off."""
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body=None, auth: bool = False, timeout: float = 120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {API_KEY}"
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        if r.status >= 400:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data) if data else None

    def reset(self) -> None:
        self.call("POST", "/_fake/reset")
        # restart the fake's peak RSS (VmHWM) from here, so that each half of a run
        # (OpenAI, Anthropic) reports its own; "5" resets it (Linux 4.0+), best effort
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    def state(self) -> dict:
        return self.call("GET", "/_fake/state")

    def complete_all(self, timeout: float = 300) -> float:
        """Steps every batch (OpenAI's and Anthropic's) to its final status (waits for
        validation and rendering)."""
        t = time.perf_counter()
        deadline = time.monotonic() + timeout
        while True:
            st = self.state()
            pending = [b["id"] for b in st["batches"] if b["status"] not in
                       ("completed", "failed", "expired", "cancelled")]
            pending += [b["id"] for b in st.get("message_batches") or [] if b["processing_status"] != "ended"]
            if not pending:
                return time.perf_counter() - t
            if time.monotonic() > deadline:
                raise RuntimeError(f"fake batches did not finish: {pending}")
            for bid in pending:
                self.call("POST", f"/_fake/batches/{bid}", {"step": 5})

    def peak_rss_mb(self) -> float | None:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def first_line(self, file_id: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", f"/v1/files/{file_id}/content", headers={"Authorization": f"Bearer {API_KEY}"})
        r = conn.getresponse()
        buf = b""
        while b"\n" not in buf:
            chunk = r.read(1 << 16)
            if not chunk:
                break
            buf += chunk
        conn.close()
        return buf.split(b"\n", 1)[0]

    def raw_upload(self, path: Path) -> dict:
        """multipart POST /v1/files with http.client, file streamed in 1 MiB chunks."""
        b = "benchboundary" + uuid.uuid4().hex
        pre = (f"--{b}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
               f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"raw.jsonl\"\r\n"
               f"Content-Type: application/octet-stream\r\n\r\n").encode()
        post = f"\r\n--{b}--\r\n".encode()
        size = path.stat().st_size
        t = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        conn.putrequest("POST", "/v1/files")
        conn.putheader("Authorization", f"Bearer {API_KEY}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={b}")
        conn.putheader("Content-Length", str(len(pre) + size + len(post)))
        conn.endheaders()
        conn.send(pre)
        buf = bytearray(1 << 20)
        mv = memoryview(buf)
        with open(path, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                conn.sock.sendall(mv[:n])
        conn.send(post)
        r = conn.getresponse()
        body = json.loads(r.read())
        conn.close()
        dt = time.perf_counter() - t
        return {"bytes": size, "seconds": dt, "mb_s": size / 1e6 / dt, "file_id": body.get("id")}

    def raw_create(self, jsonl: Path, validate: str = "on-first-poll") -> dict:
        """POST /v1/messages/batches with http.client: the body the extension streams for
        this request file ({"requests":[line,line,...]}), sent in 1 MiB chunks, with the
        fake's `validate` set to `validate` for it: on-first-poll (how the benchmark runs
        it) reads the body and scans it for the custom_ids before answering; on-create
        also parses all of it (json.loads) first."""
        self.call("POST", "/_fake/config", {"validate": validate})
        try:
            return self._raw_create(jsonl)
        finally:
            self.call("POST", "/_fake/config", {"validate": "on-first-poll"})

    def _raw_create(self, jsonl: Path) -> dict:
        data = jsonl.read_bytes()
        body = b'{"requests":[' + data[:-1].replace(b"\n", b",") + b"]}"
        del data
        t = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        conn.putrequest("POST", "/v1/messages/batches")
        conn.putheader("x-api-key", API_KEY)
        conn.putheader("anthropic-version", ANTHROPIC_VERSION)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        mv = memoryview(body)
        for i in range(0, len(body), 1 << 20):
            conn.sock.sendall(mv[i:i + (1 << 20)])
        r = conn.getresponse()
        answer = json.loads(r.read())
        conn.close()
        dt = time.perf_counter() - t
        if r.status >= 400:
            raise RuntimeError(f"raw create: {r.status} {answer}")
        return {"bytes": len(body), "seconds": dt, "mb_s": len(body) / 1e6 / dt,
                "requests": (answer.get("request_counts") or {}).get("processing"), "batch_id": answer.get("id")}

    def raw_results(self, batch_id: str) -> dict:
        """GET the results stream of an ended message batch, raw."""
        return self.raw_download(None, f"/v1/messages/batches/{batch_id}/results",
                                 {"x-api-key": API_KEY, "anthropic-version": ANTHROPIC_VERSION})

    def raw_download(self, file_id: str | None, path: str | None = None, headers: dict | None = None) -> dict:
        t = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        conn.request("GET", path or f"/v1/files/{file_id}/content",
                     headers=headers or {"Authorization": f"Bearer {API_KEY}"})
        r = conn.getresponse()
        n = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
        conn.close()
        dt = time.perf_counter() - t
        return {"bytes": n, "seconds": dt, "mb_s": n / 1e6 / dt}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


SINK = r"""
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); buf = bytearray(1 << 20); n = 0
while True:
    k = c.recv_into(buf)
    if not k:
        break
    n += k
c.sendall(str(n).encode()); c.close()
"""


def tcp_loopback_floor(mb: int = 256) -> dict:
    """Raw TCP over loopback between two Python processes (sendall / recv_into)."""
    p = subprocess.Popen([PY, "-c", SINK], stdout=subprocess.PIPE, text=True)
    port = int(p.stdout.readline())
    chunk = b"x" * (1 << 20)
    s = socket.create_connection(("127.0.0.1", port))
    t = time.perf_counter()
    for _ in range(mb):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    got = int(s.recv(64))
    dt = time.perf_counter() - t
    s.close()
    p.wait()
    return {"bytes": got, "seconds": dt, "mb_s": got / 1e6 / dt}


# --------------------------------------------------------------------------- floors

def find_tokbench() -> Path | None:
    dirs = [os.environ.get("CARGO_TARGET_DIR"), str(ROOT / "target"), "/work/target"]
    for d in dirs:
        if d and (Path(d) / "release" / "examples" / "tokbench").exists():
            return Path(d) / "release" / "examples" / "tokbench"
    return None


def tokbench(mode: str) -> dict:
    if mode == "never":
        return {"skipped": "--tokbench never"}
    exe = find_tokbench()
    if exe is None and mode == "always":
        log("building core/examples/tokbench.rs (cargo build --release --example tokbench)")
        env = {**os.environ}
        env.setdefault("CARGO_TARGET_DIR", str(ROOT / "target"))
        subprocess.run(["cargo", "build", "--release", "-p", "ai_batch_core", "--example", "tokbench"],
                       cwd=ROOT, env=env, check=False)
        exe = find_tokbench()
    if exe is None:
        return {"skipped": "no tokbench binary (build it: cargo build --release -p ai_batch_core --example tokbench, "
                           "or pass --tokbench always)"}
    log(f"token-counting floor: {exe} 800 20000")
    r = subprocess.run([str(exe), "800", "20000"], capture_output=True, text=True, timeout=300)
    text = r.stdout
    out = {"binary": str(exe), "output": text}

    def grab(pattern: str) -> float | None:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None

    out["bpe_openai_1thread_mb_s"] = grab(r"bpe-openai, 1 thread:.*?([\d.]+) MB/s")
    out["tiktoken_rs_1thread_mb_s"] = grab(r"tiktoken-rs, 1 thread:.*?([\d.]+) MB/s")
    out["count_many_all_cores_mb_s"] = grab(r"count_many \(all cores\): ([\d.]+) MB/s")
    out["count_issues_all_cores_mb_s"] = grab(r"count_issues.*?([\d.]+) MB/s of issue text")
    out["count_issues_per_s"] = grab(r"count_issues.*?: (\d+) issues/s")
    return out


# --------------------------------------------------------------------------- corpus + skip DB

def corpus(size: int, seed: int) -> dict:
    gen_hash = hashlib.sha1((BENCH / "gen_corpus.py").read_bytes() + (ROOT / "sql" / "schema.sql").read_bytes()).hexdigest()[:12]
    db = OUT / f"corpus_{size}_seed{seed}.duckdb"
    meta = OUT / f"corpus_{size}_seed{seed}.json"
    if db.exists() and meta.exists():
        m = json.loads(meta.read_text())
        if m.get("generator") == gen_hash:
            log(f"corpus {size}: cached ({m['text_mb']} MB of text)")
            return m
    log(f"corpus {size}: generating")
    m = gen_corpus.generate(size, db, seed, quiet=True)
    m["generator"] = gen_hash
    meta.write_text(json.dumps(m, indent=2, ensure_ascii=False))
    log(f"corpus {size}: {m['issues']} issues, {m['comments']} comments, {m['text_mb']} MB of text in "
        f"{m['total_seconds']} s")
    return m


def skip_db(ext: Path, rows: int) -> Path:
    """The skip-check database, built by gen_skip_db.py in its own process (cached)."""
    db = OUT / f"skip_{rows}.duckdb"
    log(f"skip check: database {db.name} ({rows:,} issues x {rows:,} analyses; built once, then reused)")
    subprocess.run([PY, str(BENCH / "gen_skip_db.py"), "--extension", str(ext), "--rows", str(rows), "--out", str(db)],
                   cwd=ROOT, check=True)
    return db


# --------------------------------------------------------------------------- one run

def copy_db(src: Path, dst: Path) -> None:
    for p in (dst, Path(str(dst) + ".wal")):
        if p.exists():
            p.unlink()
    shutil.copyfile(src, dst)


def submit_env(fake: Fake, provider: str = "openai") -> dict:
    spool = WORK / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    if provider == "anthropic":
        return {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": fake.root_url, "AI_BATCH_SPOOL_DIR": str(spool)}
    return {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": fake.base_url, "AI_BATCH_SPOOL_DIR": str(spool)}


def tag_of(provider: str) -> str:
    """File name part of a provider's child processes (OpenAI's keep their old names)."""
    return "" if provider == "openai" else f"_{provider}"


def run_ext_submit(ext: Path, fake: Fake, src: Path, size: int, provider: str = "openai") -> dict:
    db = WORK / f"ext{tag_of(provider)}.duckdb"
    copy_db(src, db)
    r = ext_sql(ext, db, [SUBMIT_SQLS[provider]], f"ext_submit{tag_of(provider)}_{size}", submit_env(fake, provider))
    stages = read_profile(r["profile_path"], "submit")
    res = {"tool": "extension", "provider": provider, "op": "submit", "db": str(db), "process_wall": r["wall"],
           "peak_rss_mb": peak_mb(r), "rc": r["rc"], "error": r.get("error") or r.get("stderr")}
    if r.get("results"):
        first = r["results"][0]
        res["seconds"] = first["seconds"]
        rows = [dict(zip(first["columns"], row)) for row in first["rows"]]
        res["jobs"] = len(rows)
        res["issues"] = sum(int(x.get("submitted") or 0) for x in rows)
        res["statuses"] = sorted({str(x.get("status")) for x in rows})
        res["est_input_tokens"] = sum(int(x.get("estimated_input_tokens") or 0) for x in rows)
        res["batch_ids"] = [x.get("provider_batch_id") for x in rows]
    res["stages"] = {k: v["seconds"] for k, v in stages.items()}
    # the JSONL size: the item count of the stage that builds the requests
    res["jsonl_bytes"] = next((stages[n]["items"] for n in ("build_jsonl", "build_requests") if n in stages), None)
    res["rss_after_load_mb"] = (r.get("rss_after_load_kb") or 0) / 1024
    res["duckdb_memory_mb"] = (r.get("duckdb_memory_bytes") or 0) / 1e6
    res["load_seconds"] = r.get("load_seconds")
    return res


def run_peer_submit(fake: Fake, src: Path, size: int, template: Path | None) -> dict:
    db = WORK / "peer.duckdb"
    copy_db(src, db)
    out = WORK / f"peer_submit_{size}.json"
    spool = WORK / "peer_spool"
    if spool.exists():
        shutil.rmtree(spool)
    cmd = [PY, str(BENCH / "peer_submit.py"), "--db", str(db), "--spool", str(spool), "--keep-files", "--out", str(out)]
    if template:
        cmd += ["--template", str(template)]
    r = run_child(cmd, {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": fake.base_url}, f"peer_submit_{size}")
    res = {"tool": "peer", "op": "submit", "db": str(db), "process_wall": r["wall"],
           "peak_rss_mb": r["maxrss_kb"] / 1024, "rc": r["rc"], "error": r.get("stderr")}
    if out.exists():
        d = json.loads(out.read_text())
        res["peak_rss_mb"] = peak_mb({**r, **d})
        res.update({k: d[k] for k in ("issues", "jobs", "jsonl_bytes", "est_input_tokens", "stages", "seconds", "files")})
    return res


def run_ext_refresh(ext: Path, fake: Fake, db: Path, size: int, provider: str = "openai") -> dict:
    r = ext_sql(ext, db, ["SELECT * FROM batch_refresh()",
                          "SELECT (SELECT count(*) FROM ai_analyses), "
                          "(SELECT count(*) FROM batch_items WHERE status = 'completed'), "
                          "(SELECT count(*) FROM batch_items WHERE status = 'pending')"],
                f"ext_refresh{tag_of(provider)}_{size}", submit_env(fake, provider))
    stages = read_profile(r["profile_path"], "refresh")
    res = {"tool": "extension", "provider": provider, "op": "collect", "process_wall": r["wall"], "peak_rss_mb": peak_mb(r),
           "rc": r["rc"], "error": r.get("error") or r.get("stderr"),
           "stages": {k: v["seconds"] for k, v in stages.items()},
           "stage_items": {k: v["items"] for k, v in stages.items()}}
    results = r.get("results") or []
    if results:
        res["seconds"] = results[0]["seconds"]
        res["refresh_rows"] = [dict(zip(results[0]["columns"], row)) for row in results[0]["rows"]][:10]
    if len(results) > 1:
        a, c, p = results[1]["rows"][0]
        res.update({"analyses": a, "items_completed": c, "items_pending": p, "results": a})
    return res


def run_peer_collect(fake: Fake, db: Path, size: int) -> dict:
    out = WORK / f"peer_collect_{size}.json"
    if out.exists():
        out.unlink()
    r = run_child([PY, str(BENCH / "peer_collect.py"), "--db", str(db), "--out", str(out)],
                  {"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": fake.base_url}, f"peer_collect_{size}")
    res = {"tool": "peer", "op": "collect", "process_wall": r["wall"], "peak_rss_mb": r["maxrss_kb"] / 1024,
           "rc": r["rc"], "error": r.get("stderr")}
    if out.exists():
        d = json.loads(out.read_text())
        res["peak_rss_mb"] = peak_mb({**r, **d})
        res.update({k: d[k] for k in ("results", "analyses", "download_bytes", "stages", "seconds")})
    return res


def extract_template(fake: Fake) -> Path | None:
    for f in fake.state()["files"]:
        if f.get("purpose") == "batch" and f.get("filename", "").startswith("job_"):
            line = fake.first_line(f["id"])
            tpl = WORK / "template.json"
            json.loads(line)  # must be a request line
            tpl.write_bytes(line)
            return tpl
    return None


def one_run(ext: Path, fake: Fake, src: Path, size: int, run: int, collect: bool, peer_collect: bool,
            state: dict, providers: tuple[str, ...] = ("openai",)) -> dict:
    rec: dict = {"run": run, "loadavg_1min": os.getloadavg()[0]}
    if "openai" in providers:
        openai_part(ext, fake, src, size, run, collect, peer_collect, state, rec)
    if "anthropic" in providers:
        anthropic_part(ext, fake, src, size, run, collect, state, rec)
    return rec


def openai_part(ext: Path, fake: Fake, src: Path, size: int, run: int, collect: bool, peer_collect: bool,
                state: dict, rec: dict) -> None:
    """The OpenAI half of a run: the extension and the peer, the fake alone, collect."""
    fake.reset()
    order = ["ext", "peer"] if (run % 2 == 0 or state.get("template") is None) else ["peer", "ext"]
    for who in order:
        if who == "ext":
            log(f"size {size} run {run + 1}: extension submit")
            rec["ext_submit"] = run_ext_submit(ext, fake, src, size)
            if rec["ext_submit"].get("error"):
                log(f"  extension submit failed: {rec['ext_submit']['error'][:500]}")
            if state.get("template") is None:
                state["template"] = extract_template(fake)
        else:
            log(f"size {size} run {run + 1}: peer submit")
            rec["peer_submit"] = run_peer_submit(fake, src, size, state.get("template"))
            if rec["peer_submit"].get("rc"):
                log(f"  peer submit failed: {(rec['peer_submit'].get('error') or '')[-500:]}")
        # let the fake validate and render everything now, so that it is idle while the
        # next thing is timed and collect timings do not include its rendering
        rec[f"fake_complete_after_{who}_s"] = fake.complete_all()

    # the fake alone: the same JSONL, raw
    files = (rec.get("peer_submit") or {}).get("files") or []
    if files and Path(files[0]).exists():
        rec["fake_raw_upload"] = fake.raw_upload(Path(files[0]))
    for f in files:
        Path(f).unlink(missing_ok=True)
    outs = [b for b in fake.state()["batches"] if b.get("output_file_id")]
    if outs:
        rec["fake_raw_download"] = fake.raw_download(outs[0]["output_file_id"])
        rec["fake_raw_download"]["requests"] = outs[0]["request_counts"]["total"]

    if collect and rec.get("ext_submit", {}).get("rc") == 0:
        log(f"size {size} run {run + 1}: batch_refresh()")
        rec["ext_collect"] = run_ext_refresh(ext, fake, Path(rec["ext_submit"]["db"]), size)
        if rec["ext_collect"].get("error"):
            log(f"  batch_refresh failed: {rec['ext_collect']['error'][:500]}")
    if peer_collect and rec.get("peer_submit", {}).get("rc") == 0:
        log(f"size {size} run {run + 1}: peer collect")
        rec["peer_collect"] = run_peer_collect(fake, Path(rec["peer_submit"]["db"]), size)
    rec["fake_peak_rss_mb"] = fake.peak_rss_mb()


def capture_anthropic_body(ext: Path, fake: Fake, src: Path, size: int) -> Path | None:
    """The request file of the extension's first Anthropic job, the one its create body
    is streamed from: a submit killed at AI_BATCH_FAILPOINT=submit_after_upload (just
    after the job is staged, before any request) leaves it in its spool directory (under
    staged/, where staging keeps it until the batch is recorded)."""
    spool = WORK / "capture_spool"
    if spool.exists():
        shutil.rmtree(spool)
    spool.mkdir(parents=True)
    db = WORK / "capture.duckdb"
    copy_db(src, db)
    log(f"size {size}: capturing the Anthropic create body (a submit stopped at submit_after_upload)")
    env = {**submit_env(fake, "anthropic"), "AI_BATCH_SPOOL_DIR": str(spool), "AI_BATCH_FAILPOINT": "submit_after_upload"}
    r = ext_sql(ext, db, [SUBMIT_SQLS["anthropic"]], f"capture_anthropic_{size}", env)
    # the staged copy (complete) when the build keeps one; the next job's file may be half written
    files = sorted((spool / "staged").glob("*.jsonl")) or sorted(spool.glob("*.jsonl"))
    if r["rc"] != -9 or len(files) != 1:
        log(f"  no capture (exit {r['rc']}, {len(files)} request file(s)): the raw create is not measured")
        return None
    keep = WORK / f"anthropic_body_{size}.jsonl"
    shutil.move(files[0], keep)
    shutil.rmtree(spool)
    return keep


def anthropic_part(ext: Path, fake: Fake, src: Path, size: int, run: int, collect: bool, state: dict,
                   rec: dict) -> None:
    """The Anthropic half of a run, on a reset fake after the OpenAI half: the extension's
    submit, the fake completes the batches, batch_refresh(), then the fake alone (a raw
    results download and a raw create of the extension's first job's body)."""
    fake.reset()
    rec["anthropic_loadavg_1min"] = os.getloadavg()[0]
    log(f"size {size} run {run + 1}: extension submit (anthropic)")
    sub = rec["ant_submit"] = run_ext_submit(ext, fake, src, size, "anthropic")
    if sub.get("error"):
        log(f"  extension submit (anthropic) failed: {sub['error'][:500]}")
    rec["fake_complete_after_ant_s"] = fake.complete_all()
    if collect and sub.get("rc") == 0:
        log(f"size {size} run {run + 1}: batch_refresh() (anthropic)")
        rec["ant_collect"] = run_ext_refresh(ext, fake, Path(sub["db"]), size, "anthropic")
        if rec["ant_collect"].get("error"):
            log(f"  batch_refresh (anthropic) failed: {rec['ant_collect']['error'][:500]}")
    ended = [b for b in fake.state()["message_batches"] if b["processing_status"] == "ended"]
    if ended:  # newest first: the last is the first job's batch
        rec["fake_raw_results"] = fake.raw_results(ended[-1]["id"])
        rec["fake_raw_results"]["requests"] = sum(ended[-1]["request_counts"].values())
    bodies = state.setdefault("anthropic_body", {})
    if size not in bodies:
        bodies[size] = capture_anthropic_body(ext, fake, src, size)
    if bodies[size]:
        rec["fake_raw_create"] = fake.raw_create(bodies[size])
        rec["fake_raw_create_parsed"] = fake.raw_create(bodies[size], "on-create")
    rec["fake_peak_rss_mb_anthropic"] = fake.peak_rss_mb()


# --------------------------------------------------------------------------- summary + tables

SUBMIT_COLS = [  # (column, extension stages, peer stages); stages not listed get a column of their own
    ("select+skip", ["selection", "skip_check"], []),
    ("read", ["read_issues"], ["select"]),
    ("tokens", ["count_tokens", "render_count_tokens"], []),
    ("build", ["build_jsonl"], ["build_jsonl"]),
    ("build_requests (all)", ["build_requests"], []),
    ("spool", ["spool"], []),
    ("record", ["record_items"], ["record_items"]),
    ("upload+create", ["upload_create"], ["upload_create"]),
]
PEER_HIDDEN = {"connect", "setup"}  # connect is outside the total; setup (DDL) is inside it


def submit_columns(res: dict) -> list[tuple[str, list[str], list[str]]]:
    """SUBMIT_COLS that have a value somewhere, plus one column per unknown stage."""
    known = {n for _c, es, ps in SUBMIT_COLS for n in es + ps} | PEER_HIDDEN
    seen: set[str] = set()
    for size in res["sizes"]:
        for s in (size.get("ext_submit"), size.get("peer_submit"), (size.get("anthropic") or {}).get("ext_submit")):
            seen |= {n for n, v in ((s or {}).get("stages") or {}).items() if v is not None}
    cols = [c for c in SUBMIT_COLS if seen & set(c[1] + c[2])]
    cols += [(n, [n], []) for n in sorted(seen - known)]
    return cols


def summarize_runs(runs: list[dict], key: str, from_first: tuple[str, ...]) -> tuple[list[dict], dict | None]:
    """The finished runs of `key` and their summary: medians of the seconds, the process
    wall time, the peak RSS and every stage; the `from_first` fields of the first run."""
    rs = [r[key] for r in runs if r.get(key) and r[key].get("seconds") is not None]
    if not rs:
        return rs, None
    stage_names = sorted({s for r in rs for s in (r.get("stages") or {})})
    return rs, {
        "tool": rs[0]["tool"],
        "runs": len(rs),
        "seconds": median(r["seconds"] for r in rs),
        "seconds_all": [round(r["seconds"], 3) for r in rs],
        "process_wall": median(r["process_wall"] for r in rs),
        **{f: rs[0].get(f) for f in from_first},
        "peak_rss_mb": median(r["peak_rss_mb"] for r in rs),
        "stages": {n: median((r.get("stages") or {}).get(n) for r in rs) for n in stage_names},
    }


def summarize_submit(runs: list[dict], key: str) -> dict | None:
    rs, s = summarize_runs(runs, key, ("issues", "jobs", "jsonl_bytes", "est_input_tokens"))
    if s is None:
        return None
    s["peak_rss_mb_max"] = max(r["peak_rss_mb"] for r in rs)
    if s["tool"] == "extension":
        s["rss_after_load_mb"] = median(r.get("rss_after_load_mb") for r in rs)
        s["peak_rss_over_load_mb"] = median(r["peak_rss_mb"] - (r.get("rss_after_load_mb") or 0) for r in rs)
        s["duckdb_memory_mb"] = median(r.get("duckdb_memory_mb") for r in rs)
        s["statuses"] = rs[0].get("statuses")
    if s["issues"] and s["seconds"]:
        s["issues_per_s"] = s["issues"] / s["seconds"]
    if s["jsonl_bytes"] and s["seconds"]:
        s["jsonl_mb_per_s"] = s["jsonl_bytes"] / 1e6 / s["seconds"]
    return s


def summarize_collect(runs: list[dict], key: str) -> dict | None:
    rs, s = summarize_runs(runs, key, ("results", "analyses"))
    if s is None:
        return None
    for extra in ("items_completed", "items_pending", "refresh_rows"):
        if extra in rs[0]:
            s[extra] = rs[0][extra]
    if s["results"] and s["seconds"]:
        s["results_per_s"] = s["results"] / s["seconds"]
    return s


def fmt(x, nd=2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def table(headers: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.rjust(w[i]) if i > 1 else c.ljust(w[i]) for i, c in enumerate(cells)) + " |"
    sep = "|" + "|".join("-" * (x + 2) for x in w) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def anthropic_submit_notes(size: dict) -> list[str]:
    """The Anthropic submit against OpenAI's, and how much of its upload+create the fake takes."""
    ant = size.get("anthropic") or {}
    a, e = ant.get("ext_submit"), size.get("ext_submit")
    out = []
    if a and e and e.get("seconds"):
        ac, ec = ant.get("ext_collect"), size.get("ext_collect")
        coll = f", collect {ac['seconds'] / ec['seconds']:.2f}x" if ac and ec and ec.get("seconds") else ""
        out.append(f"  {size['issues']:,} issues: anthropic / openai (extension): submit {a['seconds'] / e['seconds']:.2f}x{coll}")
    fa = ant.get("fake") or {}
    uc = (a or {}).get("stages", {}).get("upload_create")
    if a and uc is not None and fa.get("raw_create_mb_s") and a.get("jsonl_bytes"):
        mb = a["jsonl_bytes"] / 1e6
        line = (f"  {size['issues']:,} issues: anthropic upload+create {uc:.2f} s (what is left after the build) for "
                f"{mb:.0f} MB in {a.get('jobs')} job(s); the fake alone takes a create body at "
                f"{fa['raw_create_mb_s']:.0f} MB/s (~{mb / fa['raw_create_mb_s']:.2f} s for all of it)")
        if fa.get("raw_create_parsed_mb_s"):
            line += (f"; parsing it at create, as the fake does by default, it takes {fa['raw_create_parsed_mb_s']:.0f} MB/s "
                     f"(~{mb / fa['raw_create_parsed_mb_s']:.2f} s, on these 2 cores)")
        out.append(line)
    return out


def print_report(res: dict) -> str:
    out = []
    m = res["machine"]
    out.append(f"ai_batch benchmark — {m['cpu']} ({m['cores']} cores), {m['mem_gb']} GB RAM, "
               f"load avg at start {m['loadavg_start']}, at end {m.get('loadavg_end')}")
    out.append(f"extension {res['extension']['path']} (working tree {res['extension']['git']}, built {res['extension']['mtime']}), duckdb {m['duckdb']}, "
               f"median of {res['args']['runs']} run(s)")
    out.append("")
    out.append("SUBMIT (seconds per stage; total = the batch_submit statement / the peer script after imports)")
    cols = submit_columns(res)
    rows = []
    for size in res["sizes"]:
        e, p = size.get("ext_submit"), size.get("peer_submit")
        a = (size.get("anthropic") or {}).get("ext_submit")
        for s, who in ((e, "extension, openai"), (p, "peer (python), openai"), (a, "extension, anthropic")):
            if not s:
                continue
            cells = [f"{size['issues']:,}", who]
            for _col, es, ps in cols:
                names = ps if s is p else es
                vals = [s["stages"].get(n) for n in names if s["stages"].get(n) is not None]
                cells.append(fmt(sum(vals)) if vals else "·")
            cells += [fmt(s["seconds"]), fmt(s.get("issues_per_s"), 0),
                      fmt(s.get("jsonl_mb_per_s"), 0), fmt(s["peak_rss_mb"], 0)]
            if s is e and p and p.get("seconds"):
                cells.append(f"{e['seconds'] / p['seconds']:.2f}x")
            else:
                cells.append("")
            rows.append(cells)
    out.append(table(["issues", "tool"] + [c[0] for c in cols] +
                     ["total s", "issues/s", "JSONL MB/s", "peak RSS MB", "ext/peer"], rows))
    has_peer = any(size.get("peer_submit") for size in res["sizes"])
    if has_peer:
        out.append("  peer: one query selects, skips and reads (shown under read); tokens = chars/4 inside build.")
    ext_stages = {n for size in res["sizes"]
                  for e in (size.get("ext_submit"), (size.get("anthropic") or {}).get("ext_submit"))
                  for n in ((e or {}).get("stages") or {})}
    if "build_requests" in ext_stages:
        parts = sorted(ext_stages & {"read_issues", "count_tokens", "render_count_tokens", "build_jsonl", "spool"})
        out.append("  extension: build_requests streams read + count + build + spool together"
                   + (f"; {', '.join(parts)} are its parts (not added to it)" if parts else ""))
    for size in res["sizes"]:
        ant = size.get("anthropic") or {}
        for e, who, load in ((size.get("ext_submit"), "extension", size.get("loadavg")),
                             (ant.get("ext_submit"), "extension on anthropic", ant.get("loadavg"))):
            if e:
                out.append(f"  {size['issues']:,} issues: {who} peak RSS {fmt(e['peak_rss_mb'], 0)} MB = "
                           f"{fmt(e.get('rss_after_load_mb'), 0)} MB after LOAD + {fmt(e.get('peak_rss_over_load_mb'), 0)} MB "
                           f"for the submit; DuckDB buffer use after it {fmt(e.get('duckdb_memory_mb'), 0)} MB; "
                           f"JSONL {fmt((e.get('jsonl_bytes') or 0) / 1e6, 0)} MB in {e.get('jobs')} job(s); "
                           f"1-min load avg during runs {load}")
        out.extend(anthropic_submit_notes(size))
    if has_peer:
        out.append("  ext/peer < 1 means the extension is faster; the target is <= 0.5. The peer speaks OpenAI only.")
    out.append("")

    out.append("COLLECT (batch_refresh() vs peer_collect.py; the fake has finished every batch beforehand)")
    if not res["collect"]["extension_has_batch_refresh"]:
        out.append(f"  NOTE: {res['collect']['note']}")
    rows = []
    for size in res["sizes"]:
        e, p = size.get("ext_collect"), size.get("peer_collect")
        a = (size.get("anthropic") or {}).get("ext_collect")
        for s, who in ((e, "extension, openai"), (p, "peer (python), openai"), (a, "extension, anthropic")):
            if not s:
                continue
            stages = ", ".join(f"{k} {v:.2f}" for k, v in s["stages"].items() if v is not None and k != "connect")
            ratio = f"{e['seconds'] / p['seconds']:.2f}x" if (s is e and p and p.get("seconds")) else ""
            rows.append([f"{size['issues']:,}", who, stages or "-",
                         fmt(s["seconds"]), fmt(s.get("results_per_s"), 0), fmt(s["peak_rss_mb"], 0),
                         fmt(s.get("analyses")), ratio])
    if rows:
        out.append(table(["issues", "tool", "stages (s)", "total s", "results/s", "peak RSS MB", "analyses", "ext/peer"], rows))
    out.append("")

    sk = res.get("skip_check")
    if sk and not sk.get("skipped"):
        out.append(f"SKIP CHECK ({sk['rows']:,} issues x {sk['rows']:,} analyses + {sk['rows']:,} items; dry runs, nothing to submit)")
        rows = []
        for v in sk["variants"]:
            st = v.get("stages") or {}
            rows.append([v["name"], v["how"], fmt(st.get("selection")), fmt(st.get("skip_check")),
                         fmt(v.get("seconds")), fmt(v.get("peak_rss_mb"), 0)])
        out.append(table(["variant", "statement", "selection s", "skip_check s", "total s", "peak RSS MB"], rows))
        out.append("")

    out.append("FAKE PROVIDER ALONE AND FLOORS")
    rows = []
    for size in res["sizes"]:
        fa = size.get("fake", {})
        if not (size.get("ext_submit") or size.get("peer_submit")):
            continue  # no OpenAI half in this run
        rows.append([f"{size['issues']:,}", fmt(fa.get("raw_upload_mb"), 1), fmt(fa.get("raw_upload_mb_s"), 0),
                     fmt(fa.get("raw_download_mb"), 1), fmt(fa.get("raw_download_mb_s"), 0),
                     fmt(fa.get("complete_after_ext_s")), fmt(fa.get("peak_rss_mb"), 0)])
    if rows:
        out.append(table(["issues", "raw upload MB", "upload MB/s", "output MB", "download MB/s",
                          "fake validate+render s", "fake peak RSS MB"], rows))
    rows = []
    for size in res["sizes"]:
        fa = (size.get("anthropic") or {}).get("fake")
        if fa:
            rows.append([f"{size['issues']:,}", fmt(fa.get("raw_create_mb"), 1), fmt(fa.get("raw_create_requests"), 0),
                         fmt(fa.get("raw_create_s")), fmt(fa.get("raw_create_mb_s"), 0),
                         fmt(fa.get("raw_create_parsed_s")), fmt(fa.get("raw_create_parsed_mb_s"), 0),
                         fmt(fa.get("raw_results_mb"), 1), fmt(fa.get("raw_results_mb_s"), 0),
                         fmt(fa.get("complete_after_ext_s")), fmt(fa.get("peak_rss_mb"), 0)])
    if rows:
        out.append("  Anthropic: a raw create of the extension's first job's body, as the benchmark runs the fake "
                   "(it reads the body and scans it for custom_ids; the parse waits for the first poll) and parsing "
                   "all of it before answering (its default, validate on-create); a raw download of one results stream")
        out.append(table(["issues", "create body MB", "requests", "raw create s", "create MB/s", "create+parse s",
                          "create+parse MB/s", "results MB", "download MB/s", "fake parse+render s",
                          "fake peak RSS MB"], rows))
    fl = res["floors"]
    tcp = fl.get("tcp_loopback") or {}
    out.append(f"  raw TCP loopback (Python sendall -> recv_into): {fmt(tcp.get('mb_s'), 0)} MB/s")
    tb = fl.get("tokbench") or {}
    if tb.get("skipped"):
        out.append(f"  token counting floor: skipped ({tb['skipped']})")
    else:
        out.append(f"  token counting floor (tokbench): bpe-openai 1 thread {fmt(tb.get('bpe_openai_1thread_mb_s'), 1)} MB/s, "
                   f"count_many all cores {fmt(tb.get('count_many_all_cores_mb_s'), 1)} MB/s, "
                   f"count_issues all cores {fmt(tb.get('count_issues_all_cores_mb_s'), 1)} MB/s "
                   f"({fmt(tb.get('count_issues_per_s'), 0)} issues/s)")
    out.append("")
    out.append("command: " + res["command"])
    out.append("results: " + res["results_file"])
    return "\n".join(out)


# --------------------------------------------------------------------------- main

def machine() -> dict:
    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    import duckdb
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": round(mem, 1), "kernel": platform.release(),
            "python": platform.python_version(), "duckdb": duckdb.__version__,
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def git_describe() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "core"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extension", default=str(ROOT / "build/release/ai_batch.duckdb_extension"))
    ap.add_argument("--sizes", default="1000", help="comma-separated issue counts (e.g. 1000,10000,50000,100000)")
    ap.add_argument("--runs", type=int, default=3, help="runs per size; medians are reported")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-rows", type=int, default=1_000_000, help="issues and analyses of the skip-check database")
    ap.add_argument("--no-skip-check", action="store_true")
    ap.add_argument("--no-collect", action="store_true", help="do not time collecting (batch_refresh / peer_collect)")
    ap.add_argument("--tokbench", choices=["auto", "always", "never"], default="auto",
                    help="token-counting floor: auto runs core/examples/tokbench if already built")
    ap.add_argument("--provider", choices=["openai", "anthropic", "both"], default="both",
                    help="whose side of the fake to run against; both (default) runs each run's OpenAI half "
                         "exactly as --provider openai does, then the Anthropic half")
    ap.add_argument("--out", help="directory for corpora, work files and results (default bench/out)")
    a = ap.parse_args(argv)
    providers = PROVIDERS if a.provider == "both" else (a.provider,)
    global OUT, WORK
    if a.out:
        OUT = Path(a.out).resolve()
        WORK = OUT / "work"

    ext = Path(a.extension).resolve()
    if not ext.exists():
        print(f"run_bench: no extension at {ext} (build it with make)", file=sys.stderr)
        return 2
    sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    OUT.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(x) for x in [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    t_all = time.perf_counter()
    res: dict = {
        "command": command,
        "args": vars(a),
        "machine": machine(),
        "extension": {"path": os.path.relpath(ext, ROOT), "git": git_describe(),
                      "mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ext.stat().st_mtime))},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "sizes": [],
    }

    chk = ext_sql(ext, Path(":memory:"), ["SELECT count(*) FROM duckdb_functions() WHERE function_name = 'batch_refresh'"], "check")
    if chk.get("rc") != 0 or not chk.get("results"):
        print(f"run_bench: cannot load {ext}: {(chk.get('error') or chk.get('stderr') or '').strip()[-1500:]}\n"
              "(DuckDB takes the init symbol from the file name: keep it ai_batch.duckdb_extension)", file=sys.stderr)
        return 2
    has_refresh = bool(chk["results"][0]["rows"][0][0])
    res["collect"] = {"extension_has_batch_refresh": has_refresh,
                      "note": None if has_refresh else
                      "this extension build has no batch_refresh(): the extension's collect is skipped; "
                      "the peer's collect is still measured (the baseline for the target)"}
    if not has_refresh:
        log(res["collect"]["note"])

    fake = Fake()
    fake.start()
    state: dict = {"template": None}
    try:
        for size in sizes:
            meta = corpus(size, a.seed)
            src = Path(meta["path"])
            runs = [one_run(ext, fake, src, size, i, has_refresh and not a.no_collect, not a.no_collect, state,
                            providers) for i in range(a.runs)]
            body = state.get("anthropic_body", {}).pop(size, None)
            if body:
                body.unlink(missing_ok=True)
            entry = {
                "issues": size,
                "corpus": meta,
                "ext_submit": summarize_submit(runs, "ext_submit"),
                "peer_submit": summarize_submit(runs, "peer_submit"),
                "ext_collect": summarize_collect(runs, "ext_collect"),
                "peer_collect": summarize_collect(runs, "peer_collect"),
                "fake": {**run_medians(runs, FAKE_OPENAI),
                         "peak_rss_mb": max((r.get("fake_peak_rss_mb") or 0) for r in runs)},
                "loadavg": " ".join(f"{r['loadavg_1min']:.1f}" for r in runs),
                "runs": [{k: v for k, v in r.items()} for r in runs],
            }
            if "anthropic" in providers:
                entry["anthropic"] = {
                    "ext_submit": summarize_submit(runs, "ant_submit"),
                    "ext_collect": summarize_collect(runs, "ant_collect"),
                    "fake": {**run_medians(runs, FAKE_ANTHROPIC),
                             "peak_rss_mb": max((r.get("fake_peak_rss_mb_anthropic") or 0) for r in runs)},
                    "loadavg": " ".join(f"{r['anthropic_loadavg_1min']:.1f}" for r in runs),
                }
            for r in entry["runs"]:
                for k in ("ext_submit", "peer_submit"):
                    if r.get(k):
                        r[k].pop("files", None)
            res["sizes"].append(entry)
            e, p = entry["ext_submit"], entry["peer_submit"]
            if e and p:
                log(f"size {size}: extension {e['seconds']:.2f} s, peer {p['seconds']:.2f} s "
                    f"(ratio {e['seconds'] / p['seconds']:.2f})")
            an = (entry.get("anthropic") or {}).get("ext_submit")
            if an:
                log(f"size {size}: extension on anthropic {an['seconds']:.2f} s")
    finally:
        fake.stop()

    # the skip check
    if a.no_skip_check:
        res["skip_check"] = {"skipped": "--no-skip-check"}
    else:
        db = skip_db(ext, a.skip_rows)
        variants = [
            ("missing_analysis", "batch_submit(p, '*', missing_analysis := true, dry_run := true)",
             f"SELECT * FROM batch_submit('{PROCESSOR}', '*', missing_analysis := true, dry_run := true)", True),
            ("sql_text", "batch_submit(p, $$SELECT id FROM issues$$, dry_run := true)",
             f"SELECT * FROM batch_submit('{PROCESSOR}', $$SELECT id FROM issues$$, dry_run := true)", True),
            ("plain_sql_floor", "the same anti-joins in plain SQL (count only)",
             f"SELECT count(*) FROM issues i WHERE NOT EXISTS (SELECT 1 FROM ai_analyses a WHERE a.issue_id = i.id "
             f"AND a.processor = '{PROCESSOR}') AND NOT EXISTS (SELECT 1 FROM batch_items b JOIN batch_jobs j "
             f"ON j.id = b.batch_job_id WHERE b.issue_id = i.id AND j.processor = '{PROCESSOR}' "
             f"AND b.status = 'pending')", False),
        ]
        out_vars = []
        for name, how, sql, profiled in variants:
            rs = []
            for i in range(a.runs):
                log(f"skip check: {name} run {i + 1}")
                r = ext_sql(ext, db, [sql], f"skip_{name}")
                st = read_profile(r["profile_path"], "submit") if profiled else {}
                rs.append({"seconds": r["results"][0]["seconds"] if r.get("results") else None,
                           "peak_rss_mb": peak_mb(r),
                           "stages": {k: v["seconds"] for k, v in st.items()},
                           "rows": r["results"][0]["rows"][:2] if r.get("results") else None,
                           "error": r.get("error") or r.get("stderr")})
            names = sorted({k for r in rs for k in r["stages"]})
            out_vars.append({"name": name, "how": how, "sql": sql,
                             "seconds": median(r["seconds"] for r in rs),
                             "seconds_all": [r["seconds"] for r in rs],
                             "peak_rss_mb": median(r["peak_rss_mb"] for r in rs),
                             "stages": {n: median(r["stages"].get(n) for r in rs) for n in names},
                             "result": rs[0]["rows"], "error": rs[0]["error"]})
        res["skip_check"] = {"rows": a.skip_rows, "db": str(db), "variants": out_vars}

    log("floors: raw TCP loopback")
    res["floors"] = {"tcp_loopback": tcp_loopback_floor(), "tokbench": tokbench(a.tokbench)}
    res["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    res["total_seconds"] = time.perf_counter() - t_all

    stamp = time.strftime("%Y%m%d-%H%M%S")
    rf = OUT / f"results-{stamp}.json"
    res["results_file"] = os.path.relpath(rf, ROOT) if rf.is_relative_to(ROOT) else str(rf)
    rf.write_text(json.dumps(res, indent=2, default=str, ensure_ascii=False))
    report = print_report(res)
    (OUT / f"report-{stamp}.txt").write_text(report + "\n")
    shutil.copyfile(rf, OUT / "latest.json")
    (OUT / "latest.txt").write_text(report + "\n")
    print(report)
    log(f"done in {res['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
