"""Errors that end a trial with status "failed" and a reason meant for the user."""

from __future__ import annotations


class TrialError(Exception):
    """A problem with the trial's configuration or inputs; its message is the reason."""


class ParameterError(TrialError):
    """A hyperparameter is unknown, of the wrong type or out of range."""


class SettingsError(TrialError):
    """An environment variable or task setting is missing or malformed."""


class RendezvousError(TrialError):
    """The workers of the trial could not find each other."""
