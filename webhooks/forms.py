"""Forms of Settings → Webhooks. They validate with the services' checks (the same as the API's);
the views write."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from leads.models import Funnel
from loyalty.models import Program
from segments.models import Segment
from webhooks.models import EVENT_LABELS, SUBSCRIBABLE_TYPES, Delivery, Webhook
from webhooks.services import WebhookError, validate_webhook


def _choices(model: Any) -> list[tuple[int, str]]:
    return list(model.objects.order_by("name").values_list("pk", "name")[:500])


class WebhookForm(forms.Form):
    url = forms.CharField(label=_("URL"), max_length=2000, widget=forms.URLInput(attrs={"placeholder": "https://shop.example/hooks/marketing-hub"}),
                          help_text=_("Called with POST. It must be reachable from this server on a public address."))
    description = forms.CharField(label=_("Description"), max_length=500, required=False,
                                  widget=forms.TextInput(attrs={"placeholder": _("Shop: discount codes for the interested")}))
    # the label is the event type's words; the template shows the type itself beside them
    events = forms.MultipleChoiceField(choices=[(kind, EVENT_LABELS[kind]) for kind in SUBSCRIBABLE_TYPES],
                                       widget=forms.CheckboxSelectMultiple, label=_("Events"),
                                       help_text=_("Rules with a “Send to webhook” action reach it whatever is ticked here."))
    segment_ids = forms.TypedMultipleChoiceField(coerce=int, required=False, label=_("Only these segments"),
                                                 widget=forms.CheckboxSelectMultiple)
    program_ids = forms.TypedMultipleChoiceField(coerce=int, required=False, label=_("Only these loyalty programmes"),
                                                 widget=forms.CheckboxSelectMultiple)
    funnel_ids = forms.TypedMultipleChoiceField(coerce=int, required=False, label=_("Only these funnels"),
                                                widget=forms.CheckboxSelectMultiple)
    active = forms.BooleanField(required=False, initial=True, label=_("On"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, model in (("segment_ids", Segment), ("program_ids", Program), ("funnel_ids", Funnel)):
            field = self.fields[name]
            assert isinstance(field, forms.TypedMultipleChoiceField)
            field.choices = _choices(model)
        self.cleaned_webhook: dict | None = None

    @classmethod
    def initial_from(cls, webhook: Webhook) -> dict:
        return {"url": webhook.url, "description": webhook.description, "events": list(webhook.events),
                "segment_ids": list(webhook.segment_ids), "program_ids": list(webhook.program_ids),
                "funnel_ids": list(webhook.funnel_ids), "active": webhook.active}

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        payload = {
            "url": data.get("url", ""), "description": data.get("description", ""), "events": data.get("events", []),
            "active": bool(data.get("active")),
            "filter": {"segment_ids": data.get("segment_ids") or [], "programs": data.get("program_ids") or [],
                       "funnels": data.get("funnel_ids") or []},
        }
        # With field errors already, still check what is there (the URL's reachability above all).
        partial = bool(self.errors)
        if partial:
            payload = {key: value for key, value in payload.items() if key in data or key == "filter"}
        try:
            cleaned = validate_webhook(payload, partial=partial)
            if not partial:
                self.cleaned_webhook = cleaned
        except WebhookError as exc:
            fields = {"filter.segment_ids": "segment_ids", "filter.programs": "program_ids", "filter.funnels": "funnel_ids"}
            for path, message in exc.errors:
                field = next((name for prefix, name in fields.items() if path.startswith(prefix)), path.split(".")[0])
                self.add_error(field if field in self.fields else None, f"{message[:1].upper()}{message[1:]}.")
        return data


class DeliveryFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", _("Any status")), *Delivery.Status.choices], required=False)
    type = forms.ChoiceField(choices=[("", _("Any type"))] + [(kind, kind) for kind in EVENT_LABELS], required=False)


class ReplayFailedForm(forms.Form):
    since = forms.DateTimeField(label=_("Failed since"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"])

    @staticmethod
    def default_since() -> str:
        return timezone.localtime(timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
