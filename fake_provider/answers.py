"""Deterministic "model" answers for the fake provider.

Everything that decides *what the fake model says* lives here, so it is easy to change
when the processor's prompt or JSON schema changes:

* ``product_labeling_answer(issue_text)`` - the answer for the product-labeling
  processor (a dict valid for its strict JSON schema).
* ``schema_answer(schema, issue_text)`` - a valid answer for any other strict schema
  (user-defined processors), deterministic per issue.
* ``answer_for_request(body)`` - picks the kind of answer for one chat-completions
  request body and returns ``(content, prompt_tokens)``.

Token counts are approximations: ``len(text) // 4`` (at least 1), deterministic.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

# Ordered: the first rule with a keyword in the (lower-cased) issue text wins. More
# specific products come first, because their issues often mention kots too. Keywords
# listed in WORD_KEYWORDS must match as whole words ("sdk" but not "sdkman").
PRODUCT_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("compatibility-matrix", ("compatibility matrix", "compatibility-matrix", "cmx")),
    ("embedded-cluster", ("embedded cluster", "embedded-cluster")),
    ("kurl", ("kurl",)),
    ("troubleshoot", ("support bundle", "support-bundle", "preflight", "troubleshoot")),
    ("downloadportal", ("download portal", "download-portal")),
    ("vendor", ("vendor portal", "vendor-portal")),
    ("sdk", ("sdk",)),
    ("docs", ("docs", "documentation")),
    ("kots", ("kots", "admin console", "admin-console")),
]
WORD_KEYWORDS = frozenset({"cmx", "kurl", "sdk", "docs", "kots"})
DEFAULT_PRODUCT = "kots"
_WORD_RE = {k: re.compile(r"(?<![a-z0-9_])" + re.escape(k) + r"(?![a-z0-9_])") for k in WORD_KEYWORDS}
_LABEL_RE = re.compile(r"product::[A-Za-z0-9_.-]+")


def match_product(issue_text: str) -> tuple[str, str | None]:
    """(product, matched keyword or None). Substring tests first: regexes only confirm."""
    low = issue_text.lower()
    for product, keywords in PRODUCT_RULES:
        for kw in keywords:
            if kw in low and (kw not in WORD_KEYWORDS or _WORD_RE[kw].search(low)):
                return product, kw
    return DEFAULT_PRODUCT, None


def approx_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _first_line(text: str, limit: int = 120) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:limit]
    return "the issue"


def product_labeling_answer(issue_text: str) -> dict[str, Any]:
    """The product-labeling answer for one issue: every key of the strict schema."""
    product, matched = match_product(issue_text)
    digest = zlib.crc32(issue_text.encode("utf-8", "surrogatepass"))
    confidence = round(0.55 + (digest % 45) / 100, 2) if matched else 0.5
    current = sorted(set(_LABEL_RE.findall(issue_text))) if "product::" in issue_text else []
    if current:
        assessment = f"The issue is currently labeled {', '.join(current)}; " + (
            "that matches the analysis." if f"product::{product}" in current else "that does not match the analysis."
        )
    else:
        assessment = "The issue has no product label yet."
    reasoning = (
        f"The issue mentions '{matched}', which belongs to {product}."
        if matched
        else f"No product keyword found; defaulting to {product}."
    )
    return {
        "recommended_labels": [{"label": f"product::{product}", "reasoning": reasoning}],
        "confidence": confidence,
        "root_cause_analysis": f"Fake analysis: the reported behaviour is located in {product}.",
        "current_labels_assessment": assessment,
        "summary": _first_line(issue_text),
    }


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        out = []
        for part in content:
            if isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    out.append(t)
        return "\n".join(out)
    return ""


def schema_answer(schema: Any, issue_text: str, depth: int = 0, seed: str = "") -> Any:
    """A valid answer for any strict JSON schema (user-defined processors): every property
    present, enums take a value picked by the issue text (deterministic), arrays hold one
    item, strings quote the issue's first line, numbers lie in 0..1, integers in 0..9."""
    if not isinstance(schema, dict) or depth > 12:
        return None
    digest = zlib.crc32(f"{seed}:{issue_text}".encode("utf-8", "surrogatepass"))
    if "enum" in schema and schema["enum"]:
        return schema["enum"][digest % len(schema["enum"])]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return schema_answer(schema[key][0], issue_text, depth + 1, seed)
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: schema_answer(v, issue_text, depth + 1, f"{seed}.{k}") for k, v in props.items()}
    if t == "array":
        return [schema_answer(schema.get("items"), issue_text, depth + 1, f"{seed}[]")]
    if t == "string":
        return _first_line(issue_text, 60)
    if t == "number":
        return round((digest % 100) / 100, 2)
    if t == "integer":
        return digest % 10
    if t == "boolean":
        return digest % 2 == 0
    return None


def is_product_labeling(body: dict[str, Any], system_text: str) -> bool:
    rf = body.get("response_format")
    if isinstance(rf, dict) and isinstance(rf.get("json_schema"), dict):
        if rf["json_schema"].get("name") == "product_labeling":
            return True
    low = system_text.lower()
    return "product labeling" in low or "product-labeling" in low or "product_labeling" in low


def answer_for_request(body: dict[str, Any]) -> tuple[str, int]:
    """Return (assistant content, prompt_tokens) for one chat-completions request body."""
    messages = body.get("messages")
    all_text, system_text, user_text = [], [], []
    if isinstance(messages, list):
        for m in messages:
            if not isinstance(m, dict):
                continue
            text = _message_text(m.get("content"))
            all_text.append(text)
            if m.get("role") in ("system", "developer"):
                system_text.append(text)
            elif m.get("role") == "user":
                user_text.append(text)
    prompt_tokens = approx_tokens("".join(all_text))
    issue = "\n".join(user_text)
    if is_product_labeling(body, "\n".join(system_text)):
        return json.dumps(product_labeling_answer(issue)), prompt_tokens
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        return json.dumps(schema_answer(schema, issue) if schema else {}), prompt_tokens
    if isinstance(rf, dict) and rf.get("type") == "json_object":
        return "{}", prompt_tokens
    return f"Fake answer to: {_first_line(issue, 80)}", prompt_tokens
