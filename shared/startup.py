"""How a service process starts. Each service's `__main__` calls `begin()` before anything
else, and `run_service` calls `settle_heap()` once the app is built, before it serves.

`begin()` leaves unimported what the process would import only to fall back from it
(`skip_unused_imports`):

* `pymongo.pyopenssl_context`: PyMongo tries PyOpenSSL (for OCSP stapling) before the
  standard library's `ssl`, and the try imports `cryptography.x509` before it finds that
  PyOpenSSL is not installed (it is not a dependency of this project). Skipped, PyMongo
  takes the standard `ssl` at once, as it ends up doing anyway: TLS to MongoDB works the
  same, without OCSP checks (as today).
* `rich`: installed for the command line tool (typer's console), and structlog's
  development renderer and its rich tracebacks import it (with Pygments and attrs) when it is
  there. Services log JSON with plain tracebacks (shared.logging) and never use it.

About 0.1 s of CPU a service at every start, measured by turns (docs/benchmarks.md).
Only for the service processes: the tests and the command line tool import as usual.

`begin()` also pauses the garbage collector until `settle_heap()`. Importing and building a
service makes about 150,000 objects that the collector tracks and that live as long as the
process. With the collector on, a collection ran after every 700 of them and freed almost
nothing, and some of those collections walked everything made so far. `settle_heap()`
freezes what was built without collecting it first (below) and turns the collector back
on, tuned for a long-lived process. Measured by turns (docs/benchmarks.md, the
thirty-second session): four services started together used 3.02 s of CPU against 3.65,
and the last was ready at 1.96 s against 2.29 (medians of six pairs).
"""

from __future__ import annotations

import gc
import sys

SKIPPED = ("pymongo.pyopenssl_context", "rich")


def begin() -> None:
    """A service process's first call (its `__main__`): the imports it skips, and the
    collector paused until `settle_heap()` (run_service calls it once the app is built)."""
    skip_unused_imports()
    gc.disable()


def skip_unused_imports() -> None:
    for name in SKIPPED:
        # None in sys.modules makes `import name` raise ImportError, which both importers
        # catch and fall back from; a module already imported is left as it is
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


# The collector's youngest generation is collected once this many more container objects
# were made than freed (Python's default is 700). A batch makes tens of thousands of short-lived
# dicts and lists that die with it; at 700 many of them were still alive at a collection and
# were promoted, so the oldest generation filled with them and was collected in full several
# times a minute under load. See settle_heap.
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Called once a service has built what it runs with (its modules, classes, pydantic's
    validators, the app: about 150,000 objects the garbage collector tracks, all kept for the
    life of the process), with the collector paused since `begin()`.

    - They are moved out of the collector's sight (`gc.freeze`), so that a full collection
      walks only what was made since. Before, each full collection under load walked them
      all and held the event loop for 100-250 ms.
    - No collection first: it took 80-100 ms of CPU at every start, to free about 1,000
      objects (about 360 KiB: temporary classes and functions of the imports), which are
      now frozen with the rest and kept.
    - The youngest generation is collected less often (GC_YOUNG_THRESHOLD), and the collector
      is turned back on.

    Measured by turns (docs/benchmarks.md, the twenty-ninth session): the collector's time
    under load fell from 13-21% of a service's time to 4-10%, with no full collection left
    under load. Latency was lower in three sets of pairs of six and not in the others: no
    gain in it is claimed (the thirtieth session's pairs). Objects are still freed by
    their reference counts, and cycles by the collections that remain."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)
    gc.enable()  # (paused by begin(), in a service process)
