"""The fault session's fixtures: the suite's real infrastructure, and a watchdog.

A fault run that stops making progress must fail, loudly and in time, never hold CI until its
limit: after MPTF_FAULT_TEST_LIMIT seconds (20 min by default; a run here takes 5-8) the
watchdog prints where every thread and every asyncio task is waiting, then interrupts the
test as Ctrl-C would, so pytest still tears the stack down and reports the test as failed."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import signal
import sys
import threading
from collections.abc import Iterator

import pytest

LIMIT = float(os.environ.get("MPTF_FAULT_TEST_LIMIT", "1200"))


@pytest.fixture(autouse=True)
def _infra(infra: dict[str, str]) -> dict[str, str]:
    return infra


def _dump_and_interrupt(name: str) -> None:
    err = sys.stderr
    print(f"\n[watchdog] {name} still running after {LIMIT:.0f} s: where it waits", file=err)
    faulthandler.dump_traceback(file=err, all_threads=True)
    for loop in [o for o in gc.get_objects()
                 if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]:
        for task in asyncio.all_tasks(loop):
            print(f"[watchdog] task {task.get_name()}: {task.get_coro()!r}", file=err)
            task.print_stack(limit=12, file=err)
    err.flush()
    os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt: teardown runs, the run fails


@pytest.fixture(autouse=True)
def _watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    timer = threading.Timer(LIMIT, _dump_and_interrupt, args=(request.node.nodeid,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
