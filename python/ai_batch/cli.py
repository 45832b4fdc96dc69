"""The `gh-analysis` commands over the ai_batch extension (Typer + rich).

Every command is a thin layer over one or two SQL statements of the extension
(`batch_submit`, `batch_history`, `batch_details`, `batch_refresh`, `batch_cancel`,
`batch_retry`) or of the repo's sql/ scripts: which issues are taken, what is skipped,
what it costs and how a job moves on are decided in SQL, never here.

The `batch` group is a Typer app of its own, so the gh-analysis tool can mount it with
one line: ``app.add_typer(ai_batch.cli.batch_app, name="batch")``.
"""

from __future__ import annotations

import csv
import datetime
import functools
import json
import os
import re
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import ai_batch

DEFAULT_DB = "data/issues.duckdb"
# Statuses in which a job still moves on its own (the extension's ACTIVE_STATUSES).
ACTIVE = ("created", "uploaded", "validating", "in_progress", "finalizing", "cancelling")
HELP = {"help_option_names": ["-h", "--help"]}

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)

app = typer.Typer(
    name="gh-analysis",
    help="GitHub issue analysis over DuckDB: import issues, query them, and send them to an "
    "LLM provider's Batch API with the ai_batch extension.",
    add_completion=False,
    no_args_is_help=True,
    context_settings=HELP,
    pretty_exceptions_enable=False,
)
query_app = typer.Typer(help="Run SQL on the database, with the ai_batch extension loaded.",
                        no_args_is_help=True, context_settings=HELP)
batch_app = typer.Typer(help="Batch jobs: submit issues to the provider's Batch API, follow and "
                        "collect them (half the price of the synchronous API).",
                        no_args_is_help=True, context_settings=HELP)
app.add_typer(query_app, name="query")
app.add_typer(batch_app, name="batch")


# ----------------------------------------------------------------------------- plumbing

class UserError(Exception):
    """A mistake the user can fix; shown as one red line, exit code 1."""


_DUCKDB_PREFIX = re.compile(r"^(?:[A-Z][A-Za-z]* )+Error: ")


def error_text(e: BaseException) -> str:
    """The extension's (or DuckDB's) own message on one line, without DuckDB's class prefix."""
    text = str(e).strip() or type(e).__name__
    first = text.splitlines()[0].strip()
    return _DUCKDB_PREFIX.sub("", first)


def command(name: str) -> Callable:
    """Wraps a command: user errors become one red line `<name>: <message>` and exit 1."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            import duckdb

            try:
                return fn(*args, **kwargs)
            except (UserError, duckdb.Error, ai_batch.ExtensionLoadError, OSError) as e:
                err_console.print(f"[red]{name}: {error_text(e)}[/red]", soft_wrap=True)
                raise typer.Exit(1)
        return run
    return wrap


DbOption = typer.Option(
    None, "--db", envvar="GH_ANALYSIS_DB", show_envvar=True,
    help=f"DuckDB database file [default: $GH_ANALYSIS_DB, else {DEFAULT_DB}]",
)


def db_path(db: Optional[str]) -> Path:
    return Path(db or os.environ.get("GH_ANALYSIS_DB") or DEFAULT_DB)


def open_db(db: Optional[str], *, create: bool = False, extension: bool = True):
    """Opens the database (creating it only for commands that write) with ai_batch loaded."""
    import duckdb

    path = db_path(db)
    if not path.exists():
        if not create:
            raise UserError(f"database {path} does not exist (import issues first: "
                            f"gh-analysis import --db {path}; or pass --db / set GH_ANALYSIS_DB)")
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), config={"allow_unsigned_extensions": "true"})
    if extension:
        try:
            ai_batch.load(con)
        except BaseException:
            con.close()
            raise
    return con


def fetch(con, sql: str, params: list | None = None) -> tuple[list[str], list[tuple]]:
    cur = con.execute(sql, params or [])
    if cur.description is None:
        return [], []
    return [d[0] for d in cur.description], cur.fetchall()


def records(con, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    cols, rows = fetch(con, sql, params)
    return [dict(zip(cols, r)) for r in rows]


def run_sql(db: Optional[str], sql: str, params: list) -> list[dict[str, Any]]:
    """Opens the database, runs one statement of the extension, closes; returns the rows."""
    con = open_db(db)
    try:
        return records(con, sql, params)
    finally:
        con.close()


def cell(v: Any) -> str:
    if v is None:
        return "[dim]NULL[/dim]"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, datetime.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v).replace("[", r"\[")


def table(cols: list[str], rows: list[tuple], title: str | None = None) -> Table:
    """All columns of a query result (`query sql`)."""
    t = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD)
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(cell(v) for v in r))
    return t


def fits(cols: list[str], rows: list[tuple]) -> bool:
    """Whether a table of these rows fits the terminal without folding a value."""
    need = 1
    for k, c in enumerate(cols):
        need += 3 + max([len(c)] + [len(str(r[k])) for r in rows[:200]])
    return need <= console.width


def print_rows(cols: list[str], rows: list[tuple], title: str | None = None) -> None:
    """A table when it fits the terminal; else one block per row, a line per column (like
    the duckdb shell's `.mode line`), so no value is cut or folded."""
    if fits(cols, rows):
        console.print(table(cols, rows, title))
        return
    if title:
        console.print(f"[bold]{title}[/bold]")
    width = max(len(c) for c in cols)
    for i, r in enumerate(rows):
        console.print(f"[bold]-- row {i + 1}[/bold]")
        for c, v in zip(cols, r):
            console.print(f"{c.rjust(width)} = {cell(v)}")


# A view of result rows: (header, value of a row). Long messages are printed under the
# table, not squeezed into a column.
View = list[tuple[str, Callable[[dict[str, Any]], Any]]]


def show(recs: list[dict[str, Any]], view: View, title: str | None = None,
         notes: Callable[[dict[str, Any]], Any] | None = None) -> None:
    print_rows([h for h, _ in view], [tuple("-" if get(r) is None else get(r) for _, get in view)
                                      for r in recs], title)
    for r in recs if notes else []:
        note = notes(r)
        if note:
            console.print(f"{r.get('job_id') or r.get('issue')}: {note}")


def col(name: str, header: str | None = None):
    return (header or name, lambda r: r.get(name))


def items_done(r: dict[str, Any]) -> str:
    s = f"{r['completed_count']}/{r['issues_count']}"
    return s + (f" ({r['failed_count']} failed)" if r.get("failed_count") else "")


JOB_ID = col("job_id", "job")
STATUS = col("status")


def money(v: Any) -> str:
    return "n/a" if v is None else f"${float(v):.4f}"


# ----------------------------------------------------------------------------- import / status / query

@app.command("import", context_settings=HELP)
@command("import")
def import_issues(
    from_dir: Path = typer.Option(Path("data/issues"), "--from", help="folder of gh-analysis issue files "
                                  "({org}_{repo}_issue_{n}.json)"),
    db: Optional[str] = DbOption,
) -> None:
    """Import gh-analysis issue JSON files into the issues / labels / comments tables.

    Re-runnable: issues are upserted by (org, repo, number) and keep their id. Creates the
    database when it does not exist. Runs the package's sql/schema.sql and
    sql/import_issues.sql.

    Examples:

        gh-analysis import

        gh-analysis import --from ~/gh-data/issues --db work/issues.duckdb
    """
    if not from_dir.is_dir():
        raise UserError(f"folder {from_dir} does not exist (pass --from DIR with the *.json issue files)")
    if not any(from_dir.glob("*.json")):
        raise UserError(f"no *.json issue files in {from_dir}")
    con = open_db(db, create=True, extension=False)
    try:
        con.execute(sql_script("schema.sql"))
        con.execute("SET VARIABLE issues_glob = ?", [str(from_dir.resolve() / "*.json")])
        try:
            cols, rows = fetch(con, sql_script("import_issues.sql"))
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    r = dict(zip(cols, rows[0])) if rows else {}
    console.print(f"Imported {r.get('issues', 0)} issues ({r.get('issues_new', 0)} new, "
                  f"{r.get('issues_updated', 0)} updated), {r.get('labels', 0)} labels, "
                  f"{r.get('comments', 0)} comments into {db_path(db)}")


def sql_script(name: str) -> str:
    """One of the repo's sql/ scripts: shipped in the wheel, or the checkout's own copy."""
    packaged = resources.files("ai_batch") / "sql" / name
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parent.parent.parent / "sql" / name
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise UserError(f"sql/{name} is missing from the ai_batch package (reinstall it)")


@app.command(context_settings=HELP)
@command("status")
def status(db: Optional[str] = DbOption) -> None:
    """Show the database, the extension, and counts of issues, analyses and jobs.

    Examples:

        gh-analysis status

        GH_ANALYSIS_DB=work/issues.duckdb gh-analysis status
    """
    con = open_db(db)
    try:
        version = fetch(con, "SELECT extension_version FROM duckdb_extensions() "
                             "WHERE extension_name = 'ai_batch' AND loaded")[1]
        tables = {r[0] for r in fetch(con, "SELECT table_name FROM duckdb_tables() "
                                           "WHERE schema_name = current_schema()")[1]}

        def count(t: str) -> int | str:
            return fetch(con, f"SELECT count(*) FROM {t}")[1][0][0] if t in tables else "no table yet"

        jobs = fetch(con, "SELECT status, count(*) FROM batch_jobs GROUP BY status ORDER BY status")[1] \
            if "batch_jobs" in tables else []
        console.print(f"Database: {db_path(db)} (enabled)")
        console.print(f"Extension: ai_batch {version[0][0] if version else '?'} (loaded from "
                      f"{ai_batch.get_extension_load_path()})")
        console.print(f"Issues: {count('issues')}")
        console.print(f"Analyses: {count('ai_analyses')}")
        if jobs:
            console.print("Jobs: " + ", ".join(f"{n} {s}" for s, n in jobs))
        else:
            console.print("Jobs: none")
    finally:
        con.close()


@query_app.command("sql", context_settings=HELP)
@command("query sql")
def query_sql(
    sql: str = typer.Argument(..., help="SQL to run (several statements: the last one's rows are shown)"),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json"),
    db: Optional[str] = DbOption,
) -> None:
    """Run any SQL with the ai_batch extension loaded; print the rows.

    This is how to call the extension's functions directly.

    Examples:

        gh-analysis query sql "SELECT COUNT(*) FROM issues"

        gh-analysis query sql "SELECT * FROM batch_history()" --format json

        gh-analysis query sql "SELECT * FROM product_labels" -f csv > labels.csv

        gh-analysis query sql "SELECT * FROM batch_submit('product-labeling', '*', missing_analysis := true, dry_run := true)"
    """
    if fmt not in ("table", "csv", "json"):
        raise UserError(f"unknown --format {fmt!r} (table, csv or json)")
    con = open_db(db)
    try:
        cols, rows = fetch(con, sql)
    finally:
        con.close()
    if not cols:
        console.print("OK")
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        w.writerows(["" if v is None else v for v in r] for r in rows)
    elif fmt == "json":
        sys.stdout.write(json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=2) + "\n")
    else:
        print_rows(cols, rows)
        console.print(f"[dim]{len(rows)} row{'s' if len(rows) != 1 else ''}[/dim]")


# ----------------------------------------------------------------------------- batch

SUBMIT_SUMMARY = ("selected", "submitted", "skipped", "skipped_analysed", "skipped_active",
                  "unknown_ids", "over_max")


def print_submit(recs: list[dict[str, Any]]) -> None:
    """The result of batch_submit / batch_retry: estimate, skips, job ids."""
    if not recs:
        console.print("Nothing returned.")
        return
    first = recs[0]
    console.print(
        f"Selected {first['selected']}; skipped {first['skipped']} "
        f"({first['skipped_analysed']} already analysed, {first['skipped_active']} in a running job, "
        f"{first['unknown_ids']} not in issues, {first['over_max']} over --max-items)")
    jobs = [r for r in recs if r["job_id"] is not None]
    if not jobs:
        console.print(first["message"])
        return
    total_cost = sum(float(r["cost_estimate"] or 0) for r in recs)
    unknown_cost = any(r["cost_estimate"] is None for r in recs)
    tokens_in = sum(r["estimated_input_tokens"] or 0 for r in recs)
    tokens_out = sum(r["estimated_output_tokens"] or 0 for r in recs)
    console.print(f"Estimated cost: {'n/a' if unknown_cost else money(total_cost)} "
                  f"({tokens_in} input + {tokens_out} output tokens, model {first['model']})")
    show(jobs, [JOB_ID, STATUS, col("submitted"), ("estimate", lambda r: money(r["cost_estimate"]))],
         notes=lambda r: r["message"] + (f" (provider batch {r['provider_batch_id']})"
                                         if r["provider_batch_id"] else ""))


@batch_app.command(context_settings=HELP)
@command("batch submit")
def submit(
    processor: str = typer.Argument(..., help="the analysis, e.g. product-labeling"),
    sql: Optional[str] = typer.Option(None, "--sql", help="SELECT with an id column choosing the issues",
                                      rich_help_panel="Target Selection"),
    missing_analysis: bool = typer.Option(False, "--missing-analysis",
                                          help="only issues without an analysis from this processor",
                                          rich_help_panel="Target Selection"),
    org: Optional[str] = typer.Option(None, "--org", "-o", help="GitHub organization",
                                      rich_help_panel="Target Selection"),
    repo: Optional[str] = typer.Option(None, "--repo", "-r", help="repository",
                                       rich_help_panel="Target Selection"),
    state: Optional[str] = typer.Option(None, "--state", help="issue state: open or closed",
                                        rich_help_panel="Target Selection"),
    issue_number: Optional[int] = typer.Option(None, "--issue-number", "-i", help="one issue number",
                                               rich_help_panel="Target Selection"),
    max_items: Optional[int] = typer.Option(None, "--max-items", help="take at most this many issues",
                                            rich_help_panel="Target Selection"),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="model, e.g. gpt-4o-mini, openai:gpt-4o-mini or "
                                        "anthropic:claude-haiku-4-5 [default: the extension's, "
                                        "gpt-4o-mini]",
                                        rich_help_panel="AI Configuration"),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="0.0-2.0 [default: the model's]",
                                                rich_help_panel="AI Configuration"),
    thinking_effort: Optional[str] = typer.Option(None, "--thinking-effort",
                                                  help="reasoning effort for reasoning models "
                                                  "(none, minimal, low, medium, high, xhigh, max)",
                                                  rich_help_panel="AI Configuration"),
    dry_run: bool = typer.Option(False, "--dry-run", "-d", help="estimate only: nothing written or sent",
                                 rich_help_panel="Processing Options"),
    reprocess: bool = typer.Option(False, "--reprocess", help="also take issues already analysed",
                                   rich_help_panel="Processing Options"),
    max_cost: Optional[float] = typer.Option(None, "--max-cost",
                                             help="budget in USD: above it nothing is written or sent",
                                             rich_help_panel="Processing Options"),
    db: Optional[str] = DbOption,
) -> None:
    """Submit issues as a batch job; print the cost estimate, the skip counts and the job id(s).

    Issues already analysed by this processor, or in a job still running, are skipped
    (unless --reprocess). Filters (--org, --repo, --state, --missing-analysis) narrow
    --sql; without --sql they choose among all issues. Needs OPENAI_API_KEY, or
    ANTHROPIC_API_KEY for Claude models (not for --dry-run).

    Examples:

        gh-analysis batch submit product-labeling --missing-analysis

        gh-analysis batch submit product-labeling --org replicatedhq --repo kots --dry-run

        gh-analysis batch submit product-labeling --missing-analysis --max-cost 5

        gh-analysis batch submit product-labeling --sql "SELECT id FROM issues WHERE state='open' LIMIT 5"

        gh-analysis batch submit product-labeling -o replicatedhq -r kots -i 4127 -m openai:o4-mini --thinking-effort high

        gh-analysis batch submit product-labeling --missing-analysis -m anthropic:claude-haiku-4-5
    """
    if sql is not None and issue_number is not None:
        raise UserError("give either --sql or --issue-number, not both")
    if sql is not None:
        selection = sql
    elif issue_number is not None:
        # The number is an int (Typer checked it); org / repo stay bound filters.
        selection = f"SELECT id FROM issues WHERE number = {int(issue_number)}"
    elif missing_analysis or org or repo or state:
        selection = "*"   # every issue, narrowed by the filters
    else:
        raise UserError("say which issues: --sql, --missing-analysis, --org/--repo/--state or "
                        "--issue-number (--sql \"SELECT id FROM issues\" takes every issue)")
    recs = run_sql(
        db,
        "SELECT * FROM batch_submit(?, ?, model := ?, org := ?, repo := ?, state := ?, "
        "missing_analysis := ?, max_issues := ?, temperature := ?, reasoning_effort := ?, "
        "dry_run := ?, reprocess := ?, max_cost := ?)",
        [processor, selection, model, org, repo, state, missing_analysis, max_items,
         temperature, thinking_effort, dry_run, reprocess, max_cost],
    )
    print_submit(recs)


HISTORY: View = [JOB_ID, STATUS, col("model"), ("done", items_done),
                 ("estimate", lambda r: money(r["cost_estimate"])),
                 ("actual", lambda r: money(r["actual_cost"])),
                 ("created", lambda r: r["created_at"].strftime("%m-%d %H:%M") if r["created_at"] else None)]


def _history(
    status_: Optional[str] = typer.Option(None, "--status", "-s", help="only jobs in this status"),
    processor: Optional[str] = typer.Option(None, "--processor", help="only jobs of this processor"),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="at most this many jobs"),
    db: Optional[str] = DbOption,
) -> None:
    """List batch jobs, newest first, with counts, estimate and actual cost.

    Examples:

        gh-analysis batch history

        gh-analysis batch history --status completed --limit 10
    """
    recs = run_sql(db, "SELECT * FROM batch_history(status := ?, processor := ?, max_rows := ?)",
                   [status_, processor, limit])
    if not recs:
        console.print("No batch jobs yet (gh-analysis batch submit ...).")
        return
    show(recs, HISTORY, title="Batch jobs, newest first", notes=lambda r: r.get("error_message"))


history = batch_app.command("history", context_settings=HELP)(command("batch history")(_history))
# The gh-analysis tool's name for it.
list_jobs = batch_app.command(
    "list", context_settings=HELP,
    help="Same as `batch history` (the gh-analysis tool's name for it).\n\nExamples:\n\n"
         "    gh-analysis batch list\n\n    gh-analysis batch list -s in_progress",
)(command("batch list")(_history))


def print_job(recs: list[dict[str, Any]]) -> None:
    j = recs[0]
    console.print(f"Job {j['job_id']}: {j['status']} ({j['processor']}, {j['provider']}:{j['model']})")
    console.print(f"Items: {j['issues_count']} ({j['completed_count']} completed, {j['failed_count']} "
                  f"failed, {j['pending_count']} pending); skipped at submit: {j['skipped_count']}")
    console.print(f"Cost: estimate {money(j['cost_estimate'])}, actual {money(j['actual_cost'])}")
    console.print(f"Created {j['created_at']}, submitted {j['submitted_at']}, completed {j['completed_at']}; "
                  f"provider batch {j['provider_batch_id']}")
    if j.get("error_message"):
        console.print(f"Error: {j['error_message']}")


def job_command(name: str, function: str, arg_help: str, show_result: Callable, doc: str) -> Callable:
    """`gh-analysis batch <name> JOB_ID`: `SELECT * FROM <function>(JOB_ID)`, shown by show_result."""
    def run(job_id: str = typer.Argument(..., help=arg_help), db: Optional[str] = DbOption) -> None:
        show_result(run_sql(db, f"SELECT * FROM {function}(?)", [job_id]))

    run.__doc__ = f"""{doc}

    Examples:

        gh-analysis batch {name} job_20261130_121500_a1b2c3
    """
    run.__name__ = name
    return batch_app.command(name, context_settings=HELP)(command(f"batch {name}")(run))


def print_details(recs: list[dict[str, Any]]) -> None:
    print_job(recs)
    items = [r for r in recs if r["item_id"] is not None]
    if items:
        show(items, [col("issue"), col("item_status", "status"),
                     col("item_error_code", "error"), col("attempts", "tries"),
                     col("item_estimated_input_tokens", "est. in"),
                     ("in / out", lambda r: None if r["item_input_tokens"] is None
                      else f"{r['item_input_tokens']} / {r['item_output_tokens']}"),
                     ("cost", lambda r: None if r["item_cost"] is None else f"${float(r['item_cost']):.6f}")],
             title="Items", notes=lambda r: r.get("item_error_message"))


details = job_command("details", "batch_details", "a job id from `gh-analysis batch history`", print_details,
                      "Show one job and its items (issue, status, error, tokens, cost).")


REFRESH: View = [JOB_ID, ("status", lambda r: r["status"] if r["old_status"] == r["status"]
                           else f"{r['old_status']} → {r['status']}"),
                 ("done", items_done), col("applied"),
                 ("actual", lambda r: money(r["actual_cost"]))]


def show_refresh(recs: list[dict[str, Any]]) -> None:
    show(recs, REFRESH, notes=lambda r: r["message"])


def refresh_once(con, job_id: Optional[str]) -> list[dict[str, Any]]:
    return records(con, "SELECT * FROM batch_refresh(job_id := ?)", [job_id])


def done_and_total(r: dict[str, Any]) -> tuple[int, int]:
    """Items done / total: the provider's request counts (completed + failed, of total)
    while the job runs, our item counts once it is collected."""
    ptotal = r.get("provider_total")
    if ptotal and r["pending_count"]:
        done = (r.get("provider_completed") or 0) + (r.get("provider_failed") or 0)
        return done, max(ptotal, 1)
    total = r["issues_count"] or 0
    return total - (r["pending_count"] or 0), max(total, 1)


def finished(r: dict[str, Any]) -> bool:
    return r["status"] not in ACTIVE and not r["pending_count"]


@batch_app.command(context_settings=HELP)
@command("batch refresh")
def refresh(
    job_id: Optional[str] = typer.Argument(None, help="only this job [default: every active job]"),
    wait: bool = typer.Option(False, "--wait", "-w", help="poll until the jobs are collected (Ctrl-C stops)"),
    interval: float = typer.Option(30.0, "--interval", help="seconds between polls with --wait"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="give up waiting after this many seconds"),
    db: Optional[str] = DbOption,
) -> None:
    """Poll active jobs at the provider and collect the finished ones.

    Running it again changes nothing. With --wait it polls until every job is collected,
    showing items done / total per job; Ctrl-C stops waiting (the jobs keep running at the
    provider; refresh again later).

    Examples:

        gh-analysis batch refresh

        gh-analysis batch refresh --wait --interval 60

        gh-analysis batch refresh job_20261130_121500_a1b2c3
    """
    if interval <= 0:
        raise UserError("--interval must be more than 0 seconds")
    con = open_db(db)
    try:
        if not wait:
            recs = refresh_once(con, job_id)
            if recs:
                show_refresh(recs)
            else:
                console.print("No active jobs.")
            return
        _wait(con, job_id, interval, timeout)
    finally:
        con.close()


def _wait(con, job_id: Optional[str], interval: float, timeout: Optional[float]) -> None:
    import duckdb

    latest: dict[str, dict[str, Any]] = {}
    start = time.monotonic()
    progress = Progress(TextColumn("{task.fields[job]}"), BarColumn(),
                        TextColumn("{task.completed:.0f}/{task.total:.0f} items"),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                        console=console, transient=False)
    tasks: dict[str, Any] = {}
    try:
        with progress:
            while True:
                for r in refresh_once(con, job_id):
                    latest[r["job_id"]] = r
                for jid, r in latest.items():
                    done, total = done_and_total(r)
                    if jid not in tasks:
                        tasks[jid] = progress.add_task("", total=total, job=jid, status="")
                    progress.update(tasks[jid], completed=done, total=total, status=r["status"])
                if all(finished(r) for r in latest.values()):
                    break
                if timeout is not None and time.monotonic() - start > timeout:
                    raise UserError(f"timed out after {timeout:g} s with jobs still running "
                                    "(run gh-analysis batch refresh --wait again)")
                time.sleep(interval)
    except (KeyboardInterrupt, duckdb.InterruptException, RuntimeError) as e:
        # Ctrl-C while a query runs comes back from duckdb as "Query interrupted".
        if isinstance(e, RuntimeError) and "interrupted" not in str(e).lower():
            raise
        err_console.print("[yellow]batch refresh: stopped waiting; the jobs keep running at the "
                          "provider (run gh-analysis batch refresh again later)[/yellow]")
        raise typer.Exit(130)
    if latest:
        show_refresh(list(latest.values()))
    else:
        console.print("No active jobs.")


@batch_app.command("status", context_settings=HELP)
@command("batch status")
def job_status(
    job_id: str = typer.Argument(..., help="the job to refresh and show"),
    db: Optional[str] = DbOption,
) -> None:
    """Refresh one job at the provider, then show it.

    Examples:

        gh-analysis batch status job_20261130_121500_a1b2c3
    """
    con = open_db(db)
    try:
        refreshed = refresh_once(con, job_id)
        recs = records(con, "SELECT * FROM batch_details(?)", [job_id])
    finally:
        con.close()
    print_job(recs)
    if refreshed and refreshed[0].get("message"):
        console.print(f"Refresh: {refreshed[0]['message']}")


cancel = job_command("cancel", "batch_cancel", "the job to cancel", lambda recs: show_refresh(recs),
                     "Cancel a job at the provider; results finished before the cancel are still collected.")
retry = job_command("retry", "batch_retry", "a collected job with expired, cancelled or failed items",
                    print_submit, "Submit a new job with a finished job's items that a retry can fix.")


def main() -> None:
    """The `gh-analysis` console script."""
    app()


if __name__ == "__main__":
    main()
