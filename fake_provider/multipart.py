"""A fast multipart/form-data parser for one request body held in a bytearray.

Uses ``bytearray.find`` (C speed) to locate boundaries; the file part is returned as a
(start, end) slice of the body so a 100+ MB upload is never copied byte by byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class MultipartError(ValueError):
    pass


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    start: int
    end: int
    headers: dict[str, str] = field(default_factory=dict)


_PARAM_RE = re.compile(r';\s*([A-Za-z0-9_*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split 'form-data; name="file"; filename="x.jsonl"' into ('form-data', {...})."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for m in _PARAM_RE.finditer(";" + rest):
        k, v = m.group(1).lower(), m.group(2).strip()
        if len(v) >= 2 and v[0] == v[-1] == '"':
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[k] = v
    return main.strip().lower(), params


def boundary_of(content_type: str) -> bytes:
    kind, params = header_params(content_type)
    if kind != "multipart/form-data":
        raise MultipartError("Content-Type must be multipart/form-data")
    b = params.get("boundary")
    if not b:
        raise MultipartError("multipart/form-data without a boundary")
    return b.encode("latin-1")


def parse(body: bytearray | bytes, boundary: bytes) -> list[Part]:
    delim = b"--" + boundary
    pos = body.find(delim)
    if pos < 0:
        raise MultipartError("multipart boundary not found in the body")
    parts: list[Part] = []
    next_delim = b"\r\n" + delim
    while True:
        pos += len(delim)
        if body[pos : pos + 2] == b"--":
            return parts
        # skip transport padding and the CRLF after the boundary
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise MultipartError("truncated multipart body")
        hdr_end = body.find(b"\r\n\r\n", eol)
        if hdr_end < 0:
            # a part with no headers at all: '\r\n' directly followed by '\r\n'
            raise MultipartError("truncated multipart part headers")
        headers: dict[str, str] = {}
        if hdr_end > eol:
            for line in bytes(body[eol + 2 : hdr_end]).decode("utf-8", "replace").split("\r\n"):
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        data_start = hdr_end + 4
        data_end = body.find(next_delim, data_start)
        if data_end < 0:
            raise MultipartError("multipart closing boundary not found (truncated upload?)")
        _, disp = header_params(headers.get("content-disposition", ""))
        filename = disp.get("filename")
        if "filename*" in disp:  # RFC 5987: utf-8''name
            raw = disp["filename*"]
            if "''" in raw:
                from urllib.parse import unquote

                filename = unquote(raw.split("''", 1)[1])
        parts.append(
            Part(
                name=disp.get("name", ""),
                filename=filename,
                content_type=headers.get("content-type"),
                start=data_start,
                end=data_end,
                headers=headers,
            )
        )
        pos = data_end + 2
