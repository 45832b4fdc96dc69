"""The demo and the benchmark scripts, run as a user runs them, on each provider.

`make demo PROVIDER=...` and `make bench` are not part of `make test`; these run the
same scripts (demo/run_demo.py, bench/run_bench.py) against their own loopback fake on a
small input and check what they leave behind: every job collected on the provider asked
for, every issue answered, and the bench's results naming both providers' figures.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, import_sample


def run_script(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "AI_BATCH_FAILPOINT"))}
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args[0]} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def sample_issue_count(connect, tmp_path) -> int:
    return import_sample(connect(tmp_path / "count.duckdb", load=False))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_demo_runs_its_whole_job_on_the_provider(ext, connect, tmp_path, provider):
    db = tmp_path / "demo.duckdb"
    out = run_script(["demo/run_demo.py", "--extension", ext, "--db", str(db), "--provider", provider]).stdout
    assert f"local provider ({provider})" in out
    issues = sample_issue_count(connect, tmp_path)

    con = connect(db)
    jobs = con.execute("SELECT processor, provider, model, status, collected_at IS NOT NULL, actual_cost "
                       "FROM batch_jobs ORDER BY id").fetchall()
    # product-labeling: open issues, closed issues (scalar form); the '*' submit found nothing left;
    # then triage-kind on every issue
    assert [j[0] for j in jobs] == ["product-labeling", "product-labeling", "triage-kind"], jobs
    for processor, prov, model, status, collected, cost in jobs:
        assert prov == provider, jobs
        assert model.startswith("claude-") == (provider == "anthropic"), jobs
        assert (status, collected) == ("completed", True), jobs
        assert cost is not None and cost > 0, jobs
    if provider == "anthropic":
        assert {j[2] for j in jobs} == {"claude-haiku-4-5"}
    # how the input tokens were estimated is recorded per job, and shown next to the actual count
    shown = con.execute("SELECT estimate_method, estimated_input_tokens, input_tokens FROM batch_history()").fetchall()
    assert len(shown) == 3 and all(m and "o200k_base" in m and est > 0 and got > 0 for m, est, got in shown), shown
    # every issue answered by both processors, read through the view and the typed results
    assert con.execute("SELECT count(DISTINCT issue_id) FROM ai_analyses WHERE processor = 'product-labeling'"
                       ).fetchall()[0][0] == issues
    assert con.execute("SELECT count(*) FROM product_labels").fetchall()[0][0] > 0
    kinds = con.execute("SELECT kind FROM batch_results('triage-kind')").fetchall()
    assert len(kinds) == issues and {k[0] for k in kinds} <= {"bug", "feature", "question"}


def test_bench_reports_anthropic_next_to_openai(ext, tmp_path):
    size = 120
    out = tmp_path / "bench"
    r = run_script(["bench/run_bench.py", "--extension", ext, "--sizes", str(size), "--runs", "1",
                    "--no-skip-check", "--tokbench", "never", "--out", str(out)])
    res = json.loads((out / "latest.json").read_text())
    assert res["args"]["provider"] == "both"  # the default
    entry = res["sizes"][0]
    ant = entry["anthropic"]
    run = entry["runs"][0]
    for sub, coll, key in ((entry["ext_submit"], entry["ext_collect"], "ext_submit"),
                           (ant["ext_submit"], ant["ext_collect"], "ant_submit")):
        assert sub, (run.get(key) or {}).get("error")
        assert sub["issues"] == size and sub["jobs"] == 1, sub
        assert sub["stages"].get("upload_create") is not None, sub
        assert coll["analyses"] == size and coll["items_completed"] == size, coll
    assert entry["peer_submit"]["issues"] == size and entry["peer_collect"]["analyses"] == size
    # the fake alone took the exact body of the extension's (only) job, and served its results
    assert ant["fake"]["raw_create_requests"] == size
    assert ant["fake"]["raw_create_mb"] > 0 and ant["fake"]["raw_results_mb"] > 0
    assert ant["fake"]["raw_create_parsed_s"] > 0  # the same body, parsed at create
    assert run["fake_raw_results"]["requests"] == size
    report = r.stdout
    submit, collect = report.split("COLLECT", 1)
    assert "extension, openai" in submit and "peer (python), openai" in submit and "extension, anthropic" in submit
    assert "extension, openai" in collect and "extension, anthropic" in collect
    assert "anthropic / openai (extension): submit" in report
    # nothing left behind in the repository's bench/out
    assert not list(out.glob("work/anthropic_body_*"))
