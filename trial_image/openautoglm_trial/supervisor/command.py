"""The user's argv with ``${trialParameters.NAME}`` placeholders filled in (Katib's syntax).

Every value goes into exactly one argv item and no shell ever sees it, so a categorical value
``$(touch /tmp/x)`` reaches the program as that literal text. An item that names a parameter
absent from the trial's parameters (an inactive conditional parameter) is dropped whole:
``--beta1=${trialParameters.beta1}`` disappears when beta1 is inactive. ``${trial.checkpointDir}``
becomes the trial's checkpoint directory the same way, and its item is dropped whole when the job
has no ``trial.checkpoint``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .. import contract
from ..errors import SettingsError

log = logging.getLogger(__name__)

#: What a placeholder's name may be: :data:`openautoglm_trial.contract.PLACEHOLDER` matches any
#: name, so that a typo is reported here.
NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.-]+$")
#: Either placeholder, found in one pass: a value is inserted once and never searched again, so
#: a parameter whose value is the text ``${trial.checkpointDir}`` stays that text.
ANY_PLACEHOLDER: Final = re.compile(f"{contract.PLACEHOLDER.pattern}|{re.escape(contract.CHECKPOINT_PLACEHOLDER)}")


def render(argv: Sequence[str], params: Mapping[str, Any], checkpoint_dir: str | None = None) -> list[str]:
    """Substitute the parameters (and the checkpoint directory) into the command.

    Args:
        argv: the command as the user wrote it (exec form).
        params: the trial's active hyperparameters.
        checkpoint_dir: the trial's checkpoint directory; None: the job has none.

    Returns:
        The argv to execute; items naming an absent parameter, or the checkpoint directory of a
        trial without one, are left out.

    Raises:
        SettingsError: a placeholder has no valid parameter name, or nothing is left to run.
    """
    rendered: list[str] = []
    for item in argv:
        names = contract.placeholders(item)
        for name in names:
            if not NAME_RE.match(name):
                raise SettingsError(
                    f"command item {item!r}: ${{trialParameters.{name}}} does not "
                    f"name a parameter (letters, digits, _, - and . only)"
                )
        absent = [name for name in names if name not in params]
        if absent:
            log.info(
                "dropping command item %r: parameter %s not active in this trial",
                item,
                ", ".join(repr(n) for n in absent),
            )
            continue
        if checkpoint_dir is None and contract.CHECKPOINT_PLACEHOLDER in item:
            log.info("dropping command item %r: the job has no trial.checkpoint", item)
            continue
        rendered.append(ANY_PLACEHOLDER.sub(lambda m: _value(m, params, checkpoint_dir), item))
    if not rendered:
        raise SettingsError(f"the command is empty once the items of inactive parameters are dropped: {list(argv)!r}")
    return rendered


def _value(match: re.Match[str], params: Mapping[str, Any], checkpoint_dir: str | None) -> str:
    """What one placeholder stands for (a function as ``sub``'s replacement: the value is
    inserted as is, backslashes included)."""
    name = match.group(1)
    if name is None:  # the checkpoint placeholder: its item was dropped when there is none
        assert checkpoint_dir is not None
        return checkpoint_dir
    return format_value(params[name])


def format_value(value: Any) -> str:
    """One parameter value as command-line text.

    Args:
        value: a JSON value from the trial's parameters.

    Returns:
        str as is, bool ``true``/``false``, int in decimal, float in its shortest round-trip
        form (``0.001``, ``1e-05``), null ``null``, anything else as compact JSON.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))
