"""Function-level imports of project modules, each of which must say why.

    .venv/bin/python .ci/check_local_imports.py      # run by `make lint`

An import inside a function hides a dependency from the reader (and used to hide upward imports
from the layers contract). The project imports its own modules at the top of the file; where it
cannot — Django's ``AppConfig.ready()`` connecting receivers, a circular model reference Django
needs, a script that must configure Django before importing models — the import carries a comment
saying why on its own line or the line above: ``# local import: <why>``. ``AppConfig.ready()`` is
exempt: importing models and connecting receivers there is what Django asks for.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "core", "contacts", "leads", "loyalty", "segments", "automation", "tracking", "webhooks",
    "demo", "bench", "marketing_hub",
)
MARKER = "# local import:"


def _project_module(node: ast.Import | ast.ImportFrom) -> str | None:
    names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    if isinstance(node, ast.ImportFrom) and node.level:
        return "." * node.level + (node.module or "")
    for name in names:
        if name.split(".")[0] in PACKAGES:
            return name
    return None


def _explained(lines: list[str], lineno: int) -> bool:
    """The marker on the import's line, or on a comment line of the run of imports and comments
    just above it (one comment may explain a group of imports)."""
    if MARKER in lines[lineno - 1]:
        return True
    index = lineno - 2
    while index >= 0:
        line = lines[index].strip()
        if line.startswith(MARKER):
            return True
        if not (line.startswith(("#", "from ", "import ")) or line.endswith((",", "(")) or line == ")"):
            return False
        index -= 1
    return False


def offenders(path: Path) -> list[str]:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source, str(path))
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if path.name == "apps.py" and function.name == "ready":
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            module = _project_module(node)
            if module is None:
                continue
            if _explained(lines, node.lineno):
                continue
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module}")
    return sorted(set(found), key=lambda row: (row.split(":")[0], int(row.split(":")[1])))


def main() -> int:
    rows = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                rows += offenders(path)
    if rows:
        print(f"Function-level imports of project modules without a '{MARKER} <why>' comment:")
        print("\n".join(f"  {row}" for row in rows))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
