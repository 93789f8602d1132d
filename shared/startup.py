"""What a service process leaves unimported: each service's `__main__` calls
`skip_unused_imports()` before anything else, so start-up does not pay for modules the
process would import only to fall back from them.

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

And once a service has built what it runs with, `settle_heap()` tunes the garbage collector
for a long-lived process (below).
"""

from __future__ import annotations

import gc
import sys

SKIPPED = ("pymongo.pyopenssl_context", "rich")


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
    validators, the app: about 95,000 objects the garbage collector tracks, all kept for the
    life of the process).

    - They are moved out of the collector's sight (`gc.freeze`), so that a full collection
      walks only what was made since. Before, each full collection under load walked them
      all and held the event loop for 100-250 ms.
    - The youngest generation is collected less often (GC_YOUNG_THRESHOLD).

    Measured by turns (docs/benchmarks.md, the twenty-ninth session): the collector's time
    under load fell from 13-21% of a service's time to 4-10%, with no full collection left
    under load. Latency was lower in three sets of pairs of six and not in the others: no
    gain in it is claimed (the thirtieth session's pairs). Objects are still freed by
    their reference counts, and cycles by the collections that remain."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)
