"""Every module of the project imports on its own, first, in a fresh interpreter: an import
cycle that only bites when one particular module is imported first (the console importing
shared.kafka before the contracts, say) fails here, not in a running process."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT


def modules() -> list[str]:
    out = []
    for base in ("shared", "services", "mptf_cli"):
        for f in sorted((ROOT / base).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_every_module_imports_first_on_its_own() -> None:
    names = modules()
    assert len(names) > 40
    # one interpreter per module, several at a time
    script = ("import importlib, sys\n"
              "importlib.import_module(sys.argv[1])\n")
    failed = {}
    for i in range(0, len(names), 12):
        procs = {n: subprocess.Popen([sys.executable, "-c", script, n], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for n in names[i:i + 12]}
        for n, p in procs.items():
            _, err = p.communicate(timeout=120)
            if p.returncode:
                failed[n] = err.decode()[-400:]
    assert not failed, failed
