"""The fenced code blocks of README.md and docs/*.md, and how tests/test_docs.py runs them.

The info string after the opening backticks says what a block is. GitHub shows its first word
as the language and ignores the rest, so the pages render as usual:

    ```python                a script: run with `python` in a fresh directory; must exit 0
    ```python continued      appended to the page's previous script: they run as one
    ```python test           a pytest module: saved as test_docblock.py and run with pytest;
                             must pass, with at least one test
    ```python fragment       not run, only compiled (kept few: see test_docs.py)
    ```python file=app.py    saved as app.py beside every other block of the page, which use it
                             ("save as app.py, then ..."); not run on its own. `python
                             continued` blocks right after it add to app.py
    ```bash                  run with `bash -euo pipefail` in a fresh directory (```sh and
                             ```console alike); the slow tests run these
    ```bash continued        appended to the page's previous shell block: one script, so its
                             directory, exports and functions carry over
    ```bash repo             run from the repository's root (commands of a checkout)
    ```bash fragment         not run, only checked with `bash -n`: installs, servers, commands
                             that need Redis or another host

A ```console block is a transcript: its `$ ` lines (and their `\\` continuations) are the
commands; its other lines are output, not compared. Every other block (```text, ```ini, ```json,
```html, ```cron) is output or a listing, never run; every block names its language. Each run
gets PYTHONPATH set to the repository, the interpreter's scripts (`python`, `flask`, `pytest`)
first on PATH, loopback-only networking (a proxy that answers nothing, except for 127.0.0.1), no
FLASK_* or INTEGRATIONS_* variables from the caller, and a timeout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PYTHON = "python"
SHELLS = ("bash", "sh", "console")
#: Languages whose blocks are code the test runs (or compiles, as fragments).
CODE_LANGUAGES = (PYTHON, *SHELLS)
TAGS = {"continued", "test", "fragment", "repo"}

#: Seconds one script, test module or shell block may take.
TIMEOUT = 90

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts, its language, tags and options, and its code."""

    page: str  # relative to the repository: "docs/cli.md"
    line: int  # the opening fence's line, from 1
    language: str
    tags: frozenset[str]
    options: dict[str, str] = field(hash=False)
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def first_code_line(self) -> int:
        return self.line + 1

    @property
    def is_fragment(self) -> bool:
        return "fragment" in self.tags


@dataclass
class Unit:
    """What one test runs: a script (a `python` block and the `continued` ones after it), a
    pytest module, or a shell block (and the `continued` ones after it); with the page's
    `file=` blocks."""

    kind: str  # "script", "test" or "shell"
    blocks: list[Block]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return self.blocks[0].where

    @property
    def code(self) -> str:
        return padded(self.blocks)


def doc_pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def read_blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """Every fenced block of one page, in order; indented blocks (in a list item) are dedented."""
    page = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, number = [], 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if not opening:
            number += 1
            continue
        fence, end = opening["fence"], number + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{number + 1}: the code block is never closed")
        language, tags, options = parse_info(opening["info"])
        code = textwrap.dedent("\n".join(lines[number + 1 : end]))
        blocks.append(Block(page, number + 1, language, tags, options, code + "\n" if code else ""))
        number = end + 1
    return blocks


def parse_info(info: str) -> tuple[str, frozenset[str], dict[str, str]]:
    words = info.strip().split()
    if not words:
        return "", frozenset(), {}
    tags = {word for word in words[1:] if "=" not in word}
    options = dict(word.split("=", 1) for word in words[1:] if "=" in word)
    return words[0].lower(), frozenset(tags), options


def page_units(blocks: list[Block]) -> list[Unit]:
    """Group one page's code blocks into what the tests run (fragments and output excluded)."""
    units: list[Unit] = []
    files: dict[str, list[Block]] = {}
    script: Unit | None = None
    shell: Unit | None = None
    saving: str | None = None  # the `file=` block that `python continued` blocks add to
    for block in blocks:
        if block.language not in CODE_LANGUAGES or block.is_fragment:
            continue
        continued = "continued" in block.tags
        if block.language != PYTHON:
            if continued and shell is None:
                raise ValueError(
                    f"{block.where}: a `{block.language} continued` block with no shell block before it"
                )
            if continued:
                shell.blocks.append(block)
            else:
                shell = Unit("shell", [block])
                units.append(shell)
        elif "file" in block.options:
            saving, script = block.options["file"], None
            files[saving] = [block]
        elif continued:
            if saving is not None:
                files[saving].append(block)
            elif script is not None:
                script.blocks.append(block)
            else:
                raise ValueError(f"{block.where}: a `python continued` block with no script before it")
        else:
            saving, script = None, Unit("test" if "test" in block.tags else "script", [block])
            units.append(script)
            if "test" in block.tags:
                script = None
    saved = {name: padded(parts) for name, parts in files.items()}
    for unit in units:
        unit.files = saved
    return units


def padded(blocks: list[Block]) -> str:
    """The blocks' code (a console transcript's commands) with blank lines in front, so that a
    traceback's line numbers are the page's own."""
    text, line = "", 1
    for block in blocks:
        code = shell_code(block)
        text += "\n" * max(block.first_code_line - line, 1 if text else 0)
        text += code
        line = block.first_code_line + code.count("\n")
    return text


def isolated_env(**extra: str) -> dict[str, str]:
    """The caller's environment without its FLASK_* and INTEGRATIONS_* settings, with the
    repository importable, its interpreter's scripts (`flask`, `pytest`) first on PATH, and
    every connection but a loopback one sent to a proxy that answers nothing."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FLASK_", "INTEGRATIONS_"))}
    for key in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        env.pop(key, None)
        env.pop(key.upper(), None)
    nowhere = "http://127.0.0.1:9"
    env.update(
        PYTHONPATH=str(ROOT),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONDONTWRITEBYTECODE="1",
        PYTEST_ADDOPTS="-p no:cacheprovider",
        HTTP_PROXY=nowhere,
        HTTPS_PROXY=nowhere,
        ALL_PROXY=nowhere,
        NO_PROXY="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def command_for(unit: Unit, directory: Path) -> tuple[list[str], Path]:
    """Write what `unit` needs into `directory`; return the command and its working directory."""
    for name, code in unit.files.items():
        (directory / name).write_text(code, encoding="utf-8")
    if unit.kind == "script":
        (directory / "docblock.py").write_text(unit.code, encoding="utf-8")
        return [sys.executable, "docblock.py"], directory
    if unit.kind == "test":
        (directory / "test_docblock.py").write_text(unit.code, encoding="utf-8")
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_docblock.py"], directory
    script = directory / "docblock.sh"
    script.write_text(unit.code, encoding="utf-8")
    cwd = ROOT if "repo" in unit.blocks[0].tags else directory
    return ["bash", "-euo", "pipefail", str(script)], cwd


def start(unit: Unit, directory: Path) -> subprocess.Popen[str]:
    command, cwd = command_for(unit, directory)
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=isolated_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def shell_code(block: Block) -> str:
    """A shell block's commands: a console transcript's `$ ` lines (and their continuations)."""
    if block.language != "console":
        return block.code
    commands, continuing = [], False
    for line in block.code.splitlines():
        if line.startswith("$ ") or continuing:
            commands.append(line.removeprefix("$ "))
            continuing = line.endswith("\\")
    return "\n".join(commands) + "\n"
