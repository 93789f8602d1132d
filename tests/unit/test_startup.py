"""shared/startup.py: a service process (`python -m services.<name>`) starts without importing
what it would import only to fall back from it (cryptography through PyMongo's PyOpenSSL
try, rich through structlog), and still has what it uses: PyMongo's TLS and structlog's
JSON logging with tracebacks. Its garbage collector is paused until the service is built,
then the built heap is frozen and the collector runs again, tuned.

Each check runs in a fresh interpreter: what a process has imported cannot be undone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "funding", "monitoring", "notifications")
UNUSED = ("cryptography", "OpenSSL", "rich", "pygments", "pymongo.pyopenssl_context")

PROBE = """
import gc, importlib, json, sys
importlib.import_module(sys.argv[1])
collector_on = gc.isenabled()
loaded = sorted({m.split(".")[0] if not m.startswith("pymongo.") else m
                 for m, v in sys.modules.items() if v is not None})
import pymongo.ssl_support as ssl_support
main = importlib.import_module(f"services.{sys.argv[2]}.app").main
print(json.dumps({"loaded": loaded, "have_ssl": ssl_support.HAVE_SSL,
                  "main": callable(main), "collector_on": collector_on}))
"""


def python(code: str, *args: str) -> dict[str, Any]:
    """`code` run in a fresh interpreter (with `args` as its sys.argv[1:]): the JSON object
    its last line printed."""
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe(service: str, module: str) -> dict[str, Any]:
    return python(PROBE, module, service)


# the collector still frees what only it can (a cycle made once the service serves)
CYCLE_FREED = """
import gc, weakref

class Node:
    pass

def cycle_freed():
    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    return ref() is None
"""


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_process_starts_without_the_modules_it_would_only_fall_back_from(
        service: str) -> None:
    got = probe(service, f"services.{service}.__main__")  # not run as __main__: no start
    assert not set(UNUSED) & set(got["loaded"]), got["loaded"]
    assert got["have_ssl"] is True  # PyMongo still has TLS (the standard library's)
    assert got["main"] is True
    assert got["collector_on"] is False  # paused until run_service has built the service


def test_without_the_skip_the_service_would_import_them() -> None:
    """The check above is not vacuous: importing a service's app directly (as the tests and
    the command line tool do) still pulls in both. If this fails, a dependency stopped
    importing them on its own and shared/startup.py can drop that name."""
    got = probe("intake", "services.intake.app")
    assert {"cryptography", "rich"} <= set(got["loaded"])
    assert got["collector_on"] is True  # and the collector is left as Python starts it


def test_logging_still_renders_tracebacks_without_rich() -> None:
    code = """
from shared.startup import skip_unused_imports
skip_unused_imports()
import io, json, logging, sys
from shared.logging import setup_logging, get_logger
setup_logging("probe")
buf = io.StringIO()
logging.getLogger().handlers[0].setStream(buf)
try:
    raise ValueError("boom")
except ValueError:
    get_logger().exception("failed", programme_id="JP-1")
line = json.loads(buf.getvalue().strip().splitlines()[-1])
print(json.dumps({"rich": "rich" in sys.modules and sys.modules["rich"] is not None,
                  "line": line}))
"""
    got = python(code)
    assert got["rich"] is False
    assert got["line"]["event"] == "failed" and got["line"]["programme_id"] == "JP-1"
    assert "ValueError: boom" in got["line"]["exception"]


def test_a_service_settles_its_heap_once_built_and_before_it_serves() -> None:
    """run_service: what was built to start is frozen (out of the collector's sight) and the
    youngest generation's threshold raised, after the app is built and before it serves;
    garbage made afterwards is still collected."""
    got = python(CYCLE_FREED + """
import json
import shared.runtime as runtime
from shared.startup import GC_YOUNG_THRESHOLD
seen = {"before": [gc.get_freeze_count(), gc.get_threshold()[0]]}

def build(settings):
    seen["built"] = gc.get_freeze_count()
    return object(), None

def serve(app, settings):
    seen["serving"] = [gc.get_freeze_count(), gc.get_threshold()[0]]
    seen["collector_on"] = gc.isenabled()
    seen["cycle_freed"] = cycle_freed()

runtime.serve = serve
runtime.run_service(build, lambda: None)
seen["threshold"] = GC_YOUNG_THRESHOLD
print(json.dumps(seen))
""")
    assert got["before"] == [0, 700] and got["built"] == 0  # Python's own, until then
    frozen, young = got["serving"]
    assert frozen > 10_000  # the modules, classes and validators a service imports
    assert young == got["threshold"] > 700
    assert got["collector_on"] is True
    assert got["cycle_freed"] is True


def test_a_service_process_builds_with_the_collector_paused_and_serves_with_it_on() -> None:
    """begin() (a service's `__main__`) pauses the collector: no collection runs while the
    service imports and builds; run_service then freezes what was built, with no
    collection first either, and serves with the collector on; a cycle made then is freed."""
    got = python(CYCLE_FREED + """
import json

def collections():
    return sum(s["collections"] for s in gc.get_stats())

from shared.startup import begin
begin()
at_begin = collections()
seen = {"on_after_begin": gc.isenabled()}
import services.funding.app  # (a whole service's imports)
import shared.runtime as runtime

def build(settings):
    seen["collections_while_importing"] = collections() - at_begin
    seen["on_while_building"] = gc.isenabled()
    return object(), None

def serve(app, settings):
    seen["collections_before_serving"] = collections() - at_begin
    seen["on_when_serving"] = gc.isenabled()
    seen["frozen"] = gc.get_freeze_count()
    seen["cycle_freed"] = cycle_freed()

runtime.serve = serve
runtime.run_service(build, lambda: None)
print(json.dumps(seen))
""")
    assert got["on_after_begin"] is False and got["on_while_building"] is False
    assert got["collections_while_importing"] == 0
    assert got["collections_before_serving"] == 0  # frozen as built, not collected first
    assert got["on_when_serving"] is True
    assert got["frozen"] > 100_000  # a service's imports and what it built
    assert got["cycle_freed"] is True
