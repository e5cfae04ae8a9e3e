"""The suite's xdist scheduling (tests/fixtures/xdist_storage.py), driven with stand-in workers:
each storage path's tests are one unit on one worker, in order; the storage-independent tests go
a module at a time, in collection order (`slow` ones are collected first)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tests.fixtures.xdist_storage import StorageScheduling

COLLECTION = [
    "tests/test_onboard.py::test_fd001",  # a slow module, collected first (tests/conftest.py)
    "tests/test_onboard.py::test_fd002",
    "tests/test_a.py::test_one[postgres]",
    "tests/test_a.py::test_two[postgres-customer]",
    "tests/test_a.py::test_three[postgres]",
    "tests/test_b.py::test_pure",
    "tests/test_a.py::test_one[timescaledb]",
    "tests/test_a.py::test_two[timescaledb-customer]",
    "tests/test_a.py::test_three[timescaledb]",
    "tests/test_b.py::test_pure_too",
    "tests/test_c.py::test_x",
    "tests/test_d.py::test_y[0]",
    "tests/test_d.py::test_y[1]",
    "tests/test_d.py::test_y[2]",
    "tests/test_e.py::test_z",
]


class Worker:
    """What the scheduler calls on an xdist worker."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[str] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent += [COLLECTION[i] for i in indices]

    def shutdown(self) -> None:
        self.shutting_down = True


def scheduler() -> tuple[StorageScheduling, Worker, Worker]:
    config: Any = SimpleNamespace(
        getvalue=lambda name: ["2*popen"] if name == "tx" else None,
        option=SimpleNamespace(loadscopereorder=True),
    )
    sched = StorageScheduling(config, None)
    one, two = Worker("gw0"), Worker("gw1")
    for worker in (one, two):
        sched.add_node(worker)
        sched.add_node_collection(worker, COLLECTION)
    sched.schedule()
    return sched, one, two


def test_each_storage_path_is_one_workers_in_order_and_the_modules_wait_in_order() -> None:
    sched, one, two = scheduler()
    # each worker starts with one storage path's tests, in order, and nothing else
    assert one.sent == [n for n in COLLECTION if "[postgres" in n]
    assert two.sent == [n for n in COLLECTION if "[timescaledb" in n]
    # the rest wait a module a unit, in collection order (not by their number of tests)
    assert list(sched.workqueue) == [
        "tests/test_onboard.py",
        "tests/test_b.py",
        "tests/test_c.py",
        "tests/test_d.py",
        "tests/test_e.py",
    ]
    assert list(sched.workqueue["tests/test_b.py"]) == [COLLECTION[5], COLLECTION[9]]


def test_a_worker_running_short_takes_the_next_module_whole() -> None:
    sched, one, two = scheduler()
    sched.mark_test_complete(one, COLLECTION.index(one.sent[0]))
    assert one.sent[-2:] == COLLECTION[:2]  # two left: it takes the slow module, whole
    for nodeid in two.sent[:2]:
        sched.mark_test_complete(two, COLLECTION.index(nodeid))
    assert two.sent[-2:] == [COLLECTION[5], COLLECTION[9]]  # then the next: test_b.py's
    assert list(sched.workqueue) == ["tests/test_c.py", "tests/test_d.py", "tests/test_e.py"]
