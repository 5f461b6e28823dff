"""The dashboard each node serves under its own path (``/ui`` leads there): agreements, who may share
what, items, flows, audit, tracks.

Server-rendered HTML (Jinja2) with small vanilla scripts and SVG; every asset ships in the
package, nothing is fetched from elsewhere at run time.
"""

from gsomia._web import DashboardScope, dashboard_scope
from gsomia.ui._views import ui_router

__all__ = ["DashboardScope", "dashboard_scope", "ui_router"]
