"""The integration's admin template tags: the dashboard (admin home, a connection's page) and
the banner (every admin page). The numbers come from integrations.admin.dashboard."""

from __future__ import annotations

from django import template

from integrations.admin import dashboard

register = template.Library()


@register.inclusion_tag("admin/integrations/_banner.html", takes_context=True)
def integrations_banner(context):
    request = context.get("request")
    user = getattr(request, "user", None)
    return {"alerts": dashboard.alerts(user) if user is not None else []}


@register.inclusion_tag("admin/integrations/_dashboard.html", takes_context=True)
def integrations_dashboard(context, connection=None):
    """Every connection's panel (the admin home), or one connection's (its page). Shown to
    whoever may view connections."""
    request = context.get("request")
    user = getattr(request, "user", None)
    allowed = user is not None and user.has_perm("integrations.view_connection")
    if not allowed or (connection is not None and not connection.pk):
        return {"panels": None}
    ids = None if connection is None else [connection.pk]
    return {
        "panels": dashboard.panels(ids),
        "single": connection is not None,
        "can_view_postings": user.has_perm("integrations.view_posting"),
    }
