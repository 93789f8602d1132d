"""Each service owns its code and its database: no service imports another's modules, and
shared/ imports no service."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["intake", "funding", "monitoring", "notifications"]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_no_service_imports_another() -> None:
    for svc in SERVICES:
        for f in (ROOT / "services" / svc).rglob("*.py"):
            for mod in imports_of(f):
                if mod.startswith("services."):
                    assert mod.split(".")[1] == svc, f"{f} imports {mod}"


def test_shared_imports_no_service() -> None:
    for f in (ROOT / "shared").rglob("*.py"):
        assert not any(m.startswith("services") for m in imports_of(f)), f
