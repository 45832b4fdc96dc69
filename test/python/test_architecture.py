"""docs/ARCHITECTURE.md's promise that imports point one way: no two Rust files name
each other, directly or through others (tools/import_circles.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import import_circles  # noqa: E402


def test_no_import_circles_between_files():
    assert import_circles.circles(str(ROOT)) == []


def test_a_circle_is_found(tmp_path):
    # The check itself works: two files that name each other are one circle.
    (tmp_path / "src").mkdir()
    (tmp_path / "core" / "src").mkdir(parents=True)
    (tmp_path / "src" / "lib.rs").write_text("mod a;\nmod b;\n")
    (tmp_path / "src" / "a.rs").write_text("use crate::b::f;\n")
    (tmp_path / "src" / "b.rs").write_text("pub fn f() { crate::a::g(); }\n")
    (tmp_path / "core" / "src" / "lib.rs").write_text("")
    assert import_circles.circles(str(tmp_path)) == [["a", "b"]]
