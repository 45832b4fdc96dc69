#!/usr/bin/env python3
"""A small sqllogictest runner over DuckDB hosts: Python duckdb wheels and the duckdb CLI.

Usage:
    python test/run_sqllogictest.py --extension build/release/ai_batch.duckdb_extension test/sql/*.test
    python test/run_sqllogictest.py --extension EXT --host python --host python:DIR --host cli:EXE test/sql/*.test

Hosts (`--host`, repeatable; default `python`):
    python        the duckdb module of the Python running this script
    python:DIR    the duckdb module installed in DIR (`pip install --target DIR duckdb==X`),
                  found first on PYTHONPATH
    cli:EXE       the duckdb command line client EXE (e.g. .venv/bin/duckdb from the
                  duckdb-cli package): one persistent `EXE -unsigned DB` process per file,
                  fed each record on stdin, in `.mode csv` with a NULL marker, with a
                  `.print` sentinel after each record to delimit its output; errors are what
                  the CLI writes to stderr.

Each test file runs once per host, each run in its own subprocess (this same script, with
--worker), so a crash or a hang in one file is reported as that run failing and the other
runs still go on. Every PASS / FAIL line ends with the host and its DuckDB version, e.g.
`[cli 1.5.6]`. The summary line at the end counts RUNS (files x hosts; with one host,
files):

    N passed, N failed

(a line "N skipped" precedes it when runs were skipped by `require` /
`require-env`). The exit status is 1 when any run failed (or no file was given),
0 otherwise.

Supported subset of DuckDB's sqllogictest dialect
--------------------------------------------------
Records are separated by blank lines. Lines starting with '#' outside a record are
comments (`# name:`, `# description:`, `# group:` headers included).

    statement ok                 SQL (one or more lines, may hold several statements)
    statement error              SQL, then optionally `----` and the expected message:
                                 the record passes if the SQL fails and the error
                                 message contains the expected text (several lines
                                 are joined with newlines; `<REGEX>:pattern` searches
                                 a regular expression instead). No `----`: any error.
    statement maybe              SQL; passes whether or not it fails
    query <types> [sortmode]     SQL, `----`, expected rows. <types> is one letter per
                                 column (I, T, R, B, ...: only the count is checked;
                                 R columns also compare numerically). sortmode is
                                 nosort (default), rowsort or valuesort. Values are
                                 tab-separated, in DuckDB's own VARCHAR form (the
                                 query is wrapped in `SELECT CAST(COLUMNS(*) AS
                                 VARCHAR) FROM (...)` when it is a single SELECT-like
                                 statement): NULL as `NULL`, booleans `true`/`false`,
                                 an empty string as `(empty)`. One value per line is
                                 accepted too when that is unambiguous.
    require <ext>                `require ai_batch` (the stem of --extension's file
                                 name) loads that file; other names try `LOAD <ext>`
                                 and skip the file if that fails. Without
                                 --extension, requiring our extension FAILS the file
                                 (so a forgotten flag cannot look like a pass).
    require-env VAR [VALUE]      skip the file unless VAR is set (and equals VALUE)
    load [path] [readonly]       reopen on that database file (no path: in memory)
    restart                      close and reopen the current database (extensions
                                 named by `require` are loaded again)
    mode skip / mode unskip      skip the records in between
    skipif <engine> / onlyif <engine>   before a record; engine `duckdb` is us
    halt                         stop the file here (it passes if all before passed)

Substitutions in SQL, expected text and paths: `__TEST_DIR__` (a fresh temporary
directory per file), `__WORKING_DIRECTORY__` (the runner's cwd), `${VAR}` (from the
environment; an unset VAR fails the record, say `require-env VAR` to skip instead).

Each file starts on a fresh database FILE, `__TEST_DIR__/test.duckdb` (not in memory,
so that `restart` keeps the data, as close/reopen tests need), opened with
config={'allow_unsigned_extensions': 'true'}. A file stops at its first failing
record, which is reported as file:line with the SQL, expected and actual.
`loop` / `foreach` / `concurrentloop` / `connection` are not supported: a file
using them fails with a message saying so.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TestFailure(Exception):
    """A record failed; message is the human-readable detail."""


class SkipFile(Exception):
    """The whole file is skipped (require / require-env not satisfied)."""


class Halt(Exception):
    """`halt`: stop the file here."""


@dataclass
class Record:
    line: int                      # 1-based line of the record's first line
    kind: str                      # statement | query | command
    header: list[str]              # the first line split on whitespace
    sql: str = ""
    expected: list[str] | None = None   # lines after ----, None when no ----
    conditions: list[tuple[str, str]] = field(default_factory=list)  # (skipif|onlyif, engine)


# ----------------------------------------------------------------------------- parsing

def parse(text: str) -> list[Record]:
    lines = text.splitlines()
    records: list[Record] = []
    i = 0
    n = len(lines)
    while i < n:
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        conditions: list[tuple[str, str]] = []
        while stripped.split()[0] in ("skipif", "onlyif"):
            parts = stripped.split()
            conditions.append((parts[0], parts[1] if len(parts) > 1 else ""))
            i += 1
            if i >= n:
                return records
            stripped = lines[i].strip()
        start = i + 1
        header = stripped.split()
        word = header[0]
        if word in ("statement", "query"):
            i += 1
            body: list[str] = []
            while i < n and lines[i].strip() != "" and lines[i].strip() != "----":
                body.append(lines[i])
                i += 1
            expected: list[str] | None = None
            if i < n and lines[i].strip() == "----":
                i += 1
                expected = []
                while i < n and lines[i].strip() != "":
                    expected.append(lines[i])
                    i += 1
            records.append(Record(start, word, header, "\n".join(body), expected, conditions))
        else:
            records.append(Record(start, "command", header, conditions=conditions))
            i += 1
    return records


# ----------------------------------------------------------------------------- worker

class FileRunner:
    host = "python"

    def __init__(self, path: str, extension: str | None, progress_path: str | None):
        self.path = path
        self.extension = os.path.abspath(extension) if extension else None
        self.ext_name = None
        if extension:
            base = os.path.basename(extension)
            self.ext_name = base.split(".")[0]
        self.progress_path = progress_path
        self.test_dir = tempfile.mkdtemp(prefix="slt_")
        self.db_path = os.path.join(self.test_dir, "test.duckdb")
        self.readonly = False
        self.required: list[str] = []
        self.con = None
        self.records_run = 0
        self.version = ""

    # -- helpers
    def subst(self, text: str) -> str:
        text = text.replace("__TEST_DIR__", self.test_dir)
        text = text.replace("__WORKING_DIRECTORY__", os.getcwd())

        def env(m: re.Match) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise TestFailure(f"environment variable {name} is not set "
                                  f"(used as ${{{name}}}; add `require-env {name}` to skip instead)")
            return os.environ[name]

        return VAR_RE.sub(env, text)

    def open(self) -> None:
        import duckdb

        self.close()
        config = {"allow_unsigned_extensions": "true"}
        if self.readonly:
            self.con = duckdb.connect(self.db_path, read_only=True, config=config)
        else:
            self.con = duckdb.connect(self.db_path, config=config)
        self.version = duckdb.__version__
        for ext in self.required:
            self.load_extension(ext)

    def close(self) -> None:
        if self.con is not None:
            try:
                self.con.close()
            finally:
                self.con = None

    def load_extension(self, name: str) -> None:
        if self.ext_name and name == self.ext_name:
            escaped = self.extension.replace("'", "''")
            self.exec(f"LOAD '{escaped}'")
            return
        if name == "ai_batch":
            raise TestFailure("`require ai_batch` but the runner was not given --extension PATH")
        try:
            self.exec(f'LOAD "{name}"')
        except Exception as e:  # noqa: BLE001 - any failure means "not available"
            raise SkipFile(f"require {name}: extension not available ({first_line(e)})")

    def exec(self, sql: str) -> None:
        """Runs SQL; raises with the host's error message when it fails."""
        self.con.execute(sql)

    def is_single_select(self, body: str) -> bool:
        try:
            import duckdb

            stmts = self.con.extract_statements(body)
            return len(stmts) == 1 and stmts[0].type == duckdb.StatementType.SELECT
        except Exception:  # noqa: BLE001 - unparsable: execute as is and report its error
            return False

    def progress(self, line: int) -> None:
        if self.progress_path:
            with open(self.progress_path, "w") as f:
                f.write(str(line))

    # -- main loop
    def run(self) -> dict:
        with open(self.path, encoding="utf-8") as f:
            records = parse(f.read())
        self.open()
        skipping = False
        try:
            for rec in records:
                self.progress(rec.line)
                word = rec.header[0]
                if rec.kind == "command" and word == "mode":
                    arg = rec.header[1] if len(rec.header) > 1 else ""
                    if arg == "skip":
                        skipping = True
                    elif arg == "unskip":
                        skipping = False
                    continue
                if skipping:
                    continue
                if not self.conditions_hold(rec):
                    continue
                try:
                    self.run_record(rec)
                except TestFailure as e:
                    return {"status": "fail", "line": rec.line, "message": str(e),
                            "records": self.records_run}
                except (SkipFile, Halt):
                    raise
                except Exception as e:  # noqa: BLE001 - report, never crash the worker
                    return {"status": "fail", "line": rec.line,
                            "message": f"runner error: {type(e).__name__}: {e}",
                            "records": self.records_run}
                self.records_run += 1
        except SkipFile as e:
            return {"status": "skip", "message": str(e), "records": self.records_run}
        except Halt:
            pass
        finally:
            self.close()
            shutil.rmtree(self.test_dir, ignore_errors=True)
        return {"status": "pass", "records": self.records_run}

    @staticmethod
    def conditions_hold(rec: Record) -> bool:
        for kind, engine in rec.conditions:
            if kind == "skipif" and engine == "duckdb":
                return False
            if kind == "onlyif" and engine != "duckdb":
                return False
        return True

    def run_record(self, rec: Record) -> None:
        word = rec.header[0]
        if rec.kind == "statement":
            self.run_statement(rec)
        elif rec.kind == "query":
            self.run_query(rec)
        elif word == "require":
            if len(rec.header) < 2:
                raise TestFailure("`require` needs an extension name")
            name = rec.header[1]
            self.load_extension(name)
            if name not in self.required:
                self.required.append(name)
        elif word == "require-env":
            if len(rec.header) < 2:
                raise TestFailure("`require-env` needs a variable name")
            name = rec.header[1]
            if name not in os.environ:
                raise SkipFile(f"require-env {name}: not set")
            if len(rec.header) > 2 and os.environ[name] != rec.header[2]:
                raise SkipFile(f"require-env {name}: is not {rec.header[2]!r}")
        elif word == "load":
            args = rec.header[1:]
            self.readonly = "readonly" in args
            paths = [a for a in args if a != "readonly"]
            self.db_path = self.subst(paths[0]) if paths else ":memory:"
            self.open()
        elif word == "restart":
            if self.db_path == ":memory:":
                raise TestFailure("`restart` on an in-memory database would lose it; `load` a file first")
            self.open()
        elif word == "halt":
            raise Halt()
        elif word in ("loop", "foreach", "concurrentloop", "concurrentforeach", "endloop",
                      "connection", "sleep", "unzip", "set", "reset", "tags"):
            raise TestFailure(f"`{word}` is not supported by test/run_sqllogictest.py")
        else:
            raise TestFailure(f"unknown command `{' '.join(rec.header)}`")

    def run_statement(self, rec: Record) -> None:
        mode = rec.header[1] if len(rec.header) > 1 else "ok"
        sql = self.subst(rec.sql)
        try:
            self.exec(sql)
            error = None
        except Exception as e:  # noqa: BLE001
            error = e
        if mode == "ok":
            if error is not None:
                raise TestFailure(f"statement failed:\n{indent(sql)}\nerror:\n{indent(str(error))}")
        elif mode == "error":
            if error is None:
                raise TestFailure(f"statement should have failed but succeeded:\n{indent(sql)}")
            if rec.expected:
                want = self.subst("\n".join(rec.expected))
                got = str(error)
                if want.startswith("<REGEX>:"):
                    ok = re.search(want[len("<REGEX>:"):], got, re.DOTALL) is not None
                else:
                    ok = want in got
                if not ok:
                    raise TestFailure(
                        f"statement failed with an unexpected message:\n{indent(sql)}\n"
                        f"expected the message to contain:\n{indent(want)}\nactual message:\n{indent(got)}")
        elif mode == "maybe":
            pass
        else:
            raise TestFailure(f"unknown statement mode `{mode}` (ok, error, maybe)")

    def run_query(self, rec: Record) -> None:
        if len(rec.header) < 2:
            raise TestFailure("`query` needs column types, e.g. `query IT`")
        types = rec.header[1]
        sortmode = rec.header[2] if len(rec.header) > 2 else "nosort"
        if sortmode not in ("nosort", "rowsort", "valuesort"):
            raise TestFailure(f"unknown sort mode `{sortmode}` (nosort, rowsort, valuesort)")
        if rec.expected is None:
            raise TestFailure("query record has no `----` line")
        sql = self.subst(rec.sql)
        try:
            actual = self.fetch_as_text(sql)
        except Exception as e:  # noqa: BLE001
            raise TestFailure(f"query failed:\n{indent(sql)}\nerror:\n{indent(str(e))}")
        ncols = len(types)
        if actual and len(actual[0]) != ncols:
            raise TestFailure(f"query returned {len(actual[0])} column(s) but the record declares "
                              f"{ncols} (`query {types}`):\n{indent(sql)}\nactual:\n"
                              f"{indent(render(actual))}")
        expected_lines = [self.subst(line) for line in rec.expected]
        expected = [line.split("\t") for line in expected_lines]
        # one value per line, DuckDB's alternative layout
        if (ncols > 1 and actual and all(len(r) == 1 for r in expected)
                and len(expected) == len(actual) * ncols):
            flat = [r[0] for r in expected]
            expected = [flat[k:k + ncols] for k in range(0, len(flat), ncols)]
        for r in expected:
            if len(r) != ncols:
                raise TestFailure(f"expected row {r!r} has {len(r)} value(s), `query {types}` "
                                  f"declares {ncols}")
        if sortmode == "rowsort":
            actual = sorted(actual)
            expected = sorted(expected)
        elif sortmode == "valuesort":
            actual = [[v] for v in sorted(v for r in actual for v in r)]
            expected = [[v] for v in sorted(v for r in expected for v in r)]
        if not rows_equal(expected, actual, types if sortmode != "valuesort" else ""):
            raise TestFailure(f"wrong result:\n{indent(sql)}\nexpected ({len(expected)} rows):\n"
                              f"{indent(render(expected))}\nactual ({len(actual)} rows):\n"
                              f"{indent(render(actual))}")

    def fetch_as_text(self, sql: str) -> list[list[str]]:
        """Run the query once and return its rows as DuckDB's VARCHAR renderings."""
        body = strip_semicolons(sql)
        if self.is_single_select(body):
            rows = self.con.execute(
                f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM (\n{body}\n)").fetchall()
        else:
            rows = self.con.execute(sql).fetchall()
        return [[format_value(v) for v in row] for row in rows]


def strip_semicolons(sql: str) -> str:
    body = sql.strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    return body


class CliError(Exception):
    """What the duckdb CLI wrote to stderr for a record."""


class CliFileRunner(FileRunner):
    """Runs a file in one persistent duckdb CLI process (reopened by `restart` / `load`)."""

    host = "cli"
    RECORD_TIMEOUT = 300.0

    def __init__(self, path: str, extension: str | None, progress_path: str | None, exe: str):
        super().__init__(path, extension, progress_path)
        self.exe = exe
        self.proc: subprocess.Popen | None = None
        self.null = f"<<NULL-{uuid.uuid4().hex}>>"
        self.seq = 0
        self._parser = None

    def open(self) -> None:
        self.close()
        args = [self.exe, "-unsigned"] + (["-readonly"] if self.readonly else []) + [self.db_path]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self.roundtrip(f".mode csv\n.headers on\n.nullvalue {self.null}\n", raw=True)
        out, _ = self.roundtrip("SELECT library_version FROM pragma_version();")
        rows = self.parse_csv(out)
        self.version = rows[0][0].lstrip("v") if rows else "?"
        for ext in self.required:
            self.load_extension(ext)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=60)
        except Exception:  # noqa: BLE001 - a hung CLI is killed
            proc.kill()
            proc.wait()
        finally:
            for f in (proc.stdout, proc.stderr):
                f.close()

    def roundtrip(self, text: str, raw: bool = False) -> tuple[str, str]:
        """Sends one record (terminated with `;` unless raw) and a `.print` sentinel; returns
        (stdout before the sentinel, stderr)."""
        self.seq += 1
        token = f"__SLT_END_{self.seq}_{uuid.uuid4().hex}__"
        if not raw:
            text = strip_semicolons(text) + ";\n"
        try:
            self.proc.stdin.write((text + f".print {token}\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise TestFailure(f"the duckdb CLI exited (status {self.proc.poll()}): {self.drain_stderr()}")
        out = b""
        marker = token.encode() + b"\n"
        deadline = time.monotonic() + self.RECORD_TIMEOUT
        while not out.endswith(marker):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure(f"the duckdb CLI gave no answer in {self.RECORD_TIMEOUT:g}s "
                                  "(an unterminated quote or statement?)")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    self.proc.wait()
                    raise TestFailure(f"the duckdb CLI exited (status {self.proc.returncode}) while "
                                      f"running the record: {self.drain_stderr()}")
                out += chunk
        return out[: -len(marker)].decode("utf-8", "replace"), self.drain_stderr()

    def drain_stderr(self) -> str:
        err = b""
        while self.proc is not None:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0)
            if not ready:
                break
            chunk = os.read(self.proc.stderr.fileno(), 1 << 16)
            if not chunk:
                break
            err += chunk
        return err.decode("utf-8", "replace").strip()

    def exec(self, sql: str) -> str:
        out, err = self.roundtrip(sql)
        if err:
            raise CliError(err)
        return out

    def is_single_select(self, body: str) -> bool:
        # The CLI cannot say how it parses; the Python duckdb running this script can.
        try:
            import duckdb

            if self._parser is None:
                self._parser = duckdb.connect()
            stmts = self._parser.extract_statements(body)
            return len(stmts) == 1 and stmts[0].type == duckdb.StatementType.SELECT
        except Exception:  # noqa: BLE001
            return False

    def parse_csv(self, out: str) -> list[list[str]]:
        rows = list(csv.reader(io.StringIO(out, newline="")))
        # rows[0] is the header. An empty line is one empty value (the CLI writes a lone
        # '' unquoted; csv.reader reads it as no field at all).
        return [[self.cli_value(v) for v in (r or [""])] for r in rows[1:]]

    def cli_value(self, v: str) -> str:
        if v == self.null:
            return "NULL"
        return v if v != "" else "(empty)"

    def fetch_as_text(self, sql: str) -> list[list[str]]:
        body = strip_semicolons(sql)
        if self.is_single_select(body):
            body = f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM (\n{body}\n)"
        return self.parse_csv(self.exec(body))


def format_value(v) -> str:
    """Text of one value. From the wrapped path every value is already a str or None."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v if v != "" else "(empty)"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"'{k}': {format_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def rows_equal(expected: list[list[str]], actual: list[list[str]], types: str) -> bool:
    if len(expected) != len(actual):
        return False
    for er, ar in zip(expected, actual):
        if len(er) != len(ar):
            return False
        for k, (e, a) in enumerate(zip(er, ar)):
            if e == a:
                continue
            if k < len(types) and types[k] == "R":
                try:
                    if math.isclose(float(e), float(a), rel_tol=1e-9, abs_tol=1e-12):
                        continue
                except ValueError:
                    pass
            return False
    return True


def render(rows: list[list[str]]) -> str:
    return "\n".join("\t".join(r) for r in rows) if rows else "(no rows)"


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) if text else prefix


def first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def worker_main(args: argparse.Namespace) -> int:
    kind, _, where = (args.host or ["python"])[-1].partition(":")
    if kind == "cli":
        runner: FileRunner = CliFileRunner(args.worker, args.extension, args.progress, where)
    else:
        runner = FileRunner(args.worker, args.extension, args.progress)
    try:
        result = runner.run()
    except Exception as e:  # noqa: BLE001
        result = {"status": "fail", "line": 0, "message": f"runner error: {type(e).__name__}: {e}",
                  "records": runner.records_run}
    result["host"] = f"{runner.host} {runner.version or '?'}"
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


# ----------------------------------------------------------------------------- driver

def check_host(host: str) -> str | None:
    """None when the host spec is usable, else why not."""
    kind, _, where = host.partition(":")
    if kind == "python":
        if where and not os.path.isdir(where):
            return f"--host {host}: no such directory (pip install --target {where} duckdb==X)"
        return None
    if kind == "cli":
        if not where or not os.path.isfile(where):
            return f"--host {host}: no such duckdb executable"
        return None
    return f"--host {host}: unknown host (python, python:DIR or cli:EXE)"


def run_file(path: str, extension: str | None, timeout: float, host: str = "python") -> dict:
    with tempfile.TemporaryDirectory(prefix="slt_run_") as tmp:
        result_path = os.path.join(tmp, "result.json")
        progress_path = os.path.join(tmp, "progress")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", path,
               "--result", result_path, "--progress", progress_path, "--host", host]
        if extension:
            cmd += ["--extension", extension]
        env = dict(os.environ)
        kind, _, where = host.partition(":")
        if kind == "python" and where:
            env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(where)] + (
                [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
            out = (proc.stdout or "") + (proc.stderr or "")
            rc = proc.returncode
            timed_out = False
        except subprocess.TimeoutExpired as e:
            out = _text(e.stdout) + _text(e.stderr)
            rc = None
            timed_out = True
        if not timed_out and os.path.exists(result_path):
            with open(result_path, encoding="utf-8") as f:
                result = json.load(f)
            if rc != 0 and result.get("status") == "pass":
                # the file passed but the process died on the way out (e.g. close hung/crashed)
                result = {"status": "fail", "line": 0, "records": result.get("records", 0),
                          "message": f"all records passed but the worker exited with status {rc}"}
            result["output"] = out
            return result
        line = 0
        if os.path.exists(progress_path):
            try:
                with open(progress_path) as f:
                    line = int(f.read().strip() or 0)
            except ValueError:
                line = 0
        if timed_out:
            msg = f"timed out after {timeout:g}s (the record at this line was running)"
        elif rc is not None and rc < 0:
            msg = f"worker crashed with signal {-rc} (the record at this line was running)"
        else:
            msg = f"worker exited with status {rc} without a result"
        return {"status": "fail", "line": line, "message": msg, "output": out, "records": None,
                "host": host}


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="sqllogictest files (*.test)")
    ap.add_argument("--extension", help="path of the .duckdb_extension that `require <stem>` loads")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per file (default 600)")
    ap.add_argument("--host", action="append", default=None,
                    help="python (default), python:DIR or cli:EXE; repeat to run every file in each")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--progress", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        return worker_main(args)

    hosts = args.host or ["python"]
    for h in hosts:
        problem = check_host(h)
        if problem:
            print(f"run_sqllogictest: {problem}", file=sys.stderr)
            return 2
    if args.extension and not os.path.exists(args.extension):
        print(f"run_sqllogictest: --extension {args.extension}: no such file", file=sys.stderr)
        return 2
    if not args.files:
        print("run_sqllogictest: no test files given", file=sys.stderr)
        print("0 passed, 0 failed")
        return 1

    passed = failed = skipped = 0
    for path in args.files:
        if not os.path.isfile(path):
            failed += len(hosts)
            print(f"FAIL {path}: no such file", flush=True)
            continue
        for host in hosts:
            result = run_file(path, args.extension, args.timeout, host)
            label = f"[{result.get('host') or host}]"
            status = result["status"]
            if status == "pass":
                passed += 1
                print(f"PASS {path} ({result.get('records', 0)} records) {label}", flush=True)
            elif status == "skip":
                skipped += 1
                print(f"SKIP {path}: {result.get('message', '')} {label}", flush=True)
            else:
                failed += 1
                line = result.get("line") or 0
                where = f"{path}:{line}" if line else path
                msg_lines = (result.get("message") or "").splitlines() or [""]
                print(f"FAIL {where}: {msg_lines[0]} {label}", flush=True)
                if len(msg_lines) > 1:
                    print(indent("\n".join(msg_lines[1:]), "  "), flush=True)
                output = (result.get("output") or "").strip()
                if output:
                    tail = "\n".join(output.splitlines()[-40:])
                    print("    --- worker output (last 40 lines) ---")
                    print(indent(tail, "    "), flush=True)
    if skipped:
        print(f"{skipped} skipped")
    # The summary counts RUNS (a file in a host), not records.
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
