"""The module graph: one way down, no cycles, no private names across modules.

The contracts themselves live in pyproject.toml (``[tool.importlinter]``) and are checked
by import-linter; the two rules it cannot see are checked here by reading the source.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nexios"

# Imports inside functions, each with its reason. Anything else goes at the top.
ALLOWED_LATE_IMPORTS = {
    # The URL scheme picks the backend; a backend's driver is imported only when used.
    ("nexios/layers/__init__.py", "nexios.layers.memory"),
    ("nexios/layers/__init__.py", "nexios.layers.redis"),
    ("nexios/layers/__init__.py", "nexios.layers.redis_cluster"),
    ("nexios/history/__init__.py", "nexios.history.redis"),
    # picows's compiled extension may not load on a platform without wheels: the wire
    # that needs it is imported only when asked for; nexios run then falls back.
    ("nexios/server.py", "nexios.wire.native"),
}


def modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(PACKAGE.parent)), ast.parse(path.read_text(), str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=120
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_no_private_name_is_imported_from_another_module() -> None:
    found = []
    for name, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nexios"):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                if private and not all(p.startswith("__") for p in private):
                    found.append(f"{name}:{node.lineno} imports {private} from {node.module}")
    assert found == []


def test_imports_sit_at_the_top_of_modules() -> None:
    late = []
    allowed_seen = set()
    for name, tree in modules():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    targets = [node.module or ""]
                else:
                    continue
                late += [
                    f"{name}:{node.lineno} imports {target} inside {function.name}()"
                    for target in targets
                    if (name, target) not in ALLOWED_LATE_IMPORTS
                ]
                allowed_seen.update((name, target) for target in targets)
    assert late == []
    assert allowed_seen >= ALLOWED_LATE_IMPORTS, "stale entries in ALLOWED_LATE_IMPORTS"
