"""A web page over a cost ledger: spend, savings, routes, latency, segments, decisions.

``langroute dashboard LEDGER`` serves it (and ``langroute serve`` at ``/dashboard``,
behind an admin key). :class:`Dashboard` computes what each panel shows, in SQL where
the ledger lives, with the numbers of ``langroute report`` and ``langroute monitor``;
:func:`create_dashboard_app` is the FastAPI app (the ``dashboard`` extra:
``pip install 'langroute[dashboard]'``) serving the page, its assets (shipped in this
package, nothing from a CDN) and one JSON endpoint per panel.

Example:
    >>> from langroute.costs import CostLedger
    >>> with Dashboard(CostLedger()) as dashboard:
    ...     dashboard.summary()["report"]["calls"]
    0
"""

from langroute.dashboard.app import DASHBOARD_EXTRA, create_dashboard_app, serve_dashboard
from langroute.dashboard.data import Dashboard, DashboardSettings

__all__ = [
    "DASHBOARD_EXTRA",
    "Dashboard",
    "DashboardSettings",
    "create_dashboard_app",
    "serve_dashboard",
]
