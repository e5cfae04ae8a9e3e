"""`fleetcare up` starts its simulated courier before the API: until the API first answers the
courier says it is waiting (INFO), not a warning; once it has answered, losing it is one."""

from __future__ import annotations

import logging
import socket
import threading

from fleetcare.clock import SystemClock
from simulators.api_client import ProductAPI
from simulators.courier import Courier


class _Seen(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.first.set()


def test_a_courier_waiting_for_the_api_says_so_without_a_warning() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    courier = Courier(
        ProductAPI(f"http://127.0.0.1:{port}", "fc_none", timeout_s=2), SystemClock(), 1.0
    )
    seen = _Seen()
    logger = logging.getLogger("simulators.courier")
    logger.addHandler(seen)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    stop = threading.Event()
    worker = threading.Thread(target=courier.run, args=(stop, 0.05))
    worker.start()
    try:
        assert seen.first.wait(10), "the courier said nothing"
    finally:
        stop.set()
        worker.join(10)
        logger.removeHandler(seen)
        logger.setLevel(old_level)
    assert not worker.is_alive()
    said = seen.records[0]
    assert said.levelno == logging.INFO
    assert said.getMessage().startswith("courier: waiting for the API (cannot reach the API at")
    assert all(r.levelno < logging.WARNING for r in seen.records)
