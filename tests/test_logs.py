"""The process log says what an operator needs: a PDF download does not print font internals
(fontTools logged hundreds of INFO lines on `fleetcare up`'s terminal per invoice PDF)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from fleetcare.logs import setup_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    font_level = logging.getLogger("fontTools").level
    yield
    root.handlers[:], root.level = handlers, level
    logging.getLogger("fontTools").setLevel(font_level)


@pytest.mark.usefixtures("restored_logging")
def test_font_subsetting_is_quiet_at_info() -> None:
    setup_logging("INFO")
    assert not logging.getLogger("fontTools.subset").isEnabledFor(logging.INFO)
    assert logging.getLogger("fontTools.subset").isEnabledFor(logging.WARNING)
    assert logging.getLogger("cli.up").isEnabledFor(logging.INFO)
