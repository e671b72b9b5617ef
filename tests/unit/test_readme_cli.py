"""The README's AWS path and the CLI agree: every `modelops ...` command that "Deploying to AWS"
shows parses with the real parser, and every flag it uses is one its subcommand's --help lists
(exactly: argparse would also accept an abbreviation)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from modelops_cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def aws_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Deploying to AWS\n")
    return text[start : text.index("\n## ", start + 1)]


def readme_commands() -> list[str]:
    section = aws_section()
    commands = set(re.findall(r"`(modelops [^`]+)`", section.replace("\n   ", " ").replace("\n  ", " ")))
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        commands.update(line.strip() for line in block.splitlines() if line.strip().startswith("modelops "))
    return sorted(commands)


def subparser_path(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The deepest subcommand parser `argv` reaches, and the subcommand names on the way."""
    parser, path = build_parser(), []
    for token in argv:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if actions and token in actions[0].choices:
            parser = actions[0].choices[token]
            path.append(token)
    return parser, path


def test_the_aws_path_shows_every_step_the_cli_needs():
    commands = readme_commands()
    shown = {" ".join(subparser_path(shlex.split(c)[1:])[1]) for c in commands}
    assert {"bootstrap", "model put", "start", "status", "history", "rollback"} <= shown, shown
    # numbered in the order a new user needs them, each step showing its command
    section = aws_section()
    steps = [
        ("1. **Deploy the stack**", "sam build && sam deploy --guided"),
        ("2. **Build the training image**", "modelops --stack modelops bootstrap"),
        ("3. **Give the workflow access to the cluster", "aws eks create-access-entry"),
        ("4. **Add the first model**", "modelops --stack modelops model put models/churn.yaml"),
        ("5. **Start the first run**", "modelops --stack modelops start --model churn"),
    ]
    positions = [section.index(title) for title, _ in steps] + [len(section)]
    for (title, command), begin, end in zip(steps, positions, positions[1:], strict=False):
        assert begin < end and command in section[begin:end], title
    assert "kubectl apply" in section[positions[2] : positions[3]]


@pytest.mark.parametrize("command", readme_commands())
def test_each_readme_command_parses_with_flags_its_help_lists(command):
    argv = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"README command does not parse: {command}")
    assert callable(getattr(args, "func", None)), command
    parser, _ = subparser_path(argv)
    helptext = build_parser().format_help() + parser.format_help()
    for flag in (token.split("=")[0] for token in argv if token.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helptext), (
            f"{flag} of `{command}` not in --help"
        )
