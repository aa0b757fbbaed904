"""The TorchServe key publisher (docker/torchserve/publish_keys.py) against a fake API server."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit.deploy.support import ROOT


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "publish_keys", ROOT / "docker" / "torchserve" / "publish_keys.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


publish_keys = load_module()
KEYS = json.dumps({"management": {"key": "m1"}, "inference": {"key": "i1"}}).encode()


class FakeApi:
    """Secrets by name; answers like the Kubernetes API (404 for a missing secret)."""

    def __init__(self, *, failures: int = 0) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.failures = failures

    def __call__(self, method: str, path: str, body: dict[str, Any] | None, _: str) -> int:
        self.calls.append((method, path))
        if self.failures:
            self.failures -= 1
            return 503
        assert body is not None
        name = body["metadata"]["name"]
        if method == "PATCH":
            if name not in self.secrets:
                return 404
            self.secrets[name]["data"].update(body["data"])
            return 200
        assert method == "POST"
        assert path == "/api/v1/namespaces/hone/secrets"
        self.secrets[name] = body
        return 201

    def key_file(self, name: str) -> bytes:
        return base64.b64decode(self.secrets[name]["data"]["key_file.json"])


def test_creates_the_secret_when_it_does_not_exist_yet() -> None:
    api = FakeApi()
    publish_keys.publish(api, "ts-keys", "hone", KEYS)
    assert api.calls == [
        ("PATCH", "/api/v1/namespaces/hone/secrets/ts-keys"),
        ("POST", "/api/v1/namespaces/hone/secrets"),
    ]
    assert api.key_file("ts-keys") == KEYS


def test_patches_an_existing_secret_with_new_keys() -> None:
    api = FakeApi()
    publish_keys.publish(api, "ts-keys", "hone", b"old")
    publish_keys.publish(api, "ts-keys", "hone", KEYS)
    assert api.calls[-1] == ("PATCH", "/api/v1/namespaces/hone/secrets/ts-keys")
    assert api.key_file("ts-keys") == KEYS


def test_an_api_error_is_raised_with_its_status() -> None:
    with pytest.raises(RuntimeError, match="503"):
        publish_keys.publish(FakeApi(failures=1), "ts-keys", "hone", KEYS)


def test_watch_publishes_once_per_change_and_waits_for_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "key_file.json"
    api = FakeApi()
    rounds: list[int] = []

    def tick(_: float) -> None:  # the file appears, stays, then TorchServe rotates the keys
        rounds.append(1)
        if len(rounds) == 1:
            key_file.write_bytes(KEYS)
        if len(rounds) == 3:
            key_file.write_bytes(KEYS.replace(b"i1", b"i2"))

    monkeypatch.setattr(publish_keys.time, "sleep", tick)
    publish_keys.watch(api, "ts-keys", "hone", key_file, rounds=5)
    assert [m for m, _ in api.calls] == ["PATCH", "POST", "PATCH"]
    assert b'"i2"' in api.key_file("ts-keys")


def test_watch_keeps_going_after_an_api_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "key_file.json"
    key_file.write_bytes(KEYS)
    api = FakeApi(failures=1)
    monkeypatch.setattr(publish_keys.time, "sleep", lambda _: None)
    publish_keys.watch(api, "ts-keys", "hone", key_file, rounds=2)
    assert api.key_file("ts-keys") == KEYS
