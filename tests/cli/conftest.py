"""Fixtures of the command tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _restore_log_levels():
    """Put back the levels a command set on the root and ``thoracic`` loggers (``thoracic serve`` sets both).

    A command sets them for its process, as it should; in the test process they would otherwise
    hide the DEBUG records that later tests (tests/fuzz/test_phi_logs.py) capture and scan.
    """
    loggers = [logging.getLogger(), logging.getLogger("thoracic")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
