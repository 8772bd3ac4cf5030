"""Errors a user can act on: each carries one line of text and the process exit code."""
from __future__ import annotations

import difflib
from typing import Iterable


class HfTunerError(Exception):
    """A failure explained in one line. ``exit_code`` 2 means bad usage, config or data."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(HfTunerError):
    """The recipe, an override or a command-line value is wrong."""

    exit_code = 2


class DataError(HfTunerError):
    """The data set cannot be used as the recipe says (missing file, column, labels...)."""

    exit_code = 2


class HubError(HfTunerError):
    """Talking to the Hub failed (network, token, refusal)."""

    exit_code = 1


class TrialPruned(HfTunerError):
    """A sweep's pruner stopped this trial early (its main metric lagged the earlier trials'): the
    run folder ends with status `pruned`, not `failed`."""

    run_status = "pruned"


class Interruption(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a command at once: exit code 128 + the signal number (130, 143).
    A KeyboardInterrupt, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def listing(items: Iterable[str], limit: int = 12) -> str:
    """'a, b, c' for messages, cut after ``limit`` items."""
    items = [str(i) for i in items]
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
