"""Imports go one way (DESIGN.md): cli → app → routes → service → store → db. Services never
import Starlette; routes never touch a store; shared helpers depend on no layer above them."""

from __future__ import annotations

import ast
from pathlib import Path

import passwordless

PACKAGE = Path(passwordless.__file__).parent
RANKS = {"entry": 0, "app": 1, "routes": 2, "service": 3, "store": 4, "db": 5}
WEB_FRAMEWORKS = ("starlette", "uvicorn")


def layer(module: str) -> str:
    name = module.removeprefix("passwordless.")
    if name in ("cli", "__main__", "server"):
        return "entry"
    if name == "app":
        return "app"
    if name.endswith(".routes") or name in ("middleware", "web", "openapi") or name.startswith("pages."):
        return "routes"
    if name.endswith((".service", ".worker", ".events")) or name in ("deps", "mail.transport", "limits", "queue_worker"):
        return "service"
    if name.endswith(".store") or name in ("migrate", "audit", "mail.queue", "queue_table"):
        return "store"
    if name == "db":
        return "db"
    return "shared"  # config*, errors, crypto, logs, lifecycle, …


def imports_of(source: str, module: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                base = ".".join(module.split(".")[: -node.level] + [node.module])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def violations(module: str, source: str, known_modules: set[str]) -> list[str]:
    problems = []
    mine = layer(module)
    for imported in sorted(imports_of(source, module)):
        top = imported.split(".")[0]
        if mine not in ("entry", "app", "routes") and top in WEB_FRAMEWORKS:
            problems.append(f"{module} ({mine}) imports {imported}: only routes and above may use {top}")
        if imported not in known_modules or imported == module:
            continue
        theirs = layer(imported)
        if mine == "shared" and theirs != "shared":
            problems.append(f"{module} (shared) imports {imported} ({theirs})")
        elif mine != "shared" and theirs != "shared" and RANKS[theirs] < RANKS[mine]:
            problems.append(f"{module} ({mine}) imports {imported} ({theirs}): imports go one way")
        elif module.endswith(".routes") and theirs in ("store", "db"):
            problems.append(f"{module} (routes) imports {imported} ({theirs}): routes go through a service")
    return problems


def package_modules() -> dict[str, str]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path.read_text(encoding="utf-8")
    return modules


def test_imports_go_one_way() -> None:
    modules = package_modules()
    problems = [p for name, source in modules.items() for p in violations(name, source, set(modules))]
    assert problems == []


def test_the_check_catches_wrong_way_imports() -> None:
    known = set(package_modules())
    assert violations("passwordless.db", "from passwordless.app import create_app", known)
    assert violations("passwordless.health.service", "from starlette.requests import Request", known)
    assert violations("passwordless.health.routes", "from passwordless import migrate", known)
    assert violations("passwordless.errors", "from passwordless.db import Database", known)
    assert not violations("passwordless.health.service", "from passwordless.db import Database", known)
