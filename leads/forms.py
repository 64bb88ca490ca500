from __future__ import annotations

from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact
from leads.api import funnel_errors
from leads.models import AlertSettings, Funnel, Stage, TemperatureSettings
from leads.temperature import THRESHOLD_LIMIT, thresholds_errors


class ThresholdsForm(forms.Form):
    warm = forms.IntegerField(
        label=_("Warm from"), min_value=0, max_value=THRESHOLD_LIMIT,
        help_text=_("Contacts with at least this score are warm."),
    )
    hot = forms.IntegerField(
        label=_("Hot from"), min_value=1, max_value=THRESHOLD_LIMIT,
        help_text=_("Contacts with at least this score are hot (and go to sales)."),
    )
    decay_enabled = forms.BooleanField(
        label=_("Decay lead scores"), required=False,
        help_text=_("Points lose half their value every half-life (a scheduled job writes the decay to the score ledger)."),
    )
    decay_half_life_days = forms.IntegerField(label=_("Score half-life (days)"), min_value=1, max_value=3650)
    tag_decay_enabled = forms.BooleanField(
        label=_("Decay tag scores"), required=False,
        help_text=_("Tags with a half-life (set on the tag) lose half their score every half-life."),
    )

    def clean(self):
        cleaned = super().clean()
        warm, hot = cleaned.get("warm"), cleaned.get("hot")
        if warm is not None and hot is not None:
            for error in thresholds_errors(warm, hot):
                self.add_error(error["field"], error["message"])
        return cleaned

    @classmethod
    def initial_from(cls, thresholds: TemperatureSettings) -> dict:
        return {
            "warm": thresholds.warm,
            "hot": thresholds.hot,
            "decay_enabled": thresholds.decay_enabled,
            "decay_half_life_days": thresholds.decay_half_life_days,
            "tag_decay_enabled": thresholds.tag_decay_enabled,
        }


class FunnelForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    description = forms.CharField(label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2}))
    stages = forms.CharField(
        label=_("Stages"),
        widget=forms.Textarea(attrs={"rows": 6, "placeholder": _("New\nEngaged\nMQL\nSQL\nCustomer")}),
        help_text=_("One stage per line, in order. Stages are matched by name (ignoring case), so reordering keeps their contacts."),
    )

    def __init__(self, *args, funnel: Funnel | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.funnel = funnel

    def clean(self):
        cleaned = super().clean()
        stages = [line.strip() for line in (cleaned.get("stages") or "").splitlines() if line.strip()]
        cleaned["stage_list"] = stages
        if "name" in cleaned:
            for error in funnel_errors(cleaned["name"], stages, exclude_pk=self.funnel.pk if self.funnel else None):
                field = "stages" if error["field"].startswith("stages") else error["field"]
                self.add_error(field, error["message"])
        return cleaned


class StageMoveForm(forms.Form):
    stage = forms.ModelChoiceField(label=_("Stage"), queryset=Stage.objects.select_related("funnel"), empty_label=None)


class LeadUpdateForm(forms.Form):
    status = forms.ChoiceField(label=_("Status"), choices=Contact.LeadStatus.choices)
    note = forms.CharField(label=_("Note"), required=False, max_length=5000)


class BulkMoveForm(forms.Form):
    stage = forms.ModelChoiceField(
        queryset=Stage.objects.select_related("funnel").order_by("funnel__name", "position"),
        label=_("Move to stage"),
        empty_label=None,
    )
    ids = forms.CharField(required=False, widget=forms.HiddenInput)
    query = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["stage"].label_from_instance = lambda stage: f"{stage.funnel.name} → {stage.name}"

    def clean_ids(self) -> list[int]:
        raw = self.cleaned_data.get("ids") or ""
        ids: list[int] = []
        for part in raw.replace(",", " ").split():
            if not part.isdigit():
                raise forms.ValidationError(gettext("“%(value)s” is not a contact id.") % {"value": part})
            ids.append(int(part))
        if len(ids) > 100_000:
            raise forms.ValidationError(gettext("Select at most 100,000 contacts, or move a filter instead."))
        return ids

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("ids") and not (cleaned.get("query") or "").strip() and "ids" not in self.errors:
            raise forms.ValidationError(
                gettext("No contacts chosen: open this from the contact list with a filter or a selection.")
            )
        return cleaned


class AlertSettingsForm(forms.Form):
    email_mode = forms.ChoiceField(
        label=_("Email me"), choices=[
            ("instant", _("An email for each lead that becomes hot")),
            ("digest", _("A digest of the leads that became hot")),
            ("off", _("No emails (the bell only)")),
        ], widget=forms.RadioSelect,
    )
    digest_minutes = forms.TypedChoiceField(
        label=_("Digest at most every"), coerce=int,
        choices=AlertSettings.DIGEST_MINUTES_CHOICES,
        help_text=_("Leads that became hot within this time travel together in one email."),
    )
