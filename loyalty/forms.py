"""The programme editor: programme settings + a formset of tiers, and the pin form of the card.

Forms validate with the same rules as the API (``loyalty.services.tiers_check`` and friends);
views write through ``loyalty.services``.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from contacts.tag_names import unknown_tag_warnings
from loyalty.metrics import METRIC_TYPES, WINDOWED, metric_clean
from loyalty.models import Program, Tier
from loyalty.services import MAX_MIN, TierSpec, tiers_check

# xgettext:no-python-format
MIN_HELP = _(
    "A contact reaches a tier when the metric is at least its minimum, and keeps it until the next tier’s minimum. "
    "Tag scores and purchase counts are whole numbers, so the seeds’ example “5% while PURCHASE is at most 5, "
    "7% above” is two tiers: minimum 0 with 5% and minimum 6 with 7%. Below the lowest minimum a contact has no tier."
)


class ProgramForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    description = forms.CharField(label=_("Description"), required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    metric_type = forms.ChoiceField(label=_("Metric"), choices=list(METRIC_TYPES.items()))
    metric_tag = forms.CharField(
        label=_("Tag"), required=False, max_length=100, help_text=_("For “Score of a tag”: the tag’s name, e.g. PURCHASE.")
    )
    metric_within_days = forms.IntegerField(
        label=_("Window (days)"), required=False, min_value=1, max_value=3650,
        help_text=_("For purchases: count only the last N days. Empty: all time."),
    )
    downgrade_policy = forms.ChoiceField(label=_("Downgrades"), choices=Program.Downgrade.choices)
    grace_days = forms.IntegerField(
        label=_("Grace period (days)"), min_value=0, max_value=3650, initial=0, required=False,
        help_text=_("With a grace period a contact whose metric falls keeps the tier this many days; "
                    "if the metric recovers meanwhile, nothing changes."),
    )

    def __init__(self, *args, program: Program | None = None, **kwargs) -> None:
        self.program = program
        if program is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": program.name, "description": program.description,
                "metric_type": program.metric.get("type"), "metric_tag": program.metric.get("tag", ""),
                "metric_within_days": program.metric.get("within_days"),
                "downgrade_policy": program.downgrade_policy, "grace_days": program.grace_days,
            }
        super().__init__(*args, **kwargs)

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        clash = Program.objects.filter(name__iexact=name)
        if self.program is not None:
            clash = clash.exclude(pk=self.program.pk)
        if clash.exists():
            raise forms.ValidationError(gettext("A programme named “%(name)s” exists already.") % {"name": name})
        return name

    def clean(self) -> dict:
        cleaned = super().clean()
        metric_type = cleaned.get("metric_type")
        if metric_type:
            raw = {"type": metric_type}
            if metric_type == "tag_score":
                raw["tag"] = cleaned.get("metric_tag") or ""
            if metric_type in WINDOWED:
                raw["within_days"] = cleaned.get("metric_within_days")
            metric, errors = metric_clean(raw)
            for error in errors:
                target = {"metric.tag": "metric_tag", "metric.within_days": "metric_within_days"}.get(error.field)
                self.add_error(target, f"{error.message[0].upper()}{error.message[1:]}.")
            cleaned["metric"] = metric
        grace = cleaned.get("grace_days") or 0
        cleaned["grace_days"] = grace
        if cleaned.get("downgrade_policy") == Program.Downgrade.GRACE and grace < 1:
            self.add_error("grace_days", gettext("Give the grace period in days (at least 1), or choose immediate downgrades."))
        return cleaned

    @property
    def tag_warnings(self) -> list[str]:
        """"No tag is named …: did you mean …?" for a tag metric naming no existing tag (a warning,
        not an error: the tag may be created later by rules or an import; until then the metric is 0)."""
        data = getattr(self, "cleaned_data", None) or {}
        metric = data.get("metric") or {}
        if metric.get("type") != "tag_score" or not metric.get("tag"):
            return []
        return unknown_tag_warnings([metric["tag"]])

    def program_fields(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"], "description": data.get("description", ""), "metric": data["metric"],
            "downgrade_policy": data["downgrade_policy"], "grace_days": data["grace_days"],
        }


class TierForm(forms.Form):
    id = forms.IntegerField(required=False, widget=forms.HiddenInput)
    name = forms.CharField(label=_("Name"), max_length=100)
    min = forms.DecimalField(label=_("Minimum"), max_digits=14, decimal_places=2, min_value=-MAX_MIN, max_value=MAX_MIN)
    # xgettext:no-python-format
    discount_percent = forms.DecimalField(label=_("Discount %"), required=False, min_value=0, max_value=100, decimal_places=2)
    free_shipping = forms.BooleanField(label=_("Free shipping"), required=False)
    gift = forms.CharField(label=_("Gift"), required=False, max_length=500)
    text = forms.CharField(label=_("Other benefits"), required=False, max_length=500)

    def spec(self) -> TierSpec:
        data = self.cleaned_data
        benefits: dict = {}
        if data.get("discount_percent") is not None:
            value = data["discount_percent"]
            benefits["discount_percent"] = int(value) if value == value.to_integral_value() else float(value)
        if data.get("free_shipping"):
            benefits["free_shipping"] = True
        for key in ("gift", "text"):
            if data.get(key, "").strip():
                benefits[key] = data[key].strip()
        return TierSpec(name=" ".join(data["name"].split()), min=Decimal(data["min"]).quantize(Decimal("0.01")),
                        benefits=benefits, id=data.get("id"))


class BaseTierFormSet(forms.BaseFormSet):
    def live_forms(self) -> list[TierForm]:
        return [
            form for form in self.forms
            if form.has_changed() or form.initial
            if not (self.can_delete and self._should_delete_form(form))
        ]

    def clean(self) -> None:
        if any(self.errors):
            return
        forms_in_order = self.live_forms()
        errors = tiers_check([form.spec() for form in forms_in_order])
        for error in errors:
            parts = error.field.split(".")
            if len(parts) == 3:
                form = forms_in_order[int(parts[1])]
                form.add_error(parts[2], f"{error.message[0].upper()}{error.message[1:]}.")
            else:
                raise forms.ValidationError(f"{error.message[0].upper()}{error.message[1:]}.")
        if errors:
            raise forms.ValidationError(
                gettext("Fix the thresholds: tiers are listed from the lowest minimum to the highest, each higher than "
                        "the one before, with unique names.")
            )

    def specs(self) -> list[TierSpec]:
        return [form.spec() for form in self.live_forms()]


TierFormSet = forms.formset_factory(TierForm, formset=BaseTierFormSet, extra=0, can_delete=True, min_num=1, validate_min=True)


def tier_formset(data=None, *, program: Program | None = None) -> BaseTierFormSet:
    initial = []
    if program is not None and program.pk:
        for tier in program.tiers.active().order_by("min"):
            benefits = tier.benefits or {}
            initial.append({
                "id": tier.pk, "name": tier.name,
                "min": int(tier.min) if tier.min == tier.min.to_integral_value() else tier.min,
                "discount_percent": benefits.get("discount_percent"), "free_shipping": benefits.get("free_shipping", False),
                "gift": benefits.get("gift", ""), "text": benefits.get("text", ""),
            })
    elif data is None:
        initial = [{"name": "", "min": None}]
    return TierFormSet(data, initial=initial or None, prefix="tiers")


class PinForm(forms.Form):
    tier = forms.ModelChoiceField(label=_("Tier"), queryset=Tier.objects.none(), empty_label=None)
    until = forms.DateField(label=_("Until"), widget=forms.DateInput(attrs={"type": "date"}), help_text=_("Inclusive."))
    note = forms.CharField(required=False, max_length=200, label=_("Why"))

    def __init__(self, *args, program: Program, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tier"].queryset = program.tiers.active().order_by("min")

    def clean_until(self):
        until = self.cleaned_data["until"]
        if until < timezone.localdate():
            raise forms.ValidationError(gettext("Pick today or a later date."))
        return until
