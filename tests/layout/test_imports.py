"""What ships imports only what ships: a walk over every import of the shipped packages.

The shipped code is ``src/linewatch`` (the shared runtime, in every image) and
``services/<name>/linewatch_<name>`` (one image each). Each module may import the standard
library, ``linewatch`` and its own service package, and third-party packages its image
installs (``requirements/base.txt`` for the runtime, ``requirements/<name>.txt`` for a
service). Dev and test tooling (``linewatch_dev``, ``tests``, pytest, hypothesis, onnx, …)
is never imported, not even lazily inside a function; services never import each other.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(
    p.name for p in (ROOT / "services").iterdir() if (p / f"linewatch_{p.name}").is_dir()
)

#: Never importable from shipped code, whatever a lock file holds.
FORBIDDEN = {
    *("linewatch_dev", "tests", "conftest", "bench", "tools"),
    *("pytest", "_pytest", "hypothesis"),
}


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str


def _imports(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(Import(path, node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(path, node.lineno, node.args[0].value))
    return found


def _locked(requirements: str) -> set[str]:
    """Normalised distribution names pinned in ``requirements/<name>.txt``."""
    text = (ROOT / "requirements" / f"{requirements}.txt").read_text(encoding="utf-8")
    return {_norm(m) for m in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", text, re.M)}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _shipped() -> list[tuple[str, Path, str]]:
    """``(package, root folder, requirements)`` of every shipped package."""
    out = [("linewatch", ROOT / "src" / "linewatch", "base")]
    out += [(f"linewatch_{s}", ROOT / "services" / s / f"linewatch_{s}", s) for s in SERVICES]
    return out


def _violations(package: str, root: Path, requirements: str) -> list[str]:
    allowed_dists = _locked(requirements)
    dists = packages_distributions()
    own = {"linewatch", package}
    bad: list[str] = []
    for path in sorted(root.rglob("*.py")):
        for imp in _imports(path):
            top = imp.module.split(".")[0]
            where = f"{_rel(imp.path)}:{imp.line}: {imp.module}"
            if top in FORBIDDEN:
                bad.append(f"{where} (dev/test tooling)")
            elif top.startswith("linewatch_") and top not in own:
                bad.append(f"{where} (another service; services never import each other)")
            elif top in own or top in sys.stdlib_module_names:
                continue
            elif not {_norm(d) for d in dists.get(top, [])} & allowed_dists:
                bad.append(f"{where} (not installed in the image: requirements/{requirements}.txt)")
    return bad


@pytest.mark.parametrize(("package", "root", "requirements"), _shipped(), ids=str)
def test_shipped_code_imports_only_what_its_image_installs(
    package: str, root: Path, requirements: str
) -> None:
    assert root.is_dir()
    assert _violations(package, root, requirements) == []


def test_the_walk_catches_dev_imports(tmp_path: Path) -> None:
    """The check is not vacuous: a module importing dev tooling is reported."""
    pkg = tmp_path / "linewatch_demo"
    pkg.mkdir()
    (pkg / "a.py").write_text(
        "import pytest\n"
        "def f():\n"
        "    from linewatch_dev.testing import free_port\n"
        "    import importlib\n"
        "    importlib.import_module('linewatch_ota.api')\n"
        "import onnx\n"
        "import numpy\n",
        encoding="utf-8",
    )
    bad = _violations("linewatch_demo", pkg, "base")
    assert sorted(b.split(": ", 1)[1] for b in bad) == [
        "linewatch_dev.testing (dev/test tooling)",
        "linewatch_ota.api (another service; services never import each other)",
        "onnx (not installed in the image: requirements/base.txt)",
        "pytest (dev/test tooling)",
    ]


def test_runtime_never_imports_a_service() -> None:
    root = ROOT / "src" / "linewatch"
    bad = [
        f"{i.path.relative_to(ROOT)}:{i.line}: {i.module}"
        for p in root.rglob("*.py")
        for i in _imports(p)
        if i.module.split(".")[0].startswith("linewatch_")
    ]
    assert bad == []
