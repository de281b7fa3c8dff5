"""`pyzdb --help` and `--version`: every option says what it does and shows its default."""
import argparse
import subprocess
import sys

from pyzdb import __version__
from pyzdb.cli.arguments import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_option_of_every_command_has_help_and_shows_its_default():
    for name, sub in _subparsers(build_parser()).items():
        text = sub.format_help()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or name == "bench":
                continue
            assert action.help, f"pyzdb {name} {action.option_strings or action.dest} has no help text"
            if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
                shown = str(action.default)
                assert shown in " ".join(text.split()), f"pyzdb {name} --help does not show {action.dest}'s default"


def test_lock_wait_is_explained_in_help():
    help_text = " ".join(_subparsers(build_parser())["serve"].format_help().split())
    assert "--lock-wait" in help_text and "LockTimeout" in help_text and "(default 20.0)" in help_text


def test_version():
    out = subprocess.run([sys.executable, "-m", "pyzdb", "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == f"pyzdb {__version__}"
