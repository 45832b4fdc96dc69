"""The ai-batch wheel and its gh-analysis commands, the way a user gets them.

One session builds the wheel (tools/build_wheel.py, as `make wheel` does), makes a fresh
venv (`python -m venv`), runs `pip install <wheel> duckdb` (from PyPI, as a user would),
and then runs the gh-analysis commands from directories OUTSIDE the repo, against the
loopback fake provider started with `python -m fake_provider` (OPENAI_BASE_URL /
OPENAI_API_KEY). Nothing from the checkout is on the venv's path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, ctrl_c_as_in_a_terminal

JOB_ID = re.compile(r"job_\d{8}_\d{6}_[a-z0-9]{6}")
ISSUE = re.compile(r"\b[\w.-]+/[\w.-]+#\d+\b")


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def wheel(ext, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, str(ROOT / "tools/build_wheel.py"), "--extension", ext,
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("ai_batch-*-py3-none-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="session")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with only `pip install <wheel> duckdb`; returns its bin directory."""
    where = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=300)
    pip = subprocess.run([str(where / "bin/pip"), "install", "-q", "--disable-pip-version-check",
                          str(wheel), "duckdb"], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return where / "bin"


@pytest.fixture(scope="session")
def provider(tmp_path_factory):
    """The loopback fake provider, as its README says to start it; yields its base URL."""
    port_file = tmp_path_factory.mktemp("fake") / "port"
    proc = subprocess.Popen([sys.executable, "-m", "fake_provider", "--port", "0", "--port-file",
                             str(port_file)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not port_file.exists():
        assert proc.poll() is None and time.time() < deadline, "fake provider did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port_file.read_text().strip()}/v1"
    proc.terminate()
    proc.wait(timeout=30)


def fake_control(provider: str, path: str, body: dict | None = None) -> dict:
    root = provider.rsplit("/v1", 1)[0]
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(root + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


@pytest.fixture
def workdir(provider):
    """A directory outside the repo holding data/issues/*.json, and a fresh fake."""
    fake_control(provider, "/_fake/reset", {})
    d = Path(tempfile.mkdtemp(prefix="gh_analysis_"))
    assert ROOT not in d.resolve().parents
    (d / "data/issues").mkdir(parents=True)
    for f in (ROOT / "data/sample/issues").glob("*.json"):
        shutil.copy(f, d / "data/issues" / f.name)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def user_env(venv: Path, provider: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AI_BATCH_", "GH_ANALYSIS_", "PYTHON", "OPENAI_", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv}{os.pathsep}{env.get('PATH', '')}", OPENAI_BASE_URL=provider,
               OPENAI_API_KEY="sk-fake-test-key", COLUMNS="160", **extra)
    return env


class Shell:
    """Runs command lines as a user types them, in `cwd`, with the venv first on PATH."""

    def __init__(self, venv: Path, provider: str, cwd: Path):
        self.venv, self.provider, self.cwd = venv, provider, cwd
        self.env = user_env(venv, provider)

    def __call__(self, line: str, **kw) -> subprocess.CompletedProcess:
        argv = shlex.split(line)
        assert argv[0] == "gh-analysis"
        proc = subprocess.run([str(self.venv / "gh-analysis"), *argv[1:]], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=300, **kw)
        assert "Traceback" not in proc.stdout + proc.stderr, f"{line}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def ok(self, line: str) -> str:
        proc = self(line)
        assert proc.returncode == 0, f"{line}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc.stdout

    def fails(self, line: str, prefix: str) -> str:
        """A user error: exit 1, nothing on stdout, ONE line on stderr starting with the command."""
        proc = self(line)
        assert proc.returncode == 1, f"{line}\n{proc.stdout}\n{proc.stderr}"
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(prefix + ": "), lines[0]
        assert proc.stdout == "", proc.stdout
        return lines[0]


@pytest.fixture
def sh(venv, provider, workdir) -> Shell:
    return Shell(venv, provider, workdir)


def job_ids(text: str) -> list[str]:
    return list(dict.fromkeys(JOB_ID.findall(text)))


# ----------------------------------------------------------------------------- the ten commands

def test_the_ten_commands_of_issue_10_as_written(sh, venv):
    out = sh.ok("gh-analysis import")
    assert "Imported 17 issues (17 new, 0 updated)" in out
    assert (sh.cwd / "data/issues.duckdb").exists()

    # 1. shows the database is enabled, with the extension from the wheel
    out = sh.ok("gh-analysis status")
    assert "Database: data/issues.duckdb (enabled)" in out
    assert "Extension: ai_batch v0.1.0" in out
    site = venv.parent / "lib"
    m = re.search(r"loaded from (\S+)\)", out)
    assert m and Path(m.group(1)).is_relative_to(site), out
    assert "/.duckdb_extensions/v" in m.group(1) and m.group(1).endswith("/linux_amd64/ai_batch.duckdb_extension")
    assert "Issues: 17" in out and "Jobs: none" in out

    # 2.
    out = sh.ok('gh-analysis query sql "SELECT COUNT(*) FROM issues"')
    assert re.search(r"\b17\b", out) and "1 row" in out

    # 3. a job is stored with the 5 open issues the SQL chose
    out = sh.ok("""gh-analysis batch submit product-labeling --sql "SELECT * FROM issues WHERE state='open' LIMIT 5" """)
    first = job_ids(out)
    assert len(first) == 1, out
    assert "Selected 5; skipped 0" in out and "Estimated cost: $" in out
    assert re.search(rf"{first[0]}\s+validating\s+5\b", out), out

    # 4. --missing-analysis skips the 5 in flight and sends the other 12
    out = sh.ok("gh-analysis batch submit product-labeling --missing-analysis")
    second = job_ids(out)
    assert len(second) == 1 and second != first, out
    assert "Selected 17; skipped 5 (0 already analysed, 5 in a running job" in out
    assert re.search(rf"{second[0]}\s+validating\s+12\b", out), out

    # 5. everything in replicatedhq/kots is in flight: nothing to submit, not an error
    out = sh.ok("gh-analysis batch submit product-labeling --org replicatedhq --repo kots")
    assert job_ids(out) == [] and "nothing to submit" in out and "3 in a job still running" in out

    # 6. history shows both jobs, newest first
    out = sh.ok("gh-analysis batch history")
    assert job_ids(out) == [second[0], first[0]], out

    # 7. details shows the job and its 5 items
    out = sh.ok(f"gh-analysis batch details {first[0]}")
    assert f"Job {first[0]}: validating" in out
    assert len(set(ISSUE.findall(out))) == 5, out
    assert "Items: 5 (0 completed, 0 failed, 5 pending)" in out

    # 8.
    out = sh.ok('gh-analysis query sql "SELECT * FROM batch_jobs ORDER BY created_at DESC"')
    assert job_ids(out) == [second[0], first[0]] and "2 rows" in out

    # 9.
    out = sh.ok('gh-analysis query sql "SELECT COUNT(*) FROM batch_items"')
    assert re.search(r"\b17\b", out), out

    # 10. a clear one-line error, exit code 1, no traceback
    line = sh.fails('gh-analysis batch submit product-labeling --sql "INVALID SQL"', "batch submit")
    assert "batch_submit: selection must be a single SELECT" in line and "INVALID" in line

    # The second --missing-analysis run skips everything still in flight.
    out = sh.ok("gh-analysis batch submit product-labeling --missing-analysis")
    assert job_ids(out) == [] and "nothing to submit" in out and "17 in a job still running" in out
    out = sh.ok('gh-analysis query sql "SELECT COUNT(*) FROM batch_items"')
    assert re.search(r"\b17\b", out), out


# ----------------------------------------------------------------------------- the rest of the commands

def test_refresh_wait_collects_then_status_retry_and_cancel(sh, provider):
    sh.ok("gh-analysis import")
    # Every 3rd request fails with a retryable server error.
    fake_control(provider, "/_fake/config", {"next_batch": {"outcome": "completed_mixed", "fail_every": 3,
                                                            "fail_kinds": ["server_error"]}})
    out = sh.ok("gh-analysis batch submit product-labeling --org replicatedhq -m openai:gpt-4o-mini --temperature 0.2")
    job = job_ids(out)[0]
    out = sh.ok("gh-analysis batch refresh --wait --interval 0.1 --timeout 120")
    assert "items" in out and job in out and "collected" in out, out
    done = sh.ok(f"gh-analysis batch status {job}")
    assert f"Job {job}: completed (product-labeling, openai:gpt-4o-mini)" in done
    m = re.search(r"Items: 13 \((\d+) completed, (\d+) failed, 0 pending\)", done)
    assert m and int(m.group(2)) > 0 and int(m.group(1)) + int(m.group(2)) == 13, done
    assert "already collected" in done
    status = sh.ok("gh-analysis status")
    assert f"Analyses: {m.group(1)}" in status and "Jobs: 1 completed" in status

    out = sh.ok(f"gh-analysis batch retry {job}")
    retry = [j for j in job_ids(out) if j != job]
    assert len(retry) == 1 and re.search(rf"{retry[0]}\s+validating\s+{m.group(2)}\b", out), out
    out = sh.ok(f"gh-analysis batch cancel {retry[0]}")
    assert "cancel" in out and retry[0] in out
    out = sh.ok(f"gh-analysis batch refresh {retry[0]}")
    assert retry[0] in out
    out = sh.ok("gh-analysis batch list --status cancelled")
    assert job_ids(out) == [retry[0]], out
    out = sh.ok('gh-analysis query sql "SELECT job_id, status FROM batch_jobs ORDER BY id" --format json')
    assert [r["job_id"] for r in json.loads(out)] == [job, retry[0]]
    out = sh.ok('gh-analysis query sql "SELECT count(*) AS n FROM product_labels" -f csv')
    assert out.splitlines()[0] == "n" and int(out.splitlines()[1]) >= int(m.group(1))


def test_ctrl_c_stops_waiting_cleanly(sh, provider):
    sh.ok("gh-analysis import")
    fake_control(provider, "/_fake/config", {"next_batch": {"hold_at": "in_progress"}})
    sh.ok("gh-analysis batch submit product-labeling --org acme")
    proc = subprocess.Popen([str(sh.venv / "gh-analysis"), "batch", "refresh", "--wait", "--interval", "0.2"],
                            cwd=sh.cwd, env=sh.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_as_in_a_terminal)
    # Until the provider has been polled at least twice: the wait is running, with its
    # handler in place. A wait that never polls fails here.
    deadline = time.time() + 120
    while fake_control(provider, "/_fake/state")["counts"]["retrieves"] < 2:
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("the wait never polled twice: " + repr(proc.communicate()))
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in out + err
    assert "stopped waiting; the jobs keep running at the provider" in err
    assert "items" in out   # the progress display was shown
    # The job is untouched: still running, and a later refresh goes on from there.
    assert "in_progress" in sh.ok("gh-analysis batch history")


def test_user_errors_are_one_red_line(sh, tmp_path):
    sh.fails("gh-analysis status", "status")           # no database yet: says so, creates nothing
    assert not (sh.cwd / "data/issues.duckdb").exists()
    line = sh.fails("gh-analysis batch history", "batch history")
    assert "does not exist" in line and "gh-analysis import" in line
    sh.fails("gh-analysis import --from nowhere", "import")
    sh.ok("gh-analysis import")
    line = sh.fails('gh-analysis query sql "SELEC 1"', "query sql")
    assert "syntax error" in line
    line = sh.fails("gh-analysis batch submit product-labeling --org acme -m anthropic:claude-sonnet-4-5", "batch submit")
    assert "batch_submit: ANTHROPIC_API_KEY is not set" in line, line
    line = sh.fails("gh-analysis batch submit product-labeling --org acme -m anthropic:gpt-4o", "batch submit")
    assert "model 'gpt-4o' is not one of Anthropic's models" in line, line
    line = sh.fails("gh-analysis batch submit product-labeling --org acme --thinking-effort high", "batch submit")
    assert "reasoning_effort is only for reasoning models" in line
    line = sh.fails("gh-analysis batch submit product-labeling", "batch submit")
    assert "say which issues" in line
    # --max-cost: over the budget, nothing is written or sent
    line = sh.fails("gh-analysis batch submit product-labeling --org acme --max-cost 0.000001", "batch submit")
    assert "is above max_cost := 0.000001" in line and "nothing was written or sent" in line, line
    line = sh.fails("gh-analysis batch details job_nope", "batch details")
    assert "batch_details: no job with job_id 'job_nope'" in line
    # reasoning models take --thinking-effort; the dry run writes and sends nothing
    out = sh.ok("gh-analysis batch submit product-labeling -o acme -i 42 -m openai:o4-mini --thinking-effort high -d")
    assert "Selected 1; skipped 0" in out and "dry run, nothing written or sent: 1 selected, 1 to submit" in out
    assert "No batch jobs yet" in sh.ok("gh-analysis batch history")


def test_database_option_and_environment(sh):
    other = sh.cwd / "elsewhere" / "my.duckdb"
    sh.ok(f"gh-analysis import --db {other}")
    assert other.exists() and not (sh.cwd / "data/issues.duckdb").exists()
    sh.env["GH_ANALYSIS_DB"] = str(other)
    assert f"Database: {other} (enabled)" in sh.ok("gh-analysis status")
    # --db wins over the environment
    line = sh.fails("gh-analysis status --db missing.duckdb", "status")
    assert "database missing.duckdb does not exist" in line


COMMANDS = ["import", "status", "query sql", "batch submit", "batch history", "batch list",
            "batch details", "batch refresh", "batch status", "batch cancel", "batch retry"]


HELP_CHECK = r"""
import sys
from typer.testing import CliRunner
from ai_batch.cli import app
bad = []
for c in sys.argv[1:]:
    r = CliRunner().invoke(app, c.split() + ["--help"], terminal_width=120)
    if r.exit_code != 0 or "Examples" not in r.output or f"gh-analysis {c}" not in r.output:
        bad.append((c, r.exit_code, r.output))
print(bad or "all good")
"""


def test_every_command_has_help_with_examples(sh):
    # One process for all commands (each gh-analysis start costs ~1 s); one real --help too.
    p = subprocess.run([str(sh.venv / "python"), "-c", HELP_CHECK, *COMMANDS], cwd=sh.cwd, env=sh.env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "all good", p.stdout + p.stderr
    out = sh.ok("gh-analysis batch submit -h")
    assert "--thinking-effort" in out and "Examples" in out


# ----------------------------------------------------------------------------- the module

def run_python(sh: Shell, code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(sh.venv / "python"), "-c", code], cwd=sh.cwd, env={**sh.env, **env},
                          capture_output=True, text=True, timeout=300)


MODULE_CHECK = r"""
import duckdb, os, sysconfig, ai_batch
d = ai_batch.get_extensions_dir()
assert d == os.path.join(sysconfig.get_paths()["platlib"], ".duckdb_extensions"), d
p = ai_batch.get_extension_load_path()
assert p.startswith(d) and os.path.isfile(p), p
plain = duckdb.connect()
try:
    ai_batch.load(plain)
    raise SystemExit("load() without unsigned extensions must fail")
except ai_batch.ExtensionLoadError as e:
    assert "does not allow unsigned extensions" in str(e) and "allow_unsigned_extensions" in str(e), e
con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
ai_batch.load(con)
print("rows", con.execute("SELECT count(*) FROM batch_history()").fetchall()[0][0])
print("version", duckdb.__version__)
"""

BY_NAME = r"""
import duckdb, ai_batch
con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
con.execute("SET extension_directories = [?]", [ai_batch.get_extensions_dir()])
con.execute("LOAD ai_batch")
print(con.execute("SELECT loaded, install_path FROM duckdb_extensions() WHERE extension_name = 'ai_batch'").fetchall())
"""


def test_module_load_and_extension_directory(sh):
    p = run_python(sh, MODULE_CHECK)
    assert p.returncode == 0 and "rows 0" in p.stdout, p.stdout + p.stderr
    p = run_python(sh, BY_NAME)
    assert p.returncode == 0 and "True" in p.stdout, p.stdout + p.stderr


def test_module_loads_into_duckdb_2_0_0_too(sh):
    extra = os.environ.get("AI_BATCH_EXTRA_DUCKDB")
    if not extra or not (Path(extra) / "2.0.0").is_dir():
        pytest.skip("AI_BATCH_EXTRA_DUCKDB/2.0.0 not installed (make venv)")
    p = run_python(sh, MODULE_CHECK, PYTHONPATH=str(Path(extra) / "2.0.0"))
    assert p.returncode == 0 and "version 2.0.0" in p.stdout and "rows 0" in p.stdout, p.stdout + p.stderr


MOUNT = r"""
import typer
from typer.testing import CliRunner
import ai_batch.cli
app = typer.Typer()
@app.command()
def version():
    print("tool 1.0")
app.add_typer(ai_batch.cli.batch_app, name="batch")
r = CliRunner().invoke(app, ["batch", "history"])
print(r.exit_code, r.output)
"""


def test_batch_group_mounts_into_another_typer_app(sh):
    sh.ok("gh-analysis import")
    p = run_python(sh, MOUNT)
    assert p.returncode == 0 and p.stdout.startswith("0 ") and "No batch jobs yet" in p.stdout, p.stdout + p.stderr


def test_claude_models_from_the_command_line(sh, provider):
    # The same commands with a Claude model: its key and base URL from ANTHROPIC_*, the
    # job sent to the fake's Message Batches side, collected by refresh --wait.
    sh.ok("gh-analysis import")
    sh.env.update(ANTHROPIC_API_KEY="sk-fake-test-key", ANTHROPIC_BASE_URL=provider.removesuffix("/v1"))
    out = sh.ok("gh-analysis batch submit product-labeling --org replicatedhq -m anthropic:claude-haiku-4-5")
    job = job_ids(out)[0]
    assert "Estimated cost: $" in out, out
    sh.ok("gh-analysis batch refresh --wait --interval 0.1 --timeout 120")
    done = sh.ok(f"gh-analysis batch status {job}")
    assert "completed" in done and "claude-haiku-4-5" in done and "Items: 13 (13 completed" in done, done
    out = sh.ok('gh-analysis query sql "SELECT provider, model, estimate_method, actual_cost > 0 AS paid '
                'FROM batch_jobs" --format json')
    assert json.loads(out) == [{"provider": "anthropic", "model": "claude-haiku-4-5",
                                "estimate_method": "o200k_base x 1.25 (no public tokenizer for the model)",
                                "paid": True}], out
    assert fake_control(provider, "/_fake/state")["counts"]["creates_by_job"] == {job: 1}
