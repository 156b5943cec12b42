"""The conformance suite stays independent of streamwise, and its two flavours of
reference models stay the same models."""

from __future__ import annotations

import ast
import pathlib

import pytest

CONFORMANCE = pathlib.Path(__file__).parent.parent / "conformance"
MODELS = CONFORMANCE / "models"


def _sources(root: pathlib.Path, pattern: str) -> list[pathlib.Path]:
    """Files under root, leaving out hidden folders (the runner scripts' venvs) and caches."""
    return [
        p
        for p in sorted(root.rglob(pattern))
        if p.is_file()
        and not any(
            part.startswith(".") or part == "__pycache__" for part in p.relative_to(root).parts
        )
    ]


def _imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_suite_imports_nothing_from_streamwise() -> None:
    suite = [p for p in _sources(CONFORMANCE, "*.py") if MODELS not in p.parents]
    assert len(suite) > 10
    assert {str(p): "streamwise" for p in suite if "streamwise" in _imports(p)} == {}


def _files(flavour: str) -> dict[str, str]:
    root = MODELS / flavour
    return {str(p.relative_to(root)): p.read_text() for p in _sources(root, "*")}


@pytest.mark.parametrize("flavour", ["mlserver"])
def test_flavours_differ_only_in_their_imports(flavour: str) -> None:
    ours, theirs = _files("streamwise"), _files(flavour)
    assert sorted(ours) == sorted(theirs)
    for name, text in ours.items():
        assert theirs[name].replace(f"from {flavour}", "from streamwise") == text, name
