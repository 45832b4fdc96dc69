"""The ai_batch DuckDB extension, as a Python package.

The wheel puts the extension where DuckDB's "extensions as Python packages" convention
says: ``site-packages/.duckdb_extensions/v<duckdb version>/<duckdb platform>/ai_batch.duckdb_extension``.

    import duckdb, ai_batch
    con = duckdb.connect("data/issues.duckdb", config={"allow_unsigned_extensions": "true"})
    ai_batch.load(con)                      # or: con.execute(f"LOAD '{ai_batch.get_extension_load_path()}'")

``get_extensions_dir()`` is the ``.duckdb_extensions`` directory (for DuckDB's
``extension_directories`` setting, after which ``LOAD ai_batch`` finds the file by name
when the DuckDB version has a folder there). The ``gh-analysis`` commands are in
:mod:`ai_batch.cli`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "ExtensionLoadError",
    "connect",
    "get_extension_load_path",
    "get_extensions_dir",
    "load",
]

__version__ = "0.1.0"

EXTENSION_NAME = "ai_batch"
_FILE = f"{EXTENSION_NAME}.duckdb_extension"


class ExtensionLoadError(RuntimeError):
    """The bundled extension cannot be found or loaded into a connection."""


def get_extensions_dir() -> str:
    """The ``.duckdb_extensions`` directory beside this package in site-packages."""
    return str(Path(__file__).resolve().parent.parent / ".duckdb_extensions")


def _bundled() -> list[Path]:
    root = Path(get_extensions_dir())
    return sorted(root.glob(f"v*/*/{_FILE}")) if root.is_dir() else []


def get_extension_load_path(duckdb_version: str | None = None) -> str:
    """The path of the bundled ``ai_batch.duckdb_extension``, for ``LOAD '<path>'``.

    The wheel carries the file in the folder of the DuckDB version it was built for; the
    same file loads into DuckDB 1.5.6 and every 2.0.x (its footer asks for the C API of
    1.5.6), so when ``duckdb_version`` (default: the installed ``duckdb`` module's) has no
    folder of its own, the bundled file is returned anyway.
    ``AI_BATCH_EXTENSION=/path/file.duckdb_extension`` overrides it (development).
    """
    override = os.environ.get("AI_BATCH_EXTENSION")
    if override:
        return str(Path(override).resolve())
    found = _bundled()
    if not found:
        raise ExtensionLoadError(
            f"ai_batch: the extension file is not installed (no {_FILE} under "
            f"{get_extensions_dir()}); reinstall the ai-batch wheel, or set AI_BATCH_EXTENSION "
            "to a built file"
        )
    if duckdb_version is None:
        try:
            import duckdb

            duckdb_version = duckdb.__version__
        except ImportError:  # pragma: no cover - duckdb is a dependency
            duckdb_version = ""
    wanted = f"v{duckdb_version.lstrip('v')}"
    for p in found:
        if p.parent.parent.name == wanted:
            return str(p)
    return str(found[-1])


def load(con) -> None:
    """Loads the bundled extension into the duckdb connection ``con``.

    The connection must allow unsigned extensions (the extension is not signed by
    DuckDB): open it with ``duckdb.connect(path, config={"allow_unsigned_extensions":
    "true"})``, or use :func:`connect`. That setting cannot be changed once the database
    is open.
    """
    allowed = con.execute("SELECT current_setting('allow_unsigned_extensions')").fetchone()[0]
    if str(allowed).lower() not in ("true", "1"):
        raise ExtensionLoadError(
            "ai_batch.load: this connection does not allow unsigned extensions; open the database "
            "with duckdb.connect(path, config={'allow_unsigned_extensions': 'true'}) or "
            "ai_batch.connect(path) (in the duckdb shell: duckdb -unsigned)"
        )
    version = con.execute("SELECT library_version FROM pragma_version()").fetchone()[0]
    path = get_extension_load_path(str(version))
    con.execute(f"LOAD '{path.replace(chr(39), chr(39) * 2)}'")


def connect(database: str = ":memory:", read_only: bool = False, config: dict | None = None):
    """``duckdb.connect`` with unsigned extensions allowed and ai_batch loaded."""
    import duckdb

    cfg = {"allow_unsigned_extensions": "true", **(config or {})}
    con = duckdb.connect(database, read_only=read_only, config=cfg)
    try:
        load(con)
    except BaseException:
        con.close()
        raise
    return con
