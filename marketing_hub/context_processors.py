from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from core.roles import ADMIN, MARKETER, SALES, primary_role, roles_of
from leads.notification_views import bell_context

# label, url name, icon, roles that may see it (Admin sees everything), view-name prefixes that
# highlight the item
NAVIGATION = [
    ("Dashboard", "dashboard", "home", (MARKETER, SALES, ADMIN), ("dashboard",)),
    ("Contacts", "contacts:list", "users", (MARKETER, SALES, ADMIN), ("contacts:list", "contacts:card", "contacts:import", "contacts:bulk")),
    ("Tags", "contacts:tags", "tag", (MARKETER, ADMIN), ("contacts:tag",)),
    ("Segments", "segments:list", "filter", (MARKETER, ADMIN), ("segments:",)),
    ("Rules", "automation:rules", "zap", (MARKETER, ADMIN), ("automation:rule", "automation:matri", "automation:adhoc", "automation:event")),
    ("Hot leads", "leads:hot", "flame", (SALES, MARKETER, ADMIN), ("leads:hot", "leads:lead", "leads:model")),
    ("Funnels", "leads:funnels", "funnel", (MARKETER, SALES, ADMIN), ("leads:funnel",)),
    ("Loyalty", "loyalty:programs", "award", (MARKETER, ADMIN), ("loyalty:",)),
    ("Jobs", "jobs:list", "activity", (MARKETER, ADMIN), ("jobs:",)),
    ("Settings", "settings", "settings", (ADMIN,), ("settings", "leads:settings", "marketing_hub:")),
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
    return {"nav_items": items, "user_roles": user_roles, "user_role": primary_role(user),
            # rendered with the page (the template calls it only where the bell is drawn): one
            # request per page view fewer than fetching it on load; it polls after that
            "notification_bell": lambda: bell_context(user)}
