"""Opt-out keywords in inbound messages: STOP and friends suppress, START lifts, HELP answers.

A message is a keyword when, trimmed and without trailing punctuation, it is exactly one of the
words below, in any case ("Stop", "STOP!", " stop "); a sentence that merely contains "stop" is
not (the carriers' industry rules and Twilio's default handling read keywords the same way).

- STOP, UNSUBSCRIBE, CANCEL, END, QUIT: the sender opts out of the number they wrote to;
- STOPALL: the sender opts out of every number of ours;
- START, UNSTOP: the sender opts back in to the number they wrote to (and lifts a STOPALL);
- HELP, INFO: the sender gets the configured help text.
"""

from __future__ import annotations

import enum

from smsgate.outbox.suppressions import ALL_NUMBERS


class Action(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_OUT_ALL = "opt_out_all"
    OPT_IN = "opt_in"
    HELP = "help"


KEYWORDS: dict[str, Action] = {
    "STOP": Action.OPT_OUT,
    "UNSUBSCRIBE": Action.OPT_OUT,
    "CANCEL": Action.OPT_OUT,
    "END": Action.OPT_OUT,
    "QUIT": Action.OPT_OUT,
    "STOPALL": Action.OPT_OUT_ALL,
    "START": Action.OPT_IN,
    "UNSTOP": Action.OPT_IN,
    "HELP": Action.HELP,
    "INFO": Action.HELP,
}
_TRAILING = ".!?,;:'\")( \t\r\n"


def keyword(body: str) -> str | None:
    """The keyword ``body`` is, upper-cased, or None."""
    word = body.strip().rstrip(_TRAILING).lstrip("'\"( ").upper()
    return word if word in KEYWORDS else None


def classify(body: str) -> Action | None:
    """What an inbound ``body`` asks for, or None for an ordinary message."""
    word = keyword(body)
    return None if word is None else KEYWORDS[word]


def scope_of(action: Action, our_number: str) -> list[str]:
    """The suppression rows (our numbers) an opt-out adds or an opt-in lifts."""
    if action is Action.OPT_OUT_ALL:
        return [ALL_NUMBERS]
    if action is Action.OPT_IN:
        return [our_number, ALL_NUMBERS]
    return [our_number]
