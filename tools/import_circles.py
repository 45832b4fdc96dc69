"""Which Rust files of src/ and core/src/ name which (`crate::`, `super::`,
`ai_batch_core::` paths outside comments and test modules), and the groups of files
that name each other in a circle. docs/ARCHITECTURE.md promises there are none;
test/python/test_architecture.py holds it to that.

    python tools/import_circles.py [ROOT]     # prints the circles, exits 1 if any
"""

from __future__ import annotations

import os
import re
import sys

PATH = re.compile(r"\b(crate|super|ai_batch_core)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_files(root: str) -> dict[tuple[str, tuple[str, ...]], str]:
    """(crate, module path) -> file, for every .rs file of both crates."""
    files = {}
    for crate, base in (("ext", "src"), ("core", "core/src")):
        for d, _, names in os.walk(os.path.join(root, base)):
            for n in names:
                if not n.endswith(".rs"):
                    continue
                full = os.path.join(d, n)
                parts = os.path.relpath(full, os.path.join(root, base))[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib"):
                    parts = parts[:-1]
                files[(crate, tuple(parts))] = full
    return files


def edges(files):
    def resolve(crate, path):
        for n in range(len(path), 0, -1):
            if (crate, tuple(path[:n])) in files:
                return crate, tuple(path[:n])
        return None

    out = {k: set() for k in files}
    for (crate, mod), full in files.items():
        with open(full, encoding="utf-8") as f:
            text = f.read().split("#[cfg(test)]")[0]
        code = "\n".join(l for l in text.split("\n") if not l.strip().startswith("//"))
        for m in PATH.finditer(code):
            head, rest = m.group(1), [p for p in m.group(2).split("::") if p]
            if head == "ai_batch_core":
                target = resolve("core", rest)
            elif head == "crate":
                target = resolve(crate, rest)
            else:
                target = resolve(crate, list(mod[:-1]) + rest)
            if target and target != (crate, mod):
                out[(crate, mod)].add(target)
    return out


def circles(root: str) -> list[list[str]]:
    """Strongly connected groups of more than one file (Tarjan)."""
    graph = edges(module_files(root))
    name = lambda k: ("core/" if k[0] == "core" else "") + ("/".join(k[1]) or "lib")
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(name(g) for g in group))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    found = circles(root)
    for group in found:
        print("circle:", " <-> ".join(group))
    print(f"{len(found)} circle(s)")
    sys.exit(1 if found else 0)
