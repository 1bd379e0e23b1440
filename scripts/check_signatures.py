"""Flag functions with more positional parameters than a reader can follow.

A call site with eight positional arguments cannot be read without the
definition open beside it; past the limit a function takes keyword-only
arguments (`*`) or a small frozen dataclass. `self` and `cls` of methods do
not count, nor do `*args`. Prints one `path:line name (n positional)` line per
offender and exits 1 if there is any.

    python scripts/check_signatures.py engine workbench
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

LIMIT = 7  # positional parameters, `self`/`cls` excluded


def _positional(fn: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> int:
    params = [*fn.args.posonlyargs, *fn.args.args]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    if in_class and not static and params and params[0].arg in ("self", "cls"):
        params = params[1:]
    return len(params)


def _functions(tree: ast.AST) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
    """Every function in `tree`, with whether it is defined directly in a class body."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, in_class = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield child, in_class
                stack.append((child, False))
            else:
                stack.append((child, isinstance(child, ast.ClassDef)))


def offenders(paths: Iterable[Path], limit: int = LIMIT) -> list[str]:
    """`path:line name (n positional)` for each function over `limit`, in file order."""
    found: list[str] = []
    for root in paths:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for path in files:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            hits = [
                (fn.lineno, fn.name, n)
                for fn, in_class in _functions(tree)
                if (n := _positional(fn, in_class)) > limit
            ]
            found += [f"{path}:{line} {name} ({n} positional)" for line, name, n in sorted(hits)]
    return found


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path("engine"), Path("workbench")]
    missing = [str(r) for r in roots if not r.exists()]
    if missing:
        print(f"check_signatures: no such path: {', '.join(missing)}", file=sys.stderr)
        return 2
    found = offenders(roots)
    for line in found:
        print(line)
    if found:
        print(
            f"{len(found)} function(s) take more than {LIMIT} positional parameters: "
            "make the rest keyword-only (*) or pass a frozen dataclass",
            file=sys.stderr,
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
