#!/usr/bin/env python3
"""Assembles the `ai-batch` wheel (py3-none-<platform>) with zipfile: no build backend.

    python tools/build_wheel.py --extension build/release/ai_batch.duckdb_extension --out dist

What goes in:
- python/ai_batch/*.py (the module and the gh-analysis commands);
- ai_batch/sql/schema.sql and ai_batch/sql/import_issues.sql, copied from the repo's sql/
  (the one copy of that SQL);
- the extension, symbols stripped (`strip`, when installed; its 534-byte DuckDB footer is
  put back after stripping), at .duckdb_extensions/v<duckdb version>/<duckdb platform>/,
  once per --duckdb-version (each copy adds the file's compressed size to the wheel);
- the .dist-info (METADATA from python/pyproject.toml's [project], WHEEL, entry_points.txt,
  RECORD with sha256 hashes).
Prints the wheel's path and size.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOOTER_BYTES = 534
SQL_FILES = ("schema.sql", "import_issues.sql")


def cargo_version() -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    if not m:
        sys.exit("build_wheel: no version in Cargo.toml")
    return m.group(1)


def wheel_platform_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", sysconfig.get_platform())


def stripped(extension: Path, workdir: Path) -> bytes:
    """The extension with its symbols stripped and its DuckDB footer kept."""
    data = extension.read_bytes()
    strip = shutil.which("strip")
    if not strip:
        print("build_wheel: `strip` not found; the extension goes in unstripped", file=sys.stderr)
        return data
    body, footer = data[:-FOOTER_BYTES], data[-FOOTER_BYTES:]
    tmp = workdir / "lib.so"
    tmp.write_bytes(body)
    subprocess.run([strip, "--strip-unneeded", str(tmp)], check=True)
    return tmp.read_bytes() + footer


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def metadata(project: dict) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project['description']}",
        f"License: {project['license']}",
        f"Requires-Python: {project['requires-python']}",
    ]
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    readme = (ROOT / "python" / project["readme"]).resolve()
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + readme.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extension", required=True, help="the built .duckdb_extension")
    ap.add_argument("--out", default="dist", help="output directory (default dist)")
    ap.add_argument("--duckdb-version", action="append", default=None,
                    help="DuckDB version folder(s) to install the file under (default 2.0.1)")
    ap.add_argument("--duckdb-platform", default="linux_amd64")
    ap.add_argument("--no-strip", action="store_true")
    args = ap.parse_args(argv)

    ext = Path(args.extension)
    if not ext.is_file():
        print(f"build_wheel: --extension {ext}: no such file (run make release)", file=sys.stderr)
        return 2
    project = tomllib.loads((ROOT / "python/pyproject.toml").read_text())["project"]
    if project["version"] != cargo_version():
        print(f"build_wheel: python/pyproject.toml version {project['version']} != Cargo.toml "
              f"{cargo_version()}; make them equal", file=sys.stderr)
        return 2
    dist = project["name"].replace("-", "_")
    version = project["version"]
    tag = f"py3-none-{wheel_platform_tag()}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{dist}-{version}-{tag}.whl"
    info = f"{dist}-{version}.dist-info"

    files: list[tuple[str, bytes, bool]] = []   # (archive name, bytes, executable)
    for py in sorted((ROOT / "python/ai_batch").glob("*.py")):
        files.append((f"ai_batch/{py.name}", py.read_bytes(), False))
    for name in SQL_FILES:
        files.append((f"ai_batch/sql/{name}", (ROOT / "sql" / name).read_bytes(), False))
    with tempfile.TemporaryDirectory() as tmp:
        binary = ext.read_bytes() if args.no_strip else stripped(ext, Path(tmp))
    for v in args.duckdb_version or ["2.0.1"]:
        files.append((f".duckdb_extensions/v{v.lstrip('v')}/{args.duckdb_platform}/ai_batch.duckdb_extension",
                      binary, False))
    scripts = project.get("scripts", {})
    files.append((f"{info}/METADATA", metadata(project).encode(), False))
    files.append((f"{info}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: ai_batch tools/build_wheel.py\n"
        f"Root-Is-Purelib: false\nTag: {tag}\n").encode(), False))
    files.append((f"{info}/entry_points.txt", ("[console_scripts]\n" + "".join(
        f"{k} = {v}\n" for k, v in scripts.items())).encode(), False))
    files.append((f"{info}/top_level.txt", b"ai_batch\n", False))
    record = "".join(record_line(n, d) + "\n" for n, d, _ in files) + f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode(), False))

    tmp_wheel = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp_wheel, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for name, data, executable in files:
            zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = (0o755 if executable else 0o644) << 16
            z.writestr(zi, data)
    os.replace(tmp_wheel, wheel)
    size = wheel.stat().st_size
    print(f"{wheel} ({size / 1e6:.1f} MB; extension {len(binary) / 1e6:.1f} MB stripped, "
          f"{ext.stat().st_size / 1e6:.1f} MB built)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
