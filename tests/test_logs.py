"""The JSON log line: its fields, and the time stamp kept per second."""

from __future__ import annotations

import json
import logging
import sys

from bridge.logs import JsonFormatter


def _record(created: float, message: str = "webhook %s -> %s", exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise KeyError("boom")
        except KeyError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("bridge.app", logging.INFO, "", 0, message, ("ls", 200), exc_info)
    record.created = created
    return record


def test_a_line_has_the_utc_second_level_logger_and_message() -> None:
    line = json.loads(JsonFormatter().format(_record(1_790_000_000.9)))
    assert line == {
        "time": "2026-09-21T14:13:20Z",
        "level": "info",
        "logger": "bridge.app",
        "message": "webhook ls -> 200",
    }


def test_the_stamp_follows_the_second_of_each_record() -> None:
    formatter = JsonFormatter()
    stamps = [json.loads(formatter.format(_record(t)))["time"] for t in (100.2, 100.9, 101.0, 99.5)]
    assert stamps == ["1970-01-01T00:01:40Z", "1970-01-01T00:01:40Z", "1970-01-01T00:01:41Z", "1970-01-01T00:01:39Z"]


def test_an_exception_names_its_type_and_trace() -> None:
    line = json.loads(JsonFormatter().format(_record(0.0, exc=True)))
    assert line["error"] == "KeyError" and "Traceback" in line["trace"]
