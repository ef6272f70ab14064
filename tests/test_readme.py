"""The README's commands name modules and flags that exist (documentation cannot drift)."""

import argparse
import importlib
import re
import shlex

import pytest

from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
COMMANDS = [line.strip() for line in README.splitlines() if line.strip().startswith("python -m ")]


def test_readme_has_the_commands():
    modules = {shlex.split(c)[2] for c in COMMANDS}
    assert {"edge.search", "edge.verify", "edge.gallery"} <= modules
    assert "make test" in README and "make train export" in README


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[2].startswith("edge.")])
def test_every_documented_edge_flag_exists(command):
    words = shlex.split(command.split("#")[0])
    module = importlib.import_module(words[2])
    if not hasattr(module, "build_parser"):  # a package run with -m: its CLI is __main__
        module = importlib.import_module(words[2] + ".__main__")
    parser = module.build_parser()
    known = set()
    actions = list(parser._actions)
    for action in parser._actions:  # sub-commands (edge.gallery) carry their own flags
        if isinstance(action, argparse._SubParsersAction):
            for sub_parser in action.choices.values():
                actions += sub_parser._actions
    for action in actions:
        known.update(action.option_strings)
    for flag in (w for w in words[3:] if w.startswith("--")):
        assert flag in known, f"README uses {flag} with {words[2]}, which does not define it"


def test_make_targets_in_readme_exist():
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in set(re.findall(r"(?:`|^)make ([\w-]+)", README, re.M)):
        assert re.search(rf"^{target}:", makefile, re.M), f"README mentions make {target}"
