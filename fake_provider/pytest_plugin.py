"""pytest fixtures for the fake OpenAI provider.

Use from a test module (no conftest needed):

    from fake_provider.pytest_plugin import fake_openai, fake_openai_server  # noqa: F401

or register it once in a conftest.py at the rootdir: ``pytest_plugins = ["fake_provider.pytest_plugin"]``
(the repo root must be importable, e.g. ``sys.path.insert(0, REPO_ROOT)``).

* ``fake_openai_server`` (session): one running ``FakeOpenAI``.
* ``fake_openai`` (function): the same server, reset before the test (files, batches,
  config, faults and counters cleared). ``.base_url``, ``.api_key``, ``.configure()``,
  ``.state()``, ``.root_url`` (for the /_fake control API over HTTP).

Helpers to build batch input files: ``chat_request_line()``, ``make_jsonl()``.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from .server import FakeOpenAI

PRODUCT_LABELING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["recommended_labels", "confidence", "root_cause_analysis", "current_labels_assessment", "summary"],
    "properties": {
        "recommended_labels": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["label", "reasoning"],
                "properties": {"label": {"type": "string"}, "reasoning": {"type": "string"}},
            },
        },
        "confidence": {"type": "number"},
        "root_cause_analysis": {"type": "string"},
        "current_labels_assessment": {"type": "string"},
        "summary": {"type": "string"},
    },
}


def chat_request_line(
    custom_id: str,
    issue_text: str,
    model: str = "gpt-4o-mini",
    product_labeling: bool = True,
    url: str = "/v1/chat/completions",
) -> str:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are an expert at product labeling of GitHub issues."},
            {"role": "user", "content": issue_text},
        ],
    }
    if product_labeling:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "product_labeling", "strict": True, "schema": PRODUCT_LABELING_SCHEMA},
        }
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def make_jsonl(n: int, model: str = "gpt-4o-mini", prefix: str = "issue-", texts: list[str] | None = None) -> bytes:
    texts = texts or [
        "Title: kots admin console crashes\n\nThe admin console shows a blank page.",
        "Title: support bundle hangs\n\nCollecting a support bundle never finishes.",
        "Title: kurl install fails\n\nkurl join script times out.",
        "Title: embedded cluster upgrade\n\nEmbedded cluster upgrade loses data.",
        "Title: typo\n\nThe documentation has a typo.",
    ]
    return ("\n".join(chat_request_line(f"{prefix}{i}", texts[i % len(texts)], model) for i in range(n)) + "\n").encode()


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_openai_server.reset()
    yield fake_openai_server
