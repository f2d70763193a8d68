"""Every option of the vae_zoo commands says what it does and shows its default; no RST markup."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("torch")

from vae_zoo import train, zoo
from vae_zoo.datasets import __main__ as datasets_cli
from vae_zoo.study import __main__ as study_cli

PARSERS = {
    "train": train.build_parser,
    "zoo": zoo.build_parser,
    "datasets": datasets_cli.build_parser,
    "study": study_cli.build_parser,
}


@pytest.mark.parametrize("name", PARSERS)
def test_every_option_has_help_and_its_default(name):
    parser: argparse.ArgumentParser = PARSERS[name]()
    text = parser.format_help()
    assert "``" not in text and ":func:" not in text
    formatter = parser._get_formatter()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name}: {action.option_strings} has no help text"
        default = action.default
        if default is None or default is False or default == []:
            continue
        shown = formatter._get_help_string(action) % {"default": default}
        assert "default" in shown, f"{name}: {action.option_strings} hides its default {default!r}"
