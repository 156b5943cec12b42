"""MkDocs hook: the settings reference page (``settings.md``), generated at build time from
the settings models in ``src/streamwise/settings.py`` so that it cannot drift from them.

Each field's name, type (with its bounds), default and description (its docstring) come
from the pydantic model; the environment variables from ``ENV_PREFIXES``; the command-line
flags from the ``streamwise serve`` parser.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
import types
from typing import Any, Literal, Union, get_args, get_origin

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGE = "settings.md"
ROOT = pathlib.Path(__file__).resolve().parents[2]

# this checkout's package, whatever else is installed: the page describes the code beside it
sys.path.insert(0, str(ROOT / "src"))

from pydantic import BaseModel  # noqa: E402
from pydantic.fields import FieldInfo  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

from streamwise import cli, settings  # noqa: E402

BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥"}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, PAGE, content=render()))
    return files


def render() -> str:
    flags = _flags()
    env = " or ".join(f"`{p}<FIELD>`" for p in reversed(settings.ENV_PREFIXES))
    return "\n".join(
        [
            "# Settings reference",
            "",
            "Generated from the settings models (`src/streamwise/settings.py`) when the site",
            "is built. How to run the server and where settings come from:",
            "[Running and configuring](running.md#settings).",
            "",
            "## Server settings (`settings.json`) {#server-settings}",
            "",
            "Lowest precedence first: the default, `settings.json` at the top of the model",
            f"repository, the environment ({env}; `STREAMWISE_` wins), command-line flags.",
            "Environment values are parsed as JSON when they are JSON, else taken as strings.",
            "An unknown field is an error that names the file or the variable.",
            "The descriptions speak Python: `None`, `True` and `False` are `null`, `true` and",
            "`false` in JSON.",
            "",
            _table(settings.Settings, env=True, flags=flags),
            "## Model settings (`model-settings.json`) {#model-settings}",
            "",
            "One `model-settings.json` per model version, anywhere below the model repository;",
            "read from the file alone (no environment variables). A repository with no",
            "`model-settings.json` serves the one model that `MLSERVER_MODEL_<FIELD>` or",
            "`STREAMWISE_MODEL_<FIELD>` describe, `parameters` fields included",
            "([Running](running.md#a-model-from-the-environment-alone)).",
            "",
            _table(settings.ModelSettings, env=False, flags={}),
            "### Model parameters (`parameters`) {#model-parameters}",
            "",
            _table(settings.ModelParameters, env=False, flags={}),
        ]
    )


def _table(model: type[BaseModel], *, env: bool, flags: dict[str, str]) -> str:
    head = ["field", "type", "default"] + (["environment, flag"] if env else []) + ["meaning"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, field in model.model_fields.items():
        cells = [f"`{name}`", _type(field), _default(field)]
        if env:
            names = [f"`{p}{name.upper()}`" for p in reversed(settings.ENV_PREFIXES)]
            if name in flags:
                names.append(f"`{flags[name]}`")
            cells.append("<br>".join(names))
        cells.append(_text(field.description or ""))
        rows.append("| " + " | ".join(_escape_pipes(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def _flags() -> dict[str, str]:
    """Field name -> the ``streamwise serve`` option that sets it."""
    parser = cli._parser()
    found: dict[str, str] = {}
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for sub in getattr(action, "choices", {}).values():
            for option in sub._actions:
                if option.dest in settings.Settings.model_fields and option.option_strings:
                    found[option.dest] = option.option_strings[-1]
    return found


def _type(field: FieldInfo) -> str:
    text = _type_name(field.annotation)
    bounds = [
        f"{BOUNDS[key]} {getattr(meta, key)}"
        for meta in field.metadata
        for key in BOUNDS
        if getattr(meta, key, None) is not None
    ]
    return f"`{text}`" + (f" ({', '.join(bounds)})" if bounds else "")


def _type_name(t: Any) -> str:
    origin, args = get_origin(t), get_args(t)
    if t is type(None):
        return "null"
    if t is Any:
        return "any"
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    return str(getattr(t, "__name__", t))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def _escape_pipes(cell: str) -> str:
    """Pipes outside code spans would end the table cell (inside them they do not)."""
    parts = cell.split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def _text(doc: str) -> str:
    """A docstring as one line of Markdown: Sphinx roles and literals become code spans."""
    doc = re.sub(r":\w+:`~?(?:[\w.]+\.)?(\w+)`", r"`\1`", doc)
    return " ".join(doc.replace("``", "`").split())
