#!/usr/bin/env python3
"""Append DuckDB's extension metadata footer to a built shared library.

DuckDB refuses to LOAD a file without this footer. It reads the last 512 bytes
(`ParseExtensionMetaData` in `src/main/extension/extension_load.cpp`): eight
32-byte ASCII fields, NUL-padded, then 256 bytes of signature. The official
tooling writes them behind a 22-byte WebAssembly custom-section header, 534
bytes in all, and so do we:

    00 93 04 10 | "duckdb_signature" | 80 04            (22 bytes)
    unused | unused | unused | ABI type | extension version |
    C API version | platform | magic "4"                 (8 x 32 bytes)
    256 zero bytes (no signature: load with allow_unsigned_extensions)

Usage: append_footer.py IN.so OUT.duckdb_extension [--abi C_STRUCT]
       [--extension-version v0.1.0] [--capi-version v1.5.6] [--platform linux_amd64]
       append_footer.py --show FILE     (print the parsed footer of FILE)
"""

import argparse
import shutil
import sys

HEADER = bytes([0x00, 0x93, 0x04, 0x10]) + b"duckdb_signature" + bytes([0x80, 0x04])
FIELD = 32
SIGNATURE = 256
FOOTER_SIZE = len(HEADER) + 8 * FIELD + SIGNATURE  # 534
FIELD_NAMES = ["unused1", "unused2", "unused3", "abi", "extension_version",
               "capi_version", "platform", "magic"]


def field(text: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) >= FIELD:
        raise ValueError(f"append_footer: field {text!r} is longer than {FIELD - 1} bytes")
    return raw.ljust(FIELD, b"\0")


def footer(abi: str, extension_version: str, capi_version: str, platform: str) -> bytes:
    fields = ["", "", "", abi, extension_version, capi_version, platform, "4"]
    out = HEADER + b"".join(field(f) for f in fields) + bytes(SIGNATURE)
    assert len(out) == FOOTER_SIZE
    return out


def parse(data: bytes) -> dict:
    """Parse the footer the way DuckDB does: the last 512 bytes, 8 fields then signature."""
    tail = data[-(8 * FIELD + SIGNATURE):]
    values = [tail[i * FIELD:(i + 1) * FIELD].rstrip(b"\0").decode("ascii", "replace") for i in range(8)]
    return dict(zip(FIELD_NAMES, values))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input")
    p.add_argument("output", nargs="?")
    p.add_argument("--abi", default="C_STRUCT")
    p.add_argument("--extension-version", default="v0.1.0")
    p.add_argument("--capi-version", default="v1.5.6")
    p.add_argument("--platform", default="linux_amd64")
    p.add_argument("--show", action="store_true", help="print the parsed footer of INPUT and exit")
    args = p.parse_args(argv)
    if args.show:
        with open(args.input, "rb") as f:
            data = f.read()
        for k, v in parse(data).items():
            print(f"{k}: {v}")
        return 0
    if not args.output:
        p.error("OUTPUT is required unless --show is given")
    tmp = args.output + ".tmp"
    shutil.copyfile(args.input, tmp)
    with open(tmp, "ab") as f:
        f.write(footer(args.abi, args.extension_version, args.capi_version, args.platform))
    shutil.move(tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
