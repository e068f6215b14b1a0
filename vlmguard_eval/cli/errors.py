"""The errors the command line prints in one line (the traceback with --debug), and how it prints them.

`UsageError`: a command line or grid config that cannot run as given (exit 2). `RunError`: a run that
cannot go on for a reason outside the command line, such as a hub download that failed (exit 1).
"""

from __future__ import annotations

import re


class CommandError(Exception):
    """An error whose message names what is wrong and the fix; printed in one line."""

    exit_code = 1

    def __init__(self, message: str, benchmark: str | None = None) -> None:
        super().__init__(message)
        # the benchmark whose task could not be built: its message names task options as Inspect's -T NAME=VALUE
        self.benchmark = benchmark


class UsageError(CommandError, ValueError):
    """A command line (or grid config) that cannot run as given; the message names the fix."""

    exit_code = 2


class RunError(CommandError, RuntimeError):
    """A run that cannot go on for a reason outside the command line (a hub download failed, another grid
    holds the log dir)."""


# a Rich tag: [bold], [/bold], [blue] (Inspect writes some messages for its console in this markup)
RICH_TAG = re.compile(r"\[(/?)([a-z][a-z0-9 _.#-]*)\]")


def one_line(message: object) -> str:
    """The message in one line, without Rich markup. Only tags that are closed somewhere ([bold]...[/bold])
    count as markup, so text in brackets (a list, a path) is kept."""
    text = str(message)
    closed = {m.group(2) for m in RICH_TAG.finditer(text) if m.group(1)}
    text = RICH_TAG.sub(lambda m: "" if m.group(2) in closed else m.group(0), text)
    return " ".join(text.split())
