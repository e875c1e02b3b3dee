"""Issue 23's size rules, with scripts/code_sizes.py's own scan: no library function over 60
lines, and no module importing another module's private name (`from .plots import _axis`):
what modules share is public."""

from pathlib import Path

from scripts.code_sizes import LIMIT, scan

PACKAGE = Path(__file__).resolve().parent.parent / "pruneviz"
def _name(entry: str) -> str:
    """'…/pruneviz/ui/compare.py:183 _compare_body' -> 'ui/compare.py _compare_body'."""
    where, name = entry.rsplit(" ", 1)
    return f"{Path(where.rsplit(':', 1)[0]).relative_to(PACKAGE).as_posix()} {name}"


def test_no_library_function_is_over_the_limit_and_no_private_name_crosses_modules():
    _, long_fns, private = scan(PACKAGE)
    over = [f"{_name(e)} ({n} lines)" for n, e in long_fns]
    assert not over, f"functions over {LIMIT} lines: split them at their seams: {over}"
    assert not private, f"make these names public (or shared) instead: {private}"


def test_the_scan_finds_a_long_function_and_a_private_import(tmp_path):
    """The check above fails on a deliberate violation."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(LIMIT - 1))
    (pkg / "long.py").write_text(f"def fits():\n{body}\n\ndef over():\n{body}    return 0\n")
    (pkg / "user.py").write_text("from .long import _hidden, fits\nfrom . import __version__\n")
    _, long_fns, private = scan(pkg)
    assert [(n, e.rsplit(" ", 1)[1]) for n, e in long_fns] == [(LIMIT + 1, "over")]
    assert private == [f"{pkg / 'user.py'}: from .long import _hidden"]
