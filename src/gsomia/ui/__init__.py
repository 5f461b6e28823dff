"""The dashboard each node serves at ``/ui``: agreements, who may share what, items, flows, audit, tracks.

Server-rendered HTML (Jinja2) with small vanilla scripts and SVG; every asset ships in the
package, nothing is fetched from elsewhere at run time.
"""

from gsomia.ui._views import SESSION_COOKIE, ui_router

__all__ = ["SESSION_COOKIE", "ui_router"]
