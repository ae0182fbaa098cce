"""The root conftest's guard against CPython's AST recursion-depth bug (python/cpython#106905).

On CPython 3.11.0-3.11.7 an AST built while another is being built (here: a finalizer run
by the garbage collector in the middle of ``ast.parse``, as when asyncio logs a never
retrieved exception while pytest parses a test's source to format its failure) raises
``SystemError: AST constructor recursion depth mismatch`` and pytest stops with an
INTERNALERROR. The guard serialises ``ast.parse`` and holds the collector off meanwhile.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import ast, gc, sys
if sys.argv[1] == "guarded":
    sys.path.insert(0, sys.argv[2])
    import conftest  # installs the guard
src = open(ast.__file__).read()
class LogsOnDelete:
    def __del__(self):
        ast.parse("x = (1 +\\n 2)")  # what a logged traceback's caret anchors do
gc.set_threshold(50)
for _ in range(30):
    for _ in range(2000):
        a = LogsOnDelete(); a.me = a
    ast.parse(src)
print("ok")
"""

AFFECTED = (3, 11) <= sys.version_info[:3] < (3, 11, 8)


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_ast_parse_is_guarded_in_this_session() -> None:
    assert getattr(ast.parse, "_linewatch_guarded", False) is AFFECTED


@pytest.mark.skipif(not AFFECTED, reason="this CPython builds ASTs reentrantly without error")
def test_without_the_guard_the_bug_shows() -> None:
    proc = _run("bare")
    assert "AST constructor recursion depth mismatch" in proc.stderr


def test_with_the_guard_a_reentrant_parse_succeeds() -> None:
    proc = _run("guarded")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
