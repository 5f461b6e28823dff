"""The duties after release (domain.md §1): copies, reclassification and recall, destruction,
loss or compromise, the termination report, visits and the registers, as workflows over a node."""

from gsomia.duties._service import DUTY_KIND, Duties

__all__ = ["DUTY_KIND", "Duties"]
