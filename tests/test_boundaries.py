"""ARCHITECTURE.md §3: adapters, policies and audit never import the gateway (nor each other)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = {
    "adapters": {"gateway", "policies", "audit", "sqlalchemy", "fastapi"},
    "policies": {"gateway", "adapters", "audit", "sqlalchemy", "fastapi", "fhir"},
    "audit": {"gateway", "adapters", "policies", "fastapi", "fhir"},
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_alone(package: str) -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(result.stdout))
    assert package in loaded
    assert loaded & FORBIDDEN[package] == set()
