#!/usr/bin/env python3
"""Builds the skip-check database: N issues (tiny text), N completed items in jobs of
50,000, and N product-labeling analyses (one per issue), with the extension's own
tracking tables.

    python bench/gen_skip_db.py --extension EXT --rows 1000000 --out bench/out/skip_1000000.duckdb

Reused when it exists and was built by this version of the script (the benchmark only
runs dry runs on it, which write nothing). Built with set-based SQL: about 5-10 s for
1,000,000 rows on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
VERSION = "3"
PROCESSOR = "product-labeling"


def build(ext: Path, rows: int, db: Path) -> None:
    if db.exists():
        try:
            con = duckdb.connect(str(db), read_only=True)
            v = con.execute("SELECT v FROM bench_meta").fetchone()[0]
            n = con.execute("SELECT count(*) FROM ai_analyses").fetchone()[0]
            con.close()
            if v == VERSION and n == rows:
                return
        except duckdb.Error:
            pass
        db.unlink()
    wal = Path(str(db) + ".wal")
    if wal.exists():
        wal.unlink()
    t = time.perf_counter()
    con = duckdb.connect(str(db), config={"allow_unsigned_extensions": "true"})
    con.execute((ROOT / "sql" / "schema.sql").read_text())
    con.execute(f"LOAD '{ext}'")
    con.execute("SELECT * FROM batch_history()").fetchall()  # creates the tracking tables
    jobs = (rows + 49_999) // 50_000
    con.execute(f"""
        INSERT INTO issues (id, org, repo, number, title, body, state, author_login, author_id,
                            created_at, updated_at)
        SELECT i, 'replicatedhq', 'repo' || (i % 10), i, 'Issue ' || i, 'body ' || i,
               CASE WHEN i % 3 = 0 THEN 'open' ELSE 'closed' END, 'user' || (i % 1000), i % 1000,
               TIMESTAMPTZ '2024-01-01' + to_seconds(i), TIMESTAMPTZ '2024-06-01' + to_seconds(i)
        FROM range(1, {rows} + 1) t(i)""")
    con.execute(f"SELECT max(nextval('issues_id_seq')) FROM range({rows})")
    con.execute(f"""
        INSERT INTO batch_jobs (job_id, provider, processor, processor_version, model, status, issues_count,
                                completed_count)
        SELECT 'job_20250101_000000_' || lpad(j::VARCHAR, 6, '0'), 'openai', '{PROCESSOR}', '1', 'gpt-4o-mini',
               'completed', 50000, 50000
        FROM range(1, {jobs} + 1) t(j)""")
    con.execute(f"""
        INSERT INTO batch_items (batch_job_id, issue_id, custom_id, status, input_tokens, output_tokens)
        SELECT j.id, i, j.job_id || '-i' || i, 'completed', 900, 150
        FROM range(1, {rows} + 1) t(i)
        JOIN batch_jobs j ON j.job_id = 'job_20250101_000000_' || lpad((((i - 1) // 50000) + 1)::VARCHAR, 6, '0')""")
    con.execute(f"""
        INSERT INTO ai_analyses (issue_id, processor, processor_version, model, batch_job_id, batch_item_id,
                                 result, input_tokens, output_tokens)
        SELECT b.issue_id, '{PROCESSOR}', '1', 'gpt-4o-mini', b.batch_job_id, b.id,
               '{{"summary":"s","root_cause_analysis":"r","current_labels_assessment":"a",'
               || '"recommended_labels":[{{"label":"product::kots","reasoning":"x"}}],"confidence":0.8}}',
               900, 150
        FROM batch_items b""")
    con.execute(f"CREATE TABLE bench_meta AS SELECT '{VERSION}' AS v")
    con.execute("CHECKPOINT")
    con.close()
    print(f"built {db} in {time.perf_counter() - t:.1f} s", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extension", required=True, type=Path)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    build(a.extension.resolve(), a.rows, a.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
