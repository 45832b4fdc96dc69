"""A loopback fake of the OpenAI Files + Batches API and of Anthropic's Message Batches API (standard library only).

See README.md in this folder. Entry points:
  python -m fake_provider --port 0 --port-file /tmp/fake.port
  from fake_provider.server import FakeOpenAI
"""

from .provider import DEFAULT_API_KEY  # noqa: F401

__all__ = ["DEFAULT_API_KEY", "FakeOpenAI"]


def __getattr__(name):  # lazy, so `python -m fake_provider` does not import the server twice
    if name == "FakeOpenAI":
        from .server import FakeOpenAI

        return FakeOpenAI
    raise AttributeError(name)
