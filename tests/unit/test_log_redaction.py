"""Presigned URLs are credentials until they expire: log lines never carry them whole."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest
import structlog

from hone_common.logging import configure_logging, redact_signed_urls

SIGNED = (
    "http://127.0.0.1:9000/hone-models/hone/v1.mar?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=hone-admin%2F20261125%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20261125T161654Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=65aa5af7871fb35f8d755bc7a829298361dc2fcd3"
)


def test_signatures_and_credentials_are_redacted_and_the_rest_is_kept() -> None:
    redacted = redact_signed_urls(None, "info", {"event": f"fetching {SIGNED}", "n": 1})
    assert "65aa5af7" not in redacted["event"]
    assert "hone-admin" not in redacted["event"]
    assert "X-Amz-Signature=REDACTED" in redacted["event"]
    assert "hone-models/hone/v1.mar" in redacted["event"]
    assert redacted["n"] == 1


def test_a_url_encoded_inside_another_url_is_redacted_too() -> None:
    line = f"POST http://127.0.0.1:8081/models?url={quote(SIGNED, safe='')}"
    redacted = redact_signed_urls(None, "info", {"event": line})["event"]
    assert "65aa5af7" not in redacted
    assert "hone-admin" not in redacted


def test_no_log_line_carries_a_signature_even_from_another_library(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("test", "INFO", json=True)
    logging.getLogger("some.library").warning("downloading %s", SIGNED)
    structlog.get_logger("hone").info("registered", url=SIGNED)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 2
    assert all("65aa5af7" not in json.dumps(line) for line in lines)
