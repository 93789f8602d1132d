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
"""

from __future__ import annotations

import sys

SKIPPED = ("pymongo.pyopenssl_context", "rich")


def skip_unused_imports() -> None:
    for name in SKIPPED:
        # None in sys.modules makes `import name` raise ImportError, which both importers
        # catch and fall back from; a module already imported is left as it is
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
