"""sql/schema.sql + sql/import_issues.sql, with the Python wheel and with the duckdb CLI.

Run: python -m pytest test/python/test_import.py -q
The CLI is looked up in $DUCKDB_CLI, next to sys.executable (the venv's `duckdb`), then
on PATH; the CLI tests are skipped when none is found.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "sql" / "schema.sql"
IMPORT = ROOT / "sql" / "import_issues.sql"
SAMPLE = ROOT / "data" / "sample" / "issues"

# What the sample folder holds (keep in step with data/sample/issues/).
SAMPLE_ISSUES = 17
SAMPLE_LABELS = 31
SAMPLE_COMMENTS = 31


def find_cli() -> str | None:
    env = os.environ.get("DUCKDB_CLI")
    if env:
        return env
    beside = Path(sys.executable).parent / "duckdb"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("duckdb")


CLI = find_cli()
needs_cli = pytest.mark.skipif(CLI is None, reason="duckdb CLI not found")


# ----------------------------------------------------------------------------- helpers

def sql_str(s: str | Path) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def py_import(con: duckdb.DuckDBPyConnection, glob: str | Path | None) -> tuple:
    """Schema + import through the Python wheel; returns the summary row."""
    con.execute(SCHEMA.read_text(encoding="utf-8"))
    if glob is not None:
        con.execute("SET VARIABLE issues_glob = ?", [str(glob)])
    return con.execute(IMPORT.read_text(encoding="utf-8")).fetchone()


def counts(con) -> tuple[int, int, int]:
    return con.execute("""
        SELECT (SELECT count(*) FROM issues), (SELECT count(*) FROM labels),
               (SELECT count(*) FROM comments)
    """).fetchone()


def id_map(con) -> dict[tuple, int]:
    return {(o, r, n): i for o, r, n, i in
            con.execute("SELECT org, repo, number, id FROM issues").fetchall()}


def labels_of(con, org, repo, number) -> list[str]:
    return [r[0] for r in con.execute("""
        SELECT l.name FROM labels l JOIN issues i ON i.id = l.issue_id
        WHERE i.org = ? AND i.repo = ? AND i.number = ? ORDER BY l.name
    """, [org, repo, number]).fetchall()]


def copy_sample(dst: Path) -> Path:
    shutil.copytree(SAMPLE, dst)
    return dst


def write_issue(folder: Path, doc: dict, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if name is None:
        name = f"{doc['org']}_{doc['repo']}_issue_{doc['issue']['number']}.json"
    p = folder / name
    p.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    return p


def cli(db: Path, *commands: str, cwd: Path = ROOT, stdin: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    args = [CLI, str(db)]
    for c in commands:
        args += ["-c", c]
    proc = subprocess.run(args, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, f"duckdb CLI failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def cli_rows(db: Path, query: str) -> list[list[str]]:
    proc = subprocess.run([CLI, str(db), "-csv", "-noheader", "-c", query], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [row for row in csv.reader(io.StringIO(proc.stdout)) if row]


def cli_import(db: Path, glob: str | Path) -> subprocess.CompletedProcess:
    return cli(db, ".read sql/schema.sql", f"SET VARIABLE issues_glob = {sql_str(glob)}",
               ".read sql/import_issues.sql")


# ----------------------------------------------------------------------------- schema

def test_schema_is_idempotent_and_has_the_expected_shape():
    con = duckdb.connect()
    for _ in range(3):
        con.execute(SCHEMA.read_text(encoding="utf-8"))
    cols = {(t, c): ty for t, c, ty in con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns").fetchall()}
    assert cols[("issues", "id")] == "BIGINT"
    assert cols[("issues", "created_at")] == "TIMESTAMP WITH TIME ZONE"
    assert ("labels", "issue_id") in cols and ("comments", "position") in cols
    # no foreign keys anywhere (they would break re-import)
    assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'FOREIGN KEY'"
                       ).fetchone()[0] == 0
    idx = {r[0] for r in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    assert {"comments_issue_id_idx", "labels_issue_id_idx"} <= idx
    # sequences give ids; (org, repo, number) and (issue_id, name) are unique
    con.execute("INSERT INTO issues (org, repo, number) VALUES ('o', 'r', 1), ('o', 'r', 2)")
    assert con.execute("SELECT list(id ORDER BY number) FROM issues").fetchone()[0] == [1, 2]
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO issues (org, repo, number) VALUES ('o', 'r', 1)")
    con.execute("INSERT INTO labels VALUES (1, 'bug', NULL, NULL)")
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO labels VALUES (1, 'bug', 'fff', NULL)")
    # deleting an issue that labels/comments point at is allowed (no FK)
    con.execute("INSERT INTO comments (issue_id, position, body) VALUES (1, 0, 'x')")
    con.execute("DELETE FROM issues WHERE id = 1")


# ----------------------------------------------------------------------------- Python wheel

def test_python_import_of_the_sample_folder():
    con = duckdb.connect()
    summary = py_import(con, SAMPLE / "*.json")
    assert summary == (SAMPLE_ISSUES, SAMPLE_ISSUES, 0, SAMPLE_LABELS, SAMPLE_COMMENTS)
    assert counts(con) == (SAMPLE_ISSUES, SAMPLE_LABELS, SAMPLE_COMMENTS)
    assert sorted(id_map(con).values()) == list(range(1, SAMPLE_ISSUES + 1))

    # a full issue
    row = con.execute("""
        SELECT title, state, author_login, author_id,
               created_at = TIMESTAMPTZ '2024-11-04 09:30:12+00',
               updated_at = TIMESTAMPTZ '2024-11-07 16:02:55+00',
               body LIKE '%kotsadm log excerpt:%```%'
        FROM issues WHERE org = 'replicatedhq' AND repo = 'kots' AND number = 4127
    """).fetchone()
    assert row == ('Admin console shows application status "Missing" after upgrading to 1.109.3',
                   "open", "dpatel-ops", 8812034, True, True, True)
    assert labels_of(con, "replicatedhq", "kots", 4127) == ["bug", "customer-reported", "product::kots"]
    assert con.execute("""
        SELECT color, description FROM labels l JOIN issues i ON i.id = l.issue_id
        WHERE i.number = 4127 AND l.name = 'bug'
    """).fetchone() == ("d73a4a", "Something isn't working")

    # comments keep thread order, authors, ids and times
    comments = con.execute("""
        SELECT c.position, c.author_login, c.github_id IS NOT NULL,
               c.created_at = TIMESTAMPTZ '2024-06-10 09:00:00+00'
        FROM comments c JOIN issues i ON i.id = c.issue_id
        WHERE i.repo = 'kurl' AND i.number = 5012 ORDER BY c.position
    """).fetchall()
    assert [c[0] for c in comments] == [0, 1, 2, 3, 4]
    assert [c[1] for c in comments] == ["cgarcia", "rwilliams", "cgarcia", "sre-bot", "rwilliams"]
    assert [c[2] for c in comments] == [True, True, True, False, True]   # one comment has no id
    assert comments[0][3] is True

    # null body, no labels + no comments, non-ASCII / emoji
    assert con.execute("SELECT body IS NULL FROM issues WHERE org = 'acme' AND number = 57"
                       ).fetchone() == (True,)
    assert con.execute("""
        SELECT (SELECT count(*) FROM labels WHERE issue_id = i.id),
               (SELECT count(*) FROM comments WHERE issue_id = i.id)
        FROM issues i WHERE repo = 'embedded-cluster' AND number = 830
    """).fetchone() == (0, 0)
    title, body = con.execute("SELECT title, body FROM issues WHERE org = 'acme' AND number = 63").fetchone()
    assert title == "Support-Bundle: Redactor zerstört Umlaute in ConfigMaps 😕"
    assert "Größe" in body and "設定ファイル" in body
    assert con.execute("""
        SELECT c.body FROM comments c JOIN issues i ON i.id = c.issue_id
        WHERE i.org = 'acme' AND i.number = 63 AND c.position = 1
    """).fetchone()[0].startswith("同じ問題")


def test_python_reimport_is_idempotent(tmp_path):
    db = tmp_path / "issues.duckdb"
    con = duckdb.connect(str(db))
    py_import(con, SAMPLE / "*.json")
    before_ids = id_map(con)
    before_rows = con.execute("""
        SELECT i.id, l.name FROM issues i JOIN labels l ON l.issue_id = i.id ORDER BY ALL
    """).fetchall()
    before_comments = con.execute(
        "SELECT issue_id, position, author_login, body FROM comments ORDER BY ALL").fetchall()

    summary = py_import(con, SAMPLE / "*.json")
    assert summary == (SAMPLE_ISSUES, 0, SAMPLE_ISSUES, SAMPLE_LABELS, SAMPLE_COMMENTS)
    assert counts(con) == (SAMPLE_ISSUES, SAMPLE_LABELS, SAMPLE_COMMENTS)
    assert id_map(con) == before_ids
    assert con.execute("""
        SELECT i.id, l.name FROM issues i JOIN labels l ON l.issue_id = i.id ORDER BY ALL
    """).fetchall() == before_rows
    assert con.execute(
        "SELECT issue_id, position, author_login, body FROM comments ORDER BY ALL").fetchall() == before_comments

    # and again after closing and reopening the database
    con.close()
    con = duckdb.connect(str(db))
    py_import(con, SAMPLE / "*.json")
    assert counts(con) == (SAMPLE_ISSUES, SAMPLE_LABELS, SAMPLE_COMMENTS)
    assert id_map(con) == before_ids


def modify_sample(folder: Path) -> None:
    """Change one issue's title, labels and comments; add a brand-new issue."""
    p = folder / "replicatedhq_kots_issue_4127.json"
    doc = json.loads(p.read_text(encoding="utf-8"))
    doc["issue"]["title"] = "Admin console status 'Missing' with minimal RBAC (fixed in next patch)"
    doc["issue"]["state"] = "closed"
    doc["issue"]["updated_at"] = "2024-11-20T10:00:00Z"
    doc["issue"]["labels"] = [{"name": "product::kots"}, {"name": "regression", "color": "b60205"}]
    doc["issue"]["comments"] = doc["issue"]["comments"][:1]
    p.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    write_issue(folder, {"org": "replicatedhq", "repo": "kots", "issue": {
        "number": 4200, "title": "New issue after the first import", "body": "hello",
        "state": "open", "labels": [{"name": "bug"}], "comments": []}})


def test_python_reimport_of_updated_files(tmp_path):
    folder = copy_sample(tmp_path / "issues")
    con = duckdb.connect()
    py_import(con, folder / "*.json")
    before = id_map(con)

    modify_sample(folder)
    summary = py_import(con, folder / "*.json")
    assert summary[:3] == (SAMPLE_ISSUES + 1, 1, SAMPLE_ISSUES)

    after = id_map(con)
    assert {k: v for k, v in after.items() if k in before} == before        # ids unchanged
    assert after[("replicatedhq", "kots", 4200)] > max(before.values())      # new id for the new one
    assert con.execute("""
        SELECT title, state FROM issues WHERE repo = 'kots' AND number = 4127
    """).fetchone() == ("Admin console status 'Missing' with minimal RBAC (fixed in next patch)", "closed")
    assert labels_of(con, "replicatedhq", "kots", 4127) == ["product::kots", "regression"]
    assert con.execute("""
        SELECT count(*) FROM comments WHERE issue_id = ?
    """, [before[("replicatedhq", "kots", 4127)]]).fetchone() == (1,)
    # 4127 had 3 labels and 3 comments, now 2 and 1; the new issue has 1 label, no comment
    assert counts(con) == (SAMPLE_ISSUES + 1, SAMPLE_LABELS - 1 + 1, SAMPLE_COMMENTS - 2)


def test_only_imported_issues_are_touched(tmp_path):
    con = duckdb.connect()
    py_import(con, SAMPLE / "*.json")
    before = counts(con)
    # import a folder holding a single, already known issue with fewer labels
    one = tmp_path / "one"
    doc = json.loads((SAMPLE / "replicatedhq_troubleshoot_issue_1482.json").read_text(encoding="utf-8"))
    doc["issue"]["labels"] = []
    write_issue(one, doc)
    assert py_import(con, one / "*.json")[:3] == (1, 0, 1)
    assert labels_of(con, "replicatedhq", "troubleshoot", 1482) == []
    assert counts(con) == (before[0], before[1] - 2, before[2])   # other issues untouched


MINIMAL_DOCS = [
    # only the required keys
    {"org": "o", "repo": "r", "issue": {"number": 1}},
    # explicit nulls everywhere
    {"org": "o", "repo": "r", "issue": {"number": 2, "title": None, "body": None, "state": None,
                                        "labels": None, "user": None, "comments": None,
                                        "created_at": None, "updated_at": None}},
    # labels as plain strings, comments as a COUNT (raw GitHub API shape), unknown keys
    {"org": "o", "repo": "r", "extra": {"x": 1}, "issue": {
        "number": 3, "title": "strings", "labels": ["bug", "product::kots", "bug"], "comments": 4,
        "reactions": {"+1": 2}, "user": {"login": "someone"}}},
    # empty lists, a comment without user / id / timestamps
    {"org": "o", "repo": "r", "issue": {"number": 4, "labels": [], "comments": [{"body": "anonymous"}]}},
    # a label object without name is ignored
    {"org": "o", "repo": "r", "issue": {"number": 5, "labels": [{"color": "fff"}, {"name": "ok"}]}},
]


def test_missing_optional_fields(tmp_path):
    folder = tmp_path / "minimal"
    for d in MINIMAL_DOCS:
        write_issue(folder, d)
    con = duckdb.connect()
    assert py_import(con, folder / "*.json") == (5, 5, 0, 3, 1)
    rows = con.execute("""
        SELECT number, title, body, state, author_login, author_id, created_at, updated_at
        FROM issues ORDER BY number
    """).fetchall()
    assert rows[0] == (1, None, None, None, None, None, None, None)
    assert rows[1] == (2, None, None, None, None, None, None, None)
    assert rows[2][1] == "strings" and rows[2][4] == "someone"
    assert labels_of(con, "o", "r", 3) == ["bug", "product::kots"]
    assert labels_of(con, "o", "r", 5) == ["ok"]
    assert con.execute("SELECT position, author_login, github_id, body, created_at FROM comments"
                       ).fetchall() == [(0, None, None, "anonymous", None)]
    # re-import: still no duplicates
    py_import(con, folder / "*.json")
    assert counts(con) == (5, 3, 1)


def test_same_issue_in_two_files_newest_wins(tmp_path):
    folder = tmp_path / "dups"
    base = {"org": "o", "repo": "r", "issue": {"number": 9, "title": "old", "updated_at": "2024-01-01T00:00:00Z",
                                               "labels": [{"name": "a"}]}}
    newer = {"org": "o", "repo": "r", "issue": {"number": 9, "title": "new", "updated_at": "2024-02-01T00:00:00Z",
                                                "labels": [{"name": "b"}]}}
    write_issue(folder, newer, "copy_b.json")
    write_issue(folder, base, "copy_a.json")
    con = duckdb.connect()
    assert py_import(con, folder / "*.json")[:2] == (1, 1)
    assert con.execute("SELECT title FROM issues").fetchall() == [("new",)]
    assert labels_of(con, "o", "r", 9) == ["b"]


def test_missing_required_field_fails_clearly_and_writes_nothing(tmp_path):
    folder = copy_sample(tmp_path / "issues")
    con = duckdb.connect()
    py_import(con, folder / "*.json")
    before_counts, before_ids = counts(con), id_map(con)

    # modify a good file AND add a broken one: neither change may land
    modify_sample(folder)
    write_issue(folder, {"repo": "r", "issue": {"number": 1}}, "broken_issue_1.json")
    with pytest.raises(duckdb.Error) as exc:
        py_import(con, folder / "*.json")
    assert "broken_issue_1.json" in str(exc.value)
    assert "lack org, repo or issue.number" in str(exc.value)
    con.execute("ROLLBACK")   # as documented at the top of sql/import_issues.sql
    assert counts(con) == before_counts
    assert id_map(con) == before_ids
    assert con.execute("SELECT title FROM issues WHERE number = 4127").fetchone()[0].startswith("Admin console shows")


def test_no_matching_file_fails(tmp_path):
    con = duckdb.connect()
    with pytest.raises(duckdb.Error, match="No files found"):
        py_import(con, tmp_path / "nothing" / "*.json")
    con.execute("ROLLBACK")
    assert counts(con) == (0, 0, 0)


def test_default_glob_is_data_issues(tmp_path, monkeypatch):
    shutil.copytree(SAMPLE, tmp_path / "data" / "issues")
    monkeypatch.chdir(tmp_path)
    con = duckdb.connect()
    assert con.execute("SELECT getvariable('issues_glob')").fetchone() == (None,)
    assert py_import(con, None)[0] == SAMPLE_ISSUES


# ----------------------------------------------------------------------------- duckdb CLI

@needs_cli
def test_cli_version_reported():
    proc = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    print(f"duckdb CLI: {CLI}: {proc.stdout.strip()}; python wheel: {duckdb.__version__}")


@needs_cli
def test_cli_import_with_dash_c(tmp_path):
    db = tmp_path / "cli.duckdb"
    proc = cli_import(db, "data/sample/issues/*.json")
    assert "issues_new" in proc.stdout            # the summary row is shown
    assert cli_rows(db, "SELECT count(*) FROM issues") == [[str(SAMPLE_ISSUES)]]
    assert cli_rows(db, "SELECT count(*) FROM labels") == [[str(SAMPLE_LABELS)]]
    assert cli_rows(db, "SELECT count(*) FROM comments") == [[str(SAMPLE_COMMENTS)]]
    assert cli_rows(db, "SELECT title FROM issues WHERE org = 'acme' AND number = 63") == [
        ["Support-Bundle: Redactor zerstört Umlaute in ConfigMaps 😕"]]
    assert cli_rows(db, "SELECT body IS NULL FROM issues WHERE org = 'acme' AND number = 57") == [["true"]]

    ids_query = "SELECT org, repo, number, id FROM issues ORDER BY id"
    ids = cli_rows(db, ids_query)
    cli_import(db, "data/sample/issues/*.json")          # idempotent
    assert cli_rows(db, ids_query) == ids
    assert cli_rows(db, "SELECT (SELECT count(*) FROM issues), (SELECT count(*) FROM labels), "
                        "(SELECT count(*) FROM comments)") == [
        [str(SAMPLE_ISSUES), str(SAMPLE_LABELS), str(SAMPLE_COMMENTS)]]

    # the database written by the CLI reads fine from the Python wheel
    con = duckdb.connect(str(db), read_only=True)
    assert counts(con) == (SAMPLE_ISSUES, SAMPLE_LABELS, SAMPLE_COMMENTS)
    con.close()


@needs_cli
def test_cli_import_from_stdin_and_update(tmp_path):
    folder = copy_sample(tmp_path / "issues")
    db = tmp_path / "stdin.duckdb"
    script = (".read sql/schema.sql\n"
              f"SET VARIABLE issues_glob = {sql_str(folder / '*.json')};\n"
              ".read sql/import_issues.sql\n")
    cli(db, stdin=script)
    ids_query = "SELECT org, repo, number, id FROM issues ORDER BY id"
    before = cli_rows(db, ids_query)

    modify_sample(folder)
    cli(db, stdin=script)
    after = cli_rows(db, ids_query)
    assert after[:len(before)] == before and len(after) == len(before) + 1
    assert cli_rows(db, "SELECT title, state FROM issues WHERE repo = 'kots' AND number = 4127") == [
        ["Admin console status 'Missing' with minimal RBAC (fixed in next patch)", "closed"]]
    assert cli_rows(db, "SELECT string_agg(l.name, ',' ORDER BY l.name) FROM labels l "
                        "JOIN issues i ON i.id = l.issue_id WHERE i.number = 4127") == [
        ["product::kots,regression"]]


@needs_cli
def test_cli_default_glob_and_missing_optional_fields(tmp_path):
    for d in MINIMAL_DOCS:
        write_issue(tmp_path / "data" / "issues", d)
    db = tmp_path / "min.duckdb"
    cli(db, f".read {SCHEMA}", f".read {IMPORT}", cwd=tmp_path)      # no variable: default glob
    assert cli_rows(db, "SELECT (SELECT count(*) FROM issues), (SELECT count(*) FROM labels), "
                        "(SELECT count(*) FROM comments)") == [["5", "3", "1"]]


@needs_cli
def test_cli_failure_writes_nothing(tmp_path):
    folder = copy_sample(tmp_path / "issues")
    db = tmp_path / "fail.duckdb"
    cli_import(db, folder / "*.json")
    write_issue(folder, {"org": "o", "issue": {"number": 1}}, "broken_issue_1.json")
    modify_sample(folder)
    # -c stops at the first error ...
    proc = cli(db, ".read sql/schema.sql", f"SET VARIABLE issues_glob = {sql_str(folder / '*.json')}",
               ".read sql/import_issues.sql", check=False)
    assert proc.returncode != 0
    assert "broken_issue_1.json" in proc.stderr + proc.stdout
    # ... and stdin carries on after it: the transaction must still keep everything out
    proc = cli(db, stdin=(".read sql/schema.sql\n"
                          f"SET VARIABLE issues_glob = {sql_str(folder / '*.json')};\n"
                          ".read sql/import_issues.sql\n"), check=False)
    assert "broken_issue_1.json" in proc.stderr + proc.stdout
    assert cli_rows(db, "SELECT count(*) FROM issues") == [[str(SAMPLE_ISSUES)]]
    assert cli_rows(db, "SELECT title FROM issues WHERE number = 4127")[0][0].startswith("Admin console shows")
    assert cli_rows(db, "SELECT count(*) FROM labels") == [[str(SAMPLE_LABELS)]]
