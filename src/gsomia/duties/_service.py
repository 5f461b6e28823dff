"""The duties after release, as workflows over the node: each one decided by the pure core,
written in one transaction with its audit records, and told to partners over the exchange.
Every refusal is recorded (``NodeContext.refuse``) before it is raised. The duties depend on the
node's kernel and on the exchange's public face; the inbox hands them ``duty`` messages through
the handler they register (:meth:`Duties.receive`, wired where the node is built). One module per duty:

- ``_copies``: copies, translations, derivatives (Art. 4.3, 11, 14, 15);
- ``_labels``: reclassification and recall by the originator (Art. 6(g)), applied downstream
  by ``_receive`` and acknowledged back;
- ``_destruction``: return or destruction (Art. 6(h), 13);
- ``_disposal``: the queue of items to return or destroy once their purpose ended (Art. 6(h), 13);
- ``_incidents``: loss or compromise (Art. 17);
- ``_feedback``: a holder's sighting, question or proposed correction, to the originator;
- ``_termination``: the termination report (Art. 21.4);
- ``_visits``: visits (Art. 8; ``decide_read`` caps the visitor);
- ``_registers``: competent authorities and protection rules (Art. 2, 3).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gsomia.crypto.envelope import Opened
from gsomia.duties._copies import _Copies
from gsomia.duties._destruction import _Destruction
from gsomia.duties._disposal import _Disposal
from gsomia.duties._feedback import _Feedback
from gsomia.duties._incidents import _Incidents
from gsomia.duties._labels import _Labels
from gsomia.duties._messages import DUTY_KIND
from gsomia.duties._receive import apply_waiting, receive_duty
from gsomia.duties._registers import _Registers
from gsomia.duties._reviews import _Reviews
from gsomia.duties._termination import _Termination
from gsomia.duties._visits import _Visits
from gsomia.exchange import Batch

__all__ = ["DUTY_KIND", "Duties"]


class Duties(
    _Reviews,
    _Copies,
    _Labels,
    _Destruction,
    _Disposal,
    _Incidents,
    _Feedback,
    _Termination,
    _Visits,
    _Registers,
):
    """One node's duties after release (``node.duties``)."""

    def receive(self, opened: Opened, now: datetime, batch: Batch) -> dict[str, Any]:
        """The inbox's handler for ``duty`` messages: applied, passed on by a hub, acknowledged."""
        return receive_duty(self, opened, now, batch)

    def arriving(self, item_id: str, now: datetime, batch: Batch) -> None:
        """The inbox's arrival hook: a newer label change kept here applies to the item arriving."""
        apply_waiting(self, item_id, now, batch)
