"""The documentation site (mkdocs.yml, docs/) builds with warnings as errors, its settings
reference covers every settings field, and a broken link does fail the build."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

from streamwise.registry import TRANSITIONS
from streamwise.settings import ModelParameters, ModelSettings, Settings

ROOT = pathlib.Path(__file__).resolve().parent.parent


def build(root: pathlib.Path, site: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # the hook imports this checkout's streamwise
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        # Material's banner about MkDocs 2.0 (stderr, not a warning of the build)
        "NO_MKDOCS_2_WARNING": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_site_builds_strictly_with_every_settings_field(tmp_path: pathlib.Path) -> None:
    done = build(ROOT, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    for page in ["", "architecture/", "running/", "settings/", "grpc/", "performance/"]:
        assert (tmp_path / page / "index.html").is_file(), page
    assert not (tmp_path / "hooks").exists()  # the hook is code, not a page

    reference = (tmp_path / "settings" / "index.html").read_text()
    listed = set(re.findall(r"<td><code>(\w+)</code></td>", reference))
    for model in (Settings, ModelSettings, ModelParameters):
        missing = set(model.model_fields) - listed
        assert not missing, f"{model.__name__}: {sorted(missing)}"
    assert "STREAMWISE_GRPC_MAX_CONNECTIONS" in reference and "--http-port" in reference


def test_a_broken_link_fails_the_strict_build(tmp_path: pathlib.Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    index = project / "docs" / "index.md"
    index.write_text(index.read_text() + "\nSee [the missing page](missing.md).\n")
    done = build(project, tmp_path / "site")
    assert done.returncode != 0
    assert "missing.md" in done.stderr, done.stderr


def test_the_lifecycle_diagram_is_the_transition_table() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    [diagram] = re.findall(r"```mermaid\nstateDiagram-v2\n(.*?)```", text, re.S)
    edges = set(re.findall(r"^\s*(\w+) --> (\w+): (\w+)$", diagram, re.M))
    assert edges == {(a.name, b.name, event.value) for (a, event), b in TRANSITIONS.items()}
