"""Re-align continuation lines that the figure-kit rename shifted: on a line where a renamed
name stands (figure, line, axis, rgba: 1 character shorter; empty_figure, unit_domain,
house_layout: 6 longer), every later column moved; a continuation line inside a bracket opened
on that line that was aligned to a token of the old line is aligned to the same token again.
Whitespace only: the AST of every file is checked unchanged.

Run after the rename's sed (issue 23's figure kit) on the files it touched:
    python scripts/realign_rename.py $(git diff --name-only BEFORE -- '*.py')"""
import ast
import io
import re
import sys
import tokenize
from pathlib import Path

DELTA = {"figure": -1, "line": -1, "axis": -1, "rgba": -1, "FALLBACK": -1,
         "empty_figure": 6, "unit_domain": 6, "house_layout": 6}
NAME = re.compile(r"(?<![\w.])(" + "|".join(DELTA) + r")(?=[(\[])")


def old_col(shifts: list[tuple[int, int]], c: int) -> int:
    """Column `c` of a renamed line as it was before the rename."""
    return c - sum(d for pos, d in shifts if pos < c)


def fix(path: Path) -> int:
    """Re-align `path` in place; the number of lines moved."""
    src = path.read_text()
    lines = src.splitlines(keepends=True)
    toks = [t for t in tokenize.generate_tokens(io.StringIO(src).readline)
            if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
                              tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)]
    starts: dict[int, list[int]] = {}
    for t in toks:
        starts.setdefault(t.start[0], []).append(t.start[1])
    shifts = {r: [(m.end(), DELTA[m.group(1)]) for m in NAME.finditer(lines[r - 1])]
              for r in starts if NAME.search(lines[r - 1])}
    stack, first_seen, changed = [], set(), 0
    for t in toks:
        r, c = t.start
        if r not in first_seen:
            first_seen.add(r)
            if stack and stack[-1][0] < r and stack[-1][0] in shifts:
                L = stack[-1][0]
                sh = shifts[L]
                if any(pos <= stack[-1][1] for pos, _ in sh):
                    targets = {old_col(sh, p): p for p in starts[L] if p > stack[-1][1]}
                    new_cols = {stack[-1][1] + 1}
                    if c not in new_cols and c in targets:
                        lines[r - 1] = " " * targets[c] + lines[r - 1].lstrip(" ")
                        changed += 1
        if t.type == tokenize.OP and t.string in "([{":
            stack.append((r, c))
        elif t.type == tokenize.OP and t.string in ")]}":
            stack.pop()
    new = "".join(lines)
    if changed:
        assert ast.dump(ast.parse(src)) == ast.dump(ast.parse(new)), path
        path.write_text(new)
    return changed


if __name__ == "__main__":
    for f in sys.argv[1:]:
        n = fix(Path(f))
        if n:
            print(f, n)
