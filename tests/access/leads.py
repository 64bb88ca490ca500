"""Who may open the leads pages (hot leads, temperature settings, funnels, the card panel)."""

from core.roles import ADMIN, MARKETER, SALES


def _contact():
    from tests.factories import ContactFactory

    return {"contact_id": ContactFactory().pk}


def _funnel():
    from tests.leads.factories import funnel_with_stages

    return {"funnel_id": funnel_with_stages(name="Access funnel").pk}


ACCESS = {
    "leads:hot": {"roles": {SALES, MARKETER, ADMIN}},
    "leads:lead_claim": {"roles": {SALES, MARKETER, ADMIN}, "method": "post", "kwargs": _contact},
    "leads:lead_release": {"roles": {SALES, MARKETER, ADMIN}, "method": "post", "kwargs": _contact},
    "leads:lead_assign": {"roles": {MARKETER, ADMIN}, "method": "post", "kwargs": _contact},
    "leads:lead_update": {"roles": {SALES, MARKETER, ADMIN}, "method": "post", "kwargs": _contact},
    "leads:settings": {"roles": {ADMIN}},
    "leads:settings_preview": {"roles": {ADMIN}},
    "leads:card_panel": {"roles": {SALES, MARKETER, ADMIN}, "kwargs": _contact},
    "leads:card_stage": {"roles": {SALES, MARKETER, ADMIN}, "method": "post", "kwargs": _contact},
    "leads:funnels": {"roles": {SALES, MARKETER, ADMIN}},
    "leads:funnel_bulk_move": {"roles": {MARKETER, ADMIN}},
    "leads:funnel_detail": {"roles": {SALES, MARKETER, ADMIN}, "kwargs": _funnel},
    "leads:funnel_edit": {"roles": {MARKETER, ADMIN}, "kwargs": _funnel},
    "leads:funnel_delete": {"roles": {MARKETER, ADMIN}, "method": "post", "kwargs": _funnel},
    "leads:model_check": {"roles": {MARKETER, ADMIN}},
}

# Hot-lead alerts: every role has its own notifications and settings.
ACCESS.update({
    "leads:hot_seen": {"roles": {SALES, MARKETER, ADMIN}, "method": "post"},
    "leads:notifications": {"roles": {SALES, MARKETER, ADMIN}},
    "leads:notification_bell": {"roles": {SALES, MARKETER, ADMIN}},
    "leads:notification_read": {"roles": {SALES, MARKETER, ADMIN}, "method": "post",
                                "kwargs": lambda: {"notification_id": 999999}},
    "leads:notifications_read_all": {"roles": {SALES, MARKETER, ADMIN}, "method": "post"},
    "leads:alert_settings": {"roles": {SALES, MARKETER, ADMIN}},
})
# The emails' unsubscribe link works without signing in (a signed token names the user).
PUBLIC = {"leads:alerts_unsubscribe"}
