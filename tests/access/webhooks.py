"""Who may open Settings → Webhooks: admins manage; marketers read the list; sales nothing."""

from core.roles import ADMIN, MARKETER


def _webhook():
    from webhooks.models import Webhook

    webhook = Webhook.objects.create(name="Shop", url="https://shop.example/hook", events=["segment.entered"])
    return webhook


def _webhook_id():
    return {"webhook_id": _webhook().pk}


def _delivery_id():
    from webhooks.models import Delivery

    delivery = Delivery.objects.create(webhook=_webhook(), message_id="msg_1", type="webhook.test", body="{}",
                                       status="failed")
    return {"delivery_id": delivery.pk}


ACCESS = {
    "webhooks:list": {"roles": {MARKETER, ADMIN}},
    "webhooks:new": {"roles": {ADMIN}},
    "webhooks:detail": {"roles": {ADMIN}, "kwargs": _webhook_id},
    "webhooks:edit": {"roles": {ADMIN}, "kwargs": _webhook_id},
    "webhooks:rotate": {"roles": {ADMIN}, "method": "post", "kwargs": _webhook_id},
    "webhooks:test": {"roles": {ADMIN}, "method": "post", "kwargs": _webhook_id},
    "webhooks:toggle": {"roles": {ADMIN}, "method": "post", "kwargs": _webhook_id},
    "webhooks:delete": {"roles": {ADMIN}, "method": "post", "kwargs": _webhook_id},
    "webhooks:replay_failed": {"roles": {ADMIN}, "method": "post", "kwargs": _webhook_id},
    "webhooks:delivery": {"roles": {ADMIN}, "kwargs": _delivery_id},
    "webhooks:replay": {"roles": {ADMIN}, "method": "post", "kwargs": _delivery_id},
}
