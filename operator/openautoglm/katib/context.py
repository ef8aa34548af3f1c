"""What every part of the trial template needs to know while it is converted."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from openautoglm.katib.findings import Findings


@dataclasses.dataclass(frozen=True)
class TrialContext:
    """The findings, and what the trial template declared before its trialSpec."""

    findings: Findings
    #: trialParameters name -> the Katib parameter it references, for those that map.
    references: Mapping[str, str]
    #: Every name declared in trialTemplate.trialParameters (mapped or not).
    declared: frozenset[Any]
    #: trialParameters name -> where it is reported, for those whose parameter is not converted.
    unconverted: Mapping[Any, str]
    #: trialTemplate.primaryContainerName: the container that runs the program.
    primary: str | None
    #: trialSpec.metadata's labels and annotations, which go on the trial pods.
    pod_meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
