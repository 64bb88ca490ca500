from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from tracking.models import Source
from tracking.services import clean_origin


class SourceForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("Where messages come from, e.g. “Shop website”."))
    kind = forms.ChoiceField(label=_("Kind"), choices=Source.KINDS, initial=Source.KIND_BROWSER, widget=forms.RadioSelect)
    allowed_origins = forms.CharField(
        label=_("Allowed origins"), required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "https://shop.example.com"}),
        help_text=_("Browser sources only: the shop's origins, one a line. Calls from other origins are refused."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def clean_allowed_origins(self) -> list[str]:
        origins = []
        for line in self.cleaned_data["allowed_origins"].replace(",", "\n").splitlines():
            if line.strip():
                try:
                    origins.append(clean_origin(line))
                except ValueError as exc:
                    raise forms.ValidationError(str(exc)) from None
        return origins

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("kind") == Source.KIND_BROWSER and "allowed_origins" in cleaned and not cleaned["allowed_origins"]:
            self.add_error("allowed_origins", _("A browser source needs at least one allowed origin."))
        return cleaned
