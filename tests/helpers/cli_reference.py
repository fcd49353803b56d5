"""The reference section of docs/cli.md: every `flask integrations` command's own `--help`.

    python -m tests.helpers.cli_reference            rewrite the section in docs/cli.md
    python -m tests.helpers.cli_reference --check    exit 1 when the section is out of date
    python -m tests.helpers.cli_reference --print    print the section as it should be

The help texts come from a tiny app (in-memory SQLite) run through Flask's own command line, at
80 columns, so they read exactly as `flask integrations NAME --help` prints them. The prose of
docs/cli.md around the markers is hand-written and kept as it is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "cli.md"
COMMAND = "python -m tests.helpers.cli_reference"
BEGIN = "<!-- generated: flask integrations --help -->"
END = "<!-- end generated -->"
WIDTH = 80


def _help_texts() -> dict[str, str]:
    """{"": the group's --help, name: each command's --help}, as the flask command prints them."""
    from click.testing import CliRunner
    from cryptography.fernet import Fernet
    from flask import Flask
    from flask.cli import FlaskGroup
    from flask_sqlalchemy import SQLAlchemy

    from flask_integrations import Integrations

    app = Flask("cli_reference")
    app.config.update(
        SECRET_KEY="reference",
        SQLALCHEMY_DATABASE_URI="sqlite://",
        INTEGRATIONS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()],
    )
    Integrations(app, db=SQLAlchemy(app))
    flask = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    runner = CliRunner()

    def help_of(*args: str) -> str:
        done = runner.invoke(flask, [*args, "--help"], prog_name="flask", terminal_width=WIDTH)
        assert done.exit_code == 0, done.output
        return done.output

    group = app.cli.commands["integrations"]
    texts = {"": help_of("integrations")}
    for name in sorted(group.commands):
        texts[name] = help_of("integrations", name)
    return texts


def _summary(help_text: str) -> str:
    """The first paragraph of a command's description, on one line."""
    paragraphs = help_text.split("\n\n")
    return " ".join(paragraphs[1].split()) if len(paragraphs) > 1 else ""


def _usage(help_text: str) -> str:
    return " ".join(help_text.split("\n\n")[0].split()).removeprefix("Usage: ")


def _anchor(name: str) -> str:
    return f"flask-integrations-{name}---help"


def render_here() -> str:
    """The section (markers included), built in this process."""
    texts = _help_texts()
    names = [name for name in texts if name]
    lines = [
        BEGIN,
        f"<!-- written by `{COMMAND}` from each command's --help: do not edit by hand -->",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for name in names:
        usage = _usage(texts[name]).removeprefix("flask integrations ").replace(" [OPTIONS]", "")
        summary = _summary(texts[name]).replace("|", r"\|")
        lines.append(f"| [`{usage}`](#{_anchor(name)}) | {summary} |")
    for name in names:
        lines += ["", f"### `flask integrations {name} --help`", "", "```text", texts[name].rstrip(), "```"]
    lines.append(END)
    return "\n".join(lines) + "\n"


def render() -> str:
    """The section as it should be, built in a fresh process (one app per process)."""
    from tests.helpers.docblocks import isolated_env

    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.cli_reference", "--print"],
        cwd=ROOT,
        env=isolated_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def section(text: str) -> str:
    """The generated section of a page's text, markers included ("" when it has none)."""
    found = re.search(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", text, re.S)
    return found[0] if found else ""


def command_names(section_text: str) -> list[str]:
    return re.findall(r"^### `flask integrations (\S+) --help`$", section_text, re.M)


def help_texts(section_text: str) -> dict[str, str]:
    """{command name: its part of the section (heading and --help text)}."""
    pieces = re.split(r"^(?=### )", section_text, flags=re.M)
    return {names[0]: piece for piece in pieces if (names := command_names(piece))}


def differing_commands(current: str, generated: str) -> list[str]:
    """The commands whose reference differs between two renderings (added, removed or changed)."""
    old, new = help_texts(current), help_texts(generated)
    differing = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
    return differing or ["none: the table or the text around it"]


def main(argv: list[str]) -> int:
    generated = render_here()
    if "--print" in argv:
        sys.stdout.write(generated)
        return 0
    text = PAGE.read_text(encoding="utf-8")
    current = section(text)
    if not current:
        print(f"{PAGE}: no `{BEGIN}` ... `{END}` section", file=sys.stderr)
        return 1
    if "--check" in argv:
        if current != generated:
            print(f"{PAGE} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text.replace(current, generated), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
