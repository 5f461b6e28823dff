"""The labels of the shipped scenario: every flow at every step of the 2014-2023 story, with the
recipient's alternative label where the release was allowed."""

from __future__ import annotations

from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import SecurityLabel
from gsomia.demo.scenario import replay_history


def scenario_labels(catalogue: Catalogue) -> list[SecurityLabel]:
    found: dict[str, SecurityLabel] = {}
    for step in replay_history(catalogue):
        for flow, decision in step.decisions:
            label = flow.request(catalogue, step.at).label
            found[repr(label)] = label
            if decision.marking is not None:
                marked = label.with_alternative(decision.marking.alternative_label())
                found[repr(marked)] = marked
    return list(found.values())
