"""The user's argv with ``${trialParameters.NAME}`` placeholders filled in (Katib's syntax).

Every value goes into exactly one argv item and no shell ever sees it, so a categorical value
``$(touch /tmp/x)`` reaches the program as that literal text. An item that names a parameter
absent from the trial's parameters (an inactive conditional parameter) is dropped whole:
``--beta1=${trialParameters.beta1}`` disappears when beta1 is inactive.
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


def render(argv: Sequence[str], params: Mapping[str, Any]) -> list[str]:
    """Substitute the parameters into the command.

    Args:
        argv: the command as the user wrote it (exec form).
        params: the trial's active hyperparameters.

    Returns:
        The argv to execute; items naming an absent parameter are left out.

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
        # A function as the replacement: the value is inserted as is, backslashes included.
        rendered.append(contract.PLACEHOLDER.sub(lambda m: format_value(params[m.group(1)]), item))
    if not rendered:
        raise SettingsError(f"the command is empty once the items of inactive parameters are dropped: {list(argv)!r}")
    return rendered


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
