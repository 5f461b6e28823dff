"""``gsomia samples``: the example files the README's commands use, written where you are.

A new user following the README needs a label, a payload, a what-if events file and a partner's own
XML-SPIF before the commands that read them; this writes them (refusing to overwrite a file of the
same name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gsomia._files import write_private
from gsomia.cli._common import console, guard
from gsomia.errors import ConfigError, InvalidInputError

# A KOR item the README ingests at JPN (received under GSOMIA) and at KOR's own node, then releases
# directly to JPN and through the US hub under TISA: releasable to both, within TISA's scope.
LABEL = {
    "originator": "KOR",
    "classification": "군사II급비밀",
    "releasable_to": ["JPN", "USA"],
    "purpose": "threat-assessment",
    "topics": ["dprk-missile"],
    "created": "2024-02-01T09:00:00+09:00",
}
TRACK = {
    "track_id": "kor-2019-08-24-1",
    "launch": {"lat": 39.7, "lon": 127.5, "time": "2019-08-24T06:45:00+09:00"},
    "impact": {"lat": 40.1, "lon": 130.6, "time": "2019-08-24T06:52:00+09:00"},
    "missile_class": "SRBM",
    "apogee_km": 97,
    "range_km": 380,
}
# A KOR report in portions (issue 20 §2): its body is for the USA only, its tearline may go to JPN.
REPORT = [
    {
        "id": "body",
        "label": {**LABEL, "releasable_to": ["USA"]},
        "payload": {"text": "the source and the sensor behind the 24 August launch report"},
    },
    {
        "id": "tearline",
        "label": {**LABEL, "classification": "군사III급비밀"},
        "payload": {"text": "an SRBM launched at 06:45 KST from near Sondok; impact in the East Sea"},
    },
]
EVENTS = """\
# A what-if: the agreement ended on 2021-06-01 (hypothetical; not on the public record).
[[events]]
id = "end-2021"
kind = "terminated"
at = 2021-06-01
party = "KOR"
reference = "hypothetical: KOR ends the agreement"
"""
# A partner's own security policy file (no gsomia extension), for ``gsomia spif import``.
GBR_POLICY = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- An example of a partner's own policy file, as its labelling tool might write it: illustrative
     (three levels of the UK's classification scheme), not a policy the UK publishes. -->
<spif:SPIF xmlns:spif="http://www.xmlspif.org/spif" schemaVersion="2.1" version="1"
           creationDate="20240101000000Z" originatorDN="CN=example,O=GBR" keyIdentifier="00"
           privilegeId="1.3.26.0.4774.5.24.1" rbacId="1.3.26.0.4774.5.24.1">
  <spif:securityPolicyId name="UK-EXAMPLE" id="2.25.322854759195865563864003977848177070901"/>
  <spif:securityClassifications>
    <spif:securityClassification name="OFFICIAL" lacv="1" hierarchy="1">
      <spif:markingData phrase="Official" xml:lang="en">
        <spif:code>pageTopBottom</spif:code>
      </spif:markingData>
    </spif:securityClassification>
    <spif:securityClassification name="SECRET" lacv="2" hierarchy="2">
      <spif:markingData phrase="Secret" xml:lang="en">
        <spif:code>pageTopBottom</spif:code>
      </spif:markingData>
    </spif:securityClassification>
    <spif:securityClassification name="TOP SECRET" lacv="3" hierarchy="3">
      <spif:markingData phrase="Top Secret" xml:lang="en">
        <spif:code>pageTopBottom</spif:code>
      </spif:markingData>
    </spif:securityClassification>
  </spif:securityClassifications>
</spif:SPIF>
"""
SAMPLES = {
    "label.json": json.dumps(LABEL, ensure_ascii=False, indent=2) + "\n",
    "track.json": json.dumps(TRACK, indent=2) + "\n",
    "report.json": json.dumps(REPORT, ensure_ascii=False, indent=2) + "\n",
    "my-events.toml": EVENTS,
    "gbr-policy.xml": GBR_POLICY,
}


@guard
def samples(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write them.")] = Path(),
) -> None:
    """Write label.json, track.json, report.json, my-events.toml and gbr-policy.xml: the README's
    example files."""
    for name, text in SAMPLES.items():
        try:
            write_private(directory / name, text.encode(), exclusive=True)
        except ConfigError as exc:
            raise InvalidInputError(str(exc)) from exc
        console().print(f"wrote {directory / name}")
