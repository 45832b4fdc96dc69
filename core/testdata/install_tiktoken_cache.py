#!/usr/bin/env python3
"""Make Python `tiktoken` work offline for o200k_base and cl100k_base.

`tiktoken.get_encoding("o200k_base")` downloads `o200k_base.tiktoken` unless it finds it
in `$TIKTOKEN_CACHE_DIR` under the name sha1(<download URL>). The Rust crate
`bpe-openai` (a dependency of ai_batch_core, so cargo has already fetched it to build
the extension) ships OpenAI's original files gzipped in its `data/` folder. This script
unpacks them into a cache folder and checks their SHA-256 against the hashes tiktoken
itself expects, so the Python tests count tokens with the official algorithm and the
official vocabulary, independently of our Rust code.

    python3 core/testdata/install_tiktoken_cache.py /tmp/tiktoken-cache
    TIKTOKEN_CACHE_DIR=/tmp/tiktoken-cache python3 -c \
        "import tiktoken; print(tiktoken.get_encoding('o200k_base').encode('Hello world'))"

From pytest: `install(cache_dir)` then set `os.environ["TIKTOKEN_CACHE_DIR"]` before
the first `tiktoken.get_encoding` call.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

BASE_URL = "https://openaipublic.blob.core.windows.net/encodings/"
# name -> SHA-256 that tiktoken (tiktoken_ext/openai_public.py) checks.
ENCODINGS = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
CORE_DIR = Path(__file__).resolve().parent.parent


def _bpe_openai_data_dirs() -> list[Path]:
    dirs: list[Path] = []
    try:
        out = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--offline",
             "--manifest-path", str(CORE_DIR / "Cargo.toml")],
            check=True, capture_output=True, text=True,
        ).stdout
        for pkg in json.loads(out)["packages"]:
            if pkg["name"] == "bpe-openai":
                dirs.append(Path(pkg["manifest_path"]).parent / "data")
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        pass
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    dirs += sorted(Path(p) for p in glob.glob(f"{cargo_home}/registry/src/*/bpe-openai-*/data"))
    return [d for d in dirs if d.is_dir()]


def install(cache_dir: str | os.PathLike[str]) -> Path:
    """Writes o200k_base and cl100k_base into `cache_dir`; returns it. Raises if not found."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    sources = _bpe_openai_data_dirs()
    for name, sha256 in ENCODINGS.items():
        target = cache / hashlib.sha1((BASE_URL + name + ".tiktoken").encode()).hexdigest()
        if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
            continue
        for src in sources:
            gz = src / f"{name}.tiktoken.gz"
            if not gz.exists():
                continue
            data = gzip.decompress(gz.read_bytes())
            if hashlib.sha256(data).hexdigest() == sha256:
                tmp = target.with_suffix(".tmp")
                tmp.write_bytes(data)
                tmp.replace(target)
                break
        else:
            raise FileNotFoundError(
                f"{name}.tiktoken.gz with the expected hash was not found in the bpe-openai "
                f"crate sources (looked in {[str(s) for s in sources]}); run `cargo fetch` first"
            )
    return cache


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} CACHE_DIR")
    print(install(sys.argv[1]))
