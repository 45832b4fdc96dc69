#!/usr/bin/env python3
"""The peer to beat for collecting: what a user would write instead of `batch_refresh()`.

For every job peer_submit.py recorded and not yet collected: retrieve the batch with the
official `openai` SDK; if it has finished, download its output (and error) file, parse
each line, take the model's answer from `choices[0].message.content`, parse it and check
it against the product-labeling schema (the required keys, no others, label enum,
confidence a number in 0..1), then write the analyses with one set-based INSERT and
update the items with one set-based UPDATE, in one transaction.

    OPENAI_API_KEY=... OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 \
      python bench/peer_collect.py --db issues.duckdb [--out timings.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb
from openai import OpenAI

REQUIRED = {"summary", "root_cause_analysis", "current_labels_assessment", "recommended_labels", "confidence"}
LABELS = {"product::kots", "product::troubleshoot", "product::kurl", "product::embedded-cluster", "product::sdk",
          "product::docs", "product::vendor", "product::downloadportal", "product::compatibility-matrix"}
FINISHED = {"completed", "expired", "cancelled", "failed"}


def validate(ans) -> str | None:
    """None if the answer matches the schema, else why not."""
    if not isinstance(ans, dict):
        return "not an object"
    keys = set(ans)
    if keys != REQUIRED:
        return f"keys: missing {sorted(REQUIRED - keys)}, extra {sorted(keys - REQUIRED)}"
    for k in ("summary", "root_cause_analysis", "current_labels_assessment"):
        if not isinstance(ans[k], str):
            return f"{k} is not a string"
    c = ans["confidence"]
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c <= 1:
        return "confidence is not a number in 0..1"
    labels = ans["recommended_labels"]
    if not isinstance(labels, list):
        return "recommended_labels is not an array"
    for x in labels:
        if not isinstance(x, dict) or set(x) != {"label", "reasoning"}:
            return "recommended_labels item has wrong keys"
        if x["label"] not in LABELS or not isinstance(x["reasoning"], str):
            return "recommended_labels item has a bad label or reasoning"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--out", help="write the timings here as JSON")
    a = ap.parse_args(argv)

    stages: dict[str, float] = {}
    t0 = last = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        stages[name] = stages.get(name, 0.0) + (now - last)
        last = now

    client = OpenAI()
    con = duckdb.connect(a.db)
    mark("connect")  # not counted in "seconds": the extension's figure starts connected too
    jobs = con.execute(
        "SELECT job_id, batch_id, processor, model FROM peer_jobs WHERE collected_at IS NULL ORDER BY job_id").fetchall()
    mark("setup")

    collected_jobs = []
    an_issue, an_job, an_result, an_in, an_out = [], [], [], [], []
    up_cid, up_status, up_in, up_out, up_err = [], [], [], [], []
    download_bytes = 0
    for job_id, batch_id, processor, model in jobs:
        t = time.perf_counter()
        b = client.batches.retrieve(batch_id)
        if b.status not in FINISHED:
            continue
        out_text = client.files.content(b.output_file_id).text if b.output_file_id else ""
        err_text = client.files.content(b.error_file_id).text if b.error_file_id else ""
        download_bytes += len(out_text) + len(err_text)
        stages["download"] = stages.get("download", 0.0) + (time.perf_counter() - t)
        last = time.perf_counter()

        for line in out_text.splitlines():
            if not line:
                continue
            d = json.loads(line)
            cid = d["custom_id"]
            resp = d.get("response") or {}
            body = resp.get("body") or {}
            usage = body.get("usage") or {}
            pin, pout = usage.get("prompt_tokens"), usage.get("completion_tokens")
            err = None
            try:
                msg = body["choices"][0]["message"]
                if body["choices"][0].get("finish_reason") != "stop" or msg.get("content") is None:
                    err = f"no answer (finish_reason {body['choices'][0].get('finish_reason')}, refusal {msg.get('refusal')!r})"
                else:
                    ans = json.loads(msg["content"])
                    err = validate(ans)
            except (KeyError, IndexError, TypeError, ValueError) as e:
                err = f"unreadable answer: {e}"
            up_cid.append(cid)
            up_in.append(pin)
            up_out.append(pout)
            if err is None:
                an_issue.append(int(cid.rsplit("-i", 1)[1]))
                an_job.append(job_id)
                an_result.append(msg["content"])
                an_in.append(pin)
                an_out.append(pout)
                up_status.append("completed")
                up_err.append(None)
            else:
                up_status.append("failed")
                up_err.append(err)
        for line in err_text.splitlines():
            if not line:
                continue
            d = json.loads(line)
            e = d.get("error") or ((d.get("response") or {}).get("body") or {}).get("error") or {}
            up_cid.append(d["custom_id"])
            up_status.append("expired" if e.get("code") == "batch_expired" else "failed")
            up_in.append(None)
            up_out.append(None)
            up_err.append(f"{e.get('code')}: {e.get('message')}")
        collected_jobs.append((job_id, processor, model))
        mark("parse_validate")

    con.execute("BEGIN")
    if an_issue:
        # one processor/model per run in this benchmark
        _job, processor, model = collected_jobs[0]
        con.execute(
            "INSERT INTO peer_analyses (issue_id, processor, model, job_id, result, input_tokens, output_tokens) "
            "SELECT i, $6, $7, j, r::JSON, ti, tout FROM "
            "(SELECT unnest($1) AS i, unnest($2) AS j, unnest($3) AS r, unnest($4) AS ti, unnest($5) AS tout)",
            [an_issue, an_job, an_result, an_in, an_out, processor, model])
    if up_cid:
        con.execute(
            "UPDATE peer_items SET status = u.s, input_tokens = u.ti, output_tokens = u.tout, error = u.e, "
            "updated_at = current_timestamp "
            "FROM (SELECT unnest($1) AS c, unnest($2) AS s, unnest($3)::INTEGER AS ti, unnest($4)::INTEGER AS tout, "
            "unnest($5)::VARCHAR AS e) u WHERE peer_items.custom_id = u.c",
            [up_cid, up_status, up_in, up_out, up_err])
    if collected_jobs:
        con.execute("UPDATE peer_jobs SET status = 'collected', collected_at = current_timestamp WHERE job_id IN "
                    "(SELECT unnest($1))", [[j[0] for j in collected_jobs]])
    con.execute("COMMIT")
    con.close()
    mark("write")

    out = {
        "tool": "peer",
        "jobs": len(collected_jobs),
        "results": len(up_cid),
        "analyses": len(an_issue),
        "download_bytes": download_bytes,
        "stages": stages,
        "seconds": time.perf_counter() - t0 - stages["connect"],
    }
    with open("/proc/self/status") as st:
        out["vmhwm_kb"] = next((int(x.split()[1]) for x in st if x.startswith("VmHWM:")), None)
    if a.out:
        Path(a.out).write_text(json.dumps(out))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
