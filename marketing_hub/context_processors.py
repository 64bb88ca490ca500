from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from core.roles import ADMIN, MARKETER, SALES, primary_role, role_label, roles_of
from leads.notification_views import bell_context
from marketing_hub.middleware import saved_language

# label, url name, icon, roles that may see it (Admin sees everything), view-name prefixes that
# highlight the item
NAVIGATION = [
    (_("Dashboard"), "dashboard", "home", (MARKETER, SALES, ADMIN), ("dashboard",)),
    (_("Contacts"), "contacts:list", "users", (MARKETER, SALES, ADMIN), ("contacts:list", "contacts:card", "contacts:import", "contacts:bulk")),
    (_("Tags"), "contacts:tags", "tag", (MARKETER, ADMIN), ("contacts:tag",)),
    (_("Segments"), "segments:list", "filter", (MARKETER, ADMIN), ("segments:",)),
    (_("Rules"), "automation:rules", "zap", (MARKETER, ADMIN), ("automation:rule", "automation:matri", "automation:adhoc", "automation:event")),
    (_("Hot leads"), "leads:hot", "flame", (SALES, MARKETER, ADMIN), ("leads:hot", "leads:lead", "leads:model")),
    (_("Funnels"), "leads:funnels", "funnel", (MARKETER, SALES, ADMIN), ("leads:funnel",)),
    (_("Loyalty"), "loyalty:programs", "award", (MARKETER, ADMIN), ("loyalty:",)),
    (_("Jobs"), "jobs:list", "activity", (MARKETER, ADMIN), ("jobs:",)),
    (_("Settings"), "settings", "settings", (ADMIN,), ("settings", "leads:settings", "marketing_hub:")),
]


def navigation(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    user_roles = roles_of(user)
    current = request.resolver_match.view_name if request.resolver_match else ""
    items = []
    for label, url_name, icon, allowed, prefixes in NAVIGATION:
        if ADMIN not in user_roles and not user_roles.intersection(allowed):
            continue
        url = reverse(url_name)
        active = current == url_name or current.startswith(prefixes)
        items.append({"label": label, "url": url, "icon": icon, "active": active})
    role = primary_role(user)
    return {"nav_items": items, "user_roles": user_roles, "user_role": role, "user_role_label": role_label(role),
            "saved_language": saved_language(request),
            # rendered with the page (the template calls it only where the bell is drawn): one
            # request per page view fewer than fetching it on load; it polls after that
            "notification_bell": lambda: bell_context(user)}
