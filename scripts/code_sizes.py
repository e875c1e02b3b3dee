"""Print pruneviz's size: the largest files, every function over 60 lines, and every import of
another module's private name (`from .plots import _axis`). Issue 23's before/after numbers:
`python scripts/code_sizes.py [PACKAGE_DIR]`."""

import ast
import sys
from pathlib import Path

LIMIT = 60


def scan(root: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]], list[str]]:
    """(lines, file) of every .py under `root`; (lines, "file:line name") of every function over
    LIMIT lines; "file: from MODULE import NAMES" of every import of another module's private
    names. tests/test_code_sizes.py holds the package to the last two."""
    files, long_fns, private = [], [], []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        files.append((len(source.splitlines()), str(path)))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > LIMIT:
                    long_fns.append((size, f"{path}:{node.lineno} {node.name}"))
            elif isinstance(node, ast.ImportFrom):
                names = [a.name for a in node.names
                         if a.name.startswith("_") and not a.name.startswith("__")]
                if names:
                    private.append(f"{path}: from {'.' * node.level}{node.module or ''} "
                                   f"import {', '.join(names)}")
    return files, long_fns, private


def main(root: Path) -> None:
    files, long_fns, private = scan(root)
    print(f"files: {len(files)}, lines: {sum(n for n, _ in files)}; largest:")
    for n, name in sorted(files, reverse=True)[:8]:
        print(f"  {n:5d} {name}")
    print(f"functions over {LIMIT} lines: {len(long_fns)}")
    for n, name in sorted(long_fns, reverse=True):
        print(f"  {n:5d} {name}")
    print(f"imports of another module's private names: {len(private)}")
    for line in private:
        print(f"  {line}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "pruneviz"))
