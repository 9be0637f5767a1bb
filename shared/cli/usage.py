"""Bad input on the command line: one line on stderr naming the input, exit status 2, nothing written.

Every command parses its input at the edge (``shared.domain`` parsers raise ``ValueError`` subclasses with
one-line messages); what reaches a command's ``run`` as ``UsageError`` is printed by ``main`` the same way
for all of them. argparse's own errors (an unknown flag, ``--jobs abc``) take the same one-line form.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, TextIO

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `yes | head` reports for `yes`


class UsageError(ValueError):
    """Input a command cannot use; the message names the input and how to fix it, in one line."""


class ShoalArgumentParser(argparse.ArgumentParser):
    """argparse, but its errors are one line (``shoal plan: error: ...``) instead of usage plus a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: object) -> str:
    """The message with any line breaks folded, so a report stays a single line whatever the input held."""
    return " ".join(str(message).split("\n")).replace("\r", " ")


def fail(verb: str, message: object, err: TextIO | None = None) -> int:
    """Print ``shoal VERB: MESSAGE`` on one line and return the usage status."""
    print(f"shoal {verb}: {one_line(message)}", file=sys.stderr if err is None else err)
    return EXIT_USAGE


def quiet_broken_pipe() -> int:
    """stdout's reader went away (``shoal ... | head``): stop quietly, as ``cat`` does, with no traceback.

    Python flushes stdout again at exit; pointing it at /dev/null keeps that flush from raising too.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE
