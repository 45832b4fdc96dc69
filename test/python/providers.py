"""What differs between the two providers in the end-to-end tests that run on both
(test_crash.py, test_anthropic.py): the environment the extension reads, the model, the
create endpoint at the loopback fake, and where the fake lists the provider's batches.

OpenAI's base URL is the fake's `/v1` URL (as OPENAI_BASE_URL means to the openai SDK);
Anthropic's is the fake's ROOT URL (as ANTHROPIC_BASE_URL means to the anthropic SDK: the
root the `/v1/...` paths hang off)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Provider:
    name: str  # batch_jobs.provider
    key_env: str
    base_url_env: str
    model: str  # a model of this provider with a built-in price
    create_path: str  # POST here creates a batch at the fake (also the prefix of its other paths)
    state_key: str  # where GET /_fake/state lists this provider's batches
    uploads: bool  # the request file is uploaded (OpenAI) or travels inside the create (Anthropic)

    def base_url(self, fake) -> str:
        return fake.base_url if self.name == "openai" else fake.root_url

    def env(self, fake, key: str | None = None) -> dict[str, str]:
        """The variables pointing the extension at the fake for this provider."""
        return {self.key_env: key or fake.api_key, self.base_url_env: self.base_url(fake)}

    def setenv(self, monkeypatch, fake, key: str | None = None) -> None:
        for k, v in self.env(fake, key).items():
            monkeypatch.setenv(k, v)

    def batches(self, fake) -> list[dict[str, Any]]:
        return fake.state()[self.state_key]

    def create_fault(self, **rule) -> dict[str, Any]:
        """A fault rule on this provider's create call."""
        return {"method": "POST", "path": self.create_path, **rule}


OPENAI = Provider("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL", "gpt-4o-mini", "/v1/batches", "batches", True)
ANTHROPIC = Provider("anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "claude-haiku-4-5",
                     "/v1/messages/batches", "message_batches", False)
PROVIDERS = [OPENAI, ANTHROPIC]


def anthropic_results(fake, batch_id: str) -> list[dict[str, Any]]:
    """The results JSONL of an ended Anthropic message batch, as the fake holds it (read
    in-process, so the fake's download counters are left alone)."""
    data = fake.provider.anthropic.batches[batch_id].results
    assert data is not None, f"{batch_id} has not ended"
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def anthropic_requests(fake, batch_id: str) -> list[dict[str, Any]]:
    """The requests (custom_id, params) an Anthropic message batch was created with."""
    return fake.provider.anthropic.batches[batch_id].requests
