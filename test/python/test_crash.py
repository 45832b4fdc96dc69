"""A process killed (SIGKILL, as `kill -9`) at any step of submit or refresh leaves a
database that the next batch_refresh() (and, for jobs that never reached the provider,
batch_retry()) brings to a correct state: no duplicate provider batch, no lost or
doubled result, every item in exactly one final state.

The kill comes from the extension's test-only failpoint switch (AI_BATCH_FAILPOINT),
inside a child Python process; the checks run in a fresh process afterwards.

Every test runs for both providers (the `provider` fixture): OpenAI, whose batches carry
our job id as metadata, and Anthropic, whose batches carry none (a lost create is found by
its number of requests and time, and confirmed by the job id inside its custom_ids). The
fake counts creates per job for both (for Anthropic from the custom_ids)."""

import os
import subprocess
import sys
import textwrap

import duckdb
import pytest

from conftest import ROOT, extension_path, import_sample

sys.path.insert(0, str(ROOT))
from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: E402,F401
from providers import PROVIDERS  # noqa: E402


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.name)
def provider(request, fake_openai, monkeypatch):
    """The provider under test, with this process's environment pointed at the fake."""
    request.param.setenv(monkeypatch, fake_openai)
    return request.param


def child_env(failpoint=None):
    """This process's environment (the provider fixture pointed it at the fake), with the
    failpoint switch set or cleared."""
    env = dict(os.environ)
    env.pop("AI_BATCH_FAILPOINT", None)
    if failpoint:
        env["AI_BATCH_FAILPOINT"] = failpoint
    return env


def child_program(db, code):
    return textwrap.dedent(f"""
        import duckdb
        con = duckdb.connect({str(db)!r}, config={{'allow_unsigned_extensions': 'true'}})
        con.execute("LOAD '{extension_path()}'")
    """) + textwrap.dedent(code)


def run_child(db, code, failpoint=None):
    return subprocess.run([sys.executable, "-c", child_program(db, code)], env=child_env(failpoint),
                          capture_output=True, text=True, timeout=120)


def open_db(db):
    con = duckdb.connect(str(db), config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extension_path()}'")
    return con


def refresh_until_settled(con, rounds=12):
    for _ in range(rounds):
        con.execute("SELECT * FROM batch_refresh()").fetchall()
        active = con.execute(
            "SELECT count(*) FROM batch_jobs WHERE status IN "
            "('created','uploaded','validating','in_progress','finalizing','cancelling') "
            "OR (collected_at IS NULL AND provider_batch_id IS NOT NULL)").fetchall()[0][0]
        if active == 0:
            return
    pytest.fail("jobs did not settle: " + repr(con.execute("SELECT job_id, status FROM batch_jobs").fetchall()))


def check_invariants(con, fake, n_issues):
    # Every issue analysed exactly once.
    total, distinct = con.execute("SELECT count(*), count(DISTINCT issue_id) FROM ai_analyses").fetchall()[0]
    assert (total, distinct) == (n_issues, n_issues)
    # Every item in a final state; per job the counts add up.
    assert con.execute("SELECT count(*) FROM batch_items WHERE status = 'pending'").fetchall()[0][0] == 0
    for job_id, issues, done, failed in con.execute(
            "SELECT job_id, issues_count, completed_count, failed_count FROM batch_jobs").fetchall():
        items = con.execute("SELECT count(*) FROM batch_items b JOIN batch_jobs j ON j.id = b.batch_job_id "
                            "WHERE j.job_id = ?", [job_id]).fetchall()[0][0]
        assert items == issues, job_id
        assert done + failed == issues, job_id
    # Each analysis belongs to a completed item of the same issue.
    orphans = con.execute("SELECT count(*) FROM ai_analyses a LEFT JOIN batch_items b ON b.id = a.batch_item_id "
                          "WHERE b.id IS NULL OR b.status <> 'completed' OR b.issue_id <> a.issue_id").fetchall()[0][0]
    assert orphans == 0
    # Never two provider batches for one of our jobs.
    creates = fake.state()["counts"]["creates_by_job"]
    assert creates and all(n == 1 for n in creates.values()), creates


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "crash.duckdb"
    con = duckdb.connect(str(path))
    n = import_sample(con)
    con.close()
    return path, n


def submit_code(provider):
    return ("print(con.execute(\"SELECT job_id, status FROM batch_submit('product-labeling', $$SELECT id FROM issues$$, "
            f"model := '{provider.model}')\").fetchall())")


@pytest.mark.parametrize("point, expect_status", [
    ("submit_after_record", "created"),
    ("submit_after_upload", "created"),
    ("submit_after_upload_recorded", "uploaded"),
    ("submit_after_create", "uploaded"),
])
def test_kill_during_submit(db, fake_openai, provider, point, expect_status):
    path, n = db
    r = run_child(path, submit_code(provider), failpoint=point)
    assert r.returncode == -9, (r.returncode, r.stdout, r.stderr[-2000:])
    con = open_db(path)
    # What the crash left behind: the job and all its items, committed before any network call.
    assert con.execute("SELECT status FROM batch_jobs").fetchall() == [(expect_status,)]
    assert con.execute("SELECT count(*) FROM batch_items WHERE status = 'pending'").fetchall()[0][0] == n
    creates_before = sum(fake_openai.state()["counts"]["creates_by_job"].values())
    assert creates_before == (1 if point == "submit_after_create" else 0)
    # A new submit must not put these issues into a second active job.
    again = con.execute("SELECT status, submitted FROM batch_submit('product-labeling', $$SELECT id FROM issues$$, "
                        "base_url := ?, model := ?)", [provider.base_url(fake_openai), provider.model]).fetchall()
    assert again == [("nothing_to_submit", 0)]
    refresh_until_settled(con)
    if expect_status == "created":
        # Nothing reached the provider: the job is failed as interrupted, and a retry sends it.
        job_id, status, err = con.execute("SELECT job_id, status, error_message FROM batch_jobs").fetchall()[0]
        assert status == "failed" and "interrupted" in err
        # An upload that finished before the kill is not left behind unused (Anthropic
        # uploads nothing: its requests travel inside the create).
        names = [f["filename"] for f in fake_openai.state()["files"]]
        assert f"{job_id}.jsonl" not in names, names
        if point == "submit_after_upload" and provider.uploads:
            assert "deleted 1 of 1 unused uploaded file" in err, err
        assert con.execute("SELECT DISTINCT error_code FROM batch_items").fetchall() == [("interrupted",)]
        con.execute("SELECT * FROM batch_retry(?)", [job_id]).fetchall()
        refresh_until_settled(con)
    check_invariants(con, fake_openai, n)
    con.close()


def test_kill_between_jobs_of_a_pipelined_submit(db, fake_openai, provider):
    """Jobs are committed and sent one by one while the next is built: a kill before
    job 2 is recorded leaves job 1 (committed, perhaps already sent) and nothing of the
    rest, and running the same submit again sends only the rest."""
    path, n = db
    submit = ("con.execute(\"SELECT * FROM batch_submit('product-labeling', $$SELECT id FROM issues$$, "
              f"max_requests_per_job := 6, model := '{provider.model}')\").fetchall()")
    r = run_child(path, submit, failpoint="submit_before_next_record")
    assert r.returncode == -9, (r.returncode, r.stdout, r.stderr[-2000:])
    con = open_db(path)
    jobs = con.execute("SELECT job_id, issues_count FROM batch_jobs").fetchall()
    assert len(jobs) == 1 and jobs[0][1] == 6, jobs
    assert con.execute("SELECT count(*) FROM batch_items").fetchall()[0][0] == 6
    again = con.execute("SELECT submitted FROM batch_submit('product-labeling', $$SELECT id FROM issues$$, "
                        "max_requests_per_job := 6, base_url := ?, model := ?)",
                        [provider.base_url(fake_openai), provider.model]).fetchall()
    assert sum(s for (s,) in again) == n - 6, again
    refresh_until_settled(con)
    # Job 1 may have been killed before its upload finished: then it is failed as
    # interrupted, and a retry sends it.
    for (job_id,) in con.execute("SELECT job_id FROM batch_jobs WHERE status = 'failed'").fetchall():
        con.execute("SELECT * FROM batch_retry(?)", [job_id]).fetchall()
    refresh_until_settled(con)
    check_invariants(con, fake_openai, n)
    con.close()


def test_build_failure_after_a_sent_job_names_it(db, fake_openai, provider, monkeypatch):
    """A failure while job 2 is being built, after job 1 was committed and handed to the
    sender: the statement fails, the message names job 1 as sent, job 1 is at the
    provider, and the same submit again sends only the rest."""
    path, n = db
    monkeypatch.setenv("AI_BATCH_FAILPOINT", "error:submit_before_next_record")
    spool = path.parent / "spool"
    monkeypatch.setenv("AI_BATCH_SPOOL_DIR", str(spool))
    con = open_db(path)
    sql = ("SELECT * FROM batch_submit('product-labeling', $$SELECT id FROM issues$$, "
           "max_requests_per_job := 6, base_url := ?, model := ?)")
    args = [provider.base_url(fake_openai), provider.model]
    with pytest.raises(duckdb.Error) as ei:
        con.execute(sql, args).fetchall()
    msg = str(ei.value)
    jobs = con.execute("SELECT job_id, status, issues_count, provider_batch_id FROM batch_jobs").fetchall()
    assert len(jobs) == 1, jobs
    job_id, status, issues, batch_id = jobs[0]
    assert issues == 6 and batch_id is not None and status != "created", jobs
    assert "injected failure" in msg and job_id in msg and "were sent" in msg, msg
    assert sum(fake_openai.state()["counts"]["creates_by_job"].values()) == 1
    # No request file is left behind: job 1's was sent, the others were never finished.
    # (Anthropic's staged requests wait in spool/staged/ until their batch is recorded.)
    assert [f for f in spool.rglob("*") if not f.is_dir()] == []
    monkeypatch.delenv("AI_BATCH_FAILPOINT")
    again = con.execute(sql, args).fetchall()
    assert len(again) == 2 and sum(r[5] for r in again) == n - 6, again
    refresh_until_settled(con)
    check_invariants(con, fake_openai, n)
    con.close()


@pytest.mark.parametrize("point", ["refresh_after_download", "refresh_before_commit", "refresh_after_commit"])
def test_kill_during_refresh(db, fake_openai, provider, point):
    path, n = db
    r = run_child(path, submit_code(provider))
    assert r.returncode == 0, r.stderr
    code = "for _ in range(10):\n    con.execute('SELECT * FROM batch_refresh()').fetchall()\n"
    r = run_child(path, code, failpoint=point)
    assert r.returncode == -9, (r.returncode, r.stdout, r.stderr[-2000:])
    con = open_db(path)
    applied = con.execute("SELECT count(*) FROM ai_analyses").fetchall()[0][0]
    # All or nothing of the apply survived the kill.
    assert applied == (n if point == "refresh_after_commit" else 0)
    refresh_until_settled(con)
    check_invariants(con, fake_openai, n)
    con.close()


def test_kill_while_the_create_is_in_flight_then_refresh_before_and_after_it_lands(db, fake_openai, provider,
                                                                                     monkeypatch):
    """Issue 9, item 1: the host is killed (SIGKILL from outside) while the provider is
    still working on its create. A new process refreshes BEFORE the create lands: no
    second batch. After it lands: adopted, collected, zero duplicates, zero lost results."""
    import signal
    import time

    path, n = db
    # The create takes 8 s at the provider; refresh waits 3 x 4 s after it was sent.
    monkeypatch.setenv("AI_BATCH_CREATE_TIMEOUT_SECS", "4")
    fake_openai.configure({"fault": provider.create_fault(kind="delay", delay=8)})
    child = subprocess.Popen([sys.executable, "-c", child_program(path, submit_code(provider))], env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Kill it once the create has reached the provider (the delay fault fired).
        end = time.monotonic() + 60
        while fake_openai.state()["counts"]["faults_fired"] < 1:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < end, "the create never reached the provider"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -9, (child.returncode, child.stderr.read()[-2000:])

    con = open_db(path)
    assert con.execute("SELECT status FROM batch_jobs").fetchall() == [("uploaded",)]
    # Before the create lands: nothing is created, the job waits.
    out = con.execute("SELECT status, message FROM batch_refresh()").fetchall()
    assert out[0][0] == "uploaded" and "may still land" in out[0][1], out
    assert fake_openai.state()["counts"]["batch_creates"] == 0
    # The create lands; refresh adopts it and collects.
    end = time.monotonic() + 30
    while fake_openai.state()["counts"]["batch_creates"] < 1:
        assert time.monotonic() < end, "the delayed create never landed"
        time.sleep(0.05)
    refresh_until_settled(con)
    check_invariants(con, fake_openai, n)
    assert sum(fake_openai.state()["counts"]["creates_by_job"].values()) == 1
    con.close()
