#!/usr/bin/env python3
"""Runs one SQL statement of the extension in this (fresh) process and reports timings.

    python bench/ext_run.py --extension EXT --db DB --sql "SELECT * FROM batch_submit(...)" --out result.json

run_bench.py starts this as a child process so that the peak RSS it reads with wait4()
is the extension's alone. The result JSON holds: the wall time of the statement
(execute + fetch), the rows it returned, VmRSS after LOAD (the baseline: Python, the
duckdb wheel and the extension mapped), VmHWM at the end, and DuckDB's own buffer use
(duckdb_memory()) after the statement. Stage timings come from AI_BATCH_PROFILE, which
the parent sets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import duckdb


def proc_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--extension", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--sql", action="append", required=True, help="statement(s) to time, in order")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    t_start = time.perf_counter()
    con = duckdb.connect(a.db, config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{a.extension}'")
    rss_after_load = proc_kb("VmRSS")
    t_loaded = time.perf_counter()
    results = []
    error = None
    for sql in a.sql:
        t = time.perf_counter()
        try:
            cur = con.execute(sql)
            cols = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall()
        except duckdb.Error as e:
            error = f"{type(e).__name__}: {e}"
            break
        results.append({
            "sql": sql,
            "seconds": time.perf_counter() - t,
            "columns": cols,
            "rows": [[v if isinstance(v, (int, float, str, type(None))) else str(v) for v in r] for r in rows],
        })
    try:
        duck_mem = con.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()").fetchone()[0]
    except duckdb.Error:
        duck_mem = None
    hwm = proc_kb("VmHWM")
    con.close()
    out = {
        "results": results,
        "error": error,
        "load_seconds": t_loaded - t_start,
        "rss_after_load_kb": rss_after_load,
        "vmhwm_kb": hwm,
        "duckdb_memory_bytes": duck_mem,
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
