"""Structured logging: JSON lines (or readable console lines locally) via structlog."""

from __future__ import annotations

import logging
import re
import sys

import structlog

_SIGNED = re.compile(
    r"(X-Amz-(?:Signature|Credential)(?:=|%3D))(?:(?!%26)[^&\s\"'])+", re.IGNORECASE
)


def redact_signed_urls(
    _: object, __: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """A presigned URL is a credential until it expires: never write one to a log whole."""
    for name, value in event_dict.items():
        if isinstance(value, str) and "x-amz-" in value.lower():
            event_dict[name] = _SIGNED.sub(r"\1REDACTED", value)
    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_signed_urls,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_signed_urls,  # tracebacks may quote a URL too
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR; keep those but silence its chatter.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    # httpx logs every request's URL at INFO, presigned ones (TorchServe registrations) too.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.bind_contextvars(service=service)
