"""Forms validate; views write."""

from __future__ import annotations

import re

from django import forms
from django.utils.formats import number_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from contacts.csvio import IMPORT_FIELDS, MAX_FILE_BYTES
from contacts.models import CONSENT_CHANNELS
from contacts.services import clean_tag_name

HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
FIELD_LABELS = {
    "email": _("Email (required)"), "first_name": _("First name"), "last_name": _("Last name"), "phone": _("Phone"),
    "country": _("Country (ISO code)"), "city": _("City"), "birth_date": _("Birth date (YYYY-MM-DD)"),
    "consent_email": _("Email consent (yes/no)"), "tags": _("Tags (name:score;…)"),
}


class BulkActionForm(forms.Form):
    ACTIONS = [("add_tag", _("Add tag")), ("set_tag_score", _("Set tag score")), ("remove_tag", _("Remove tag")),
               ("assign_owner", _("Assign owner"))]

    action = forms.ChoiceField(choices=ACTIONS, label=_("Action"))
    tag = forms.CharField(required=False, max_length=200, label=_("Tag"))
    score = forms.IntegerField(required=False, min_value=-1_000_000, max_value=1_000_000, label=_("Score"))
    owner = forms.ChoiceField(required=False, choices=[], label=_("Owner"))
    scope = forms.ChoiceField(choices=[("selected", _("Selected")), ("all", _("All matching"))], initial="selected",
                              label=_("Scope"))
    ids = forms.CharField(required=False, widget=forms.MultipleHiddenInput)

    def __init__(self, *args, owner_choices: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].choices = [("", gettext("Choose…")), *owner_choices]

    def clean_ids(self) -> list[int]:
        values = self.data.getlist("ids") if hasattr(self.data, "getlist") else []
        ids = []
        for value in values:
            if not str(value).isdigit():
                raise forms.ValidationError(gettext("Selected contacts must be ids."))
            ids.append(int(value))
        if len(ids) > 500:
            raise forms.ValidationError(gettext("Select at most 500 contacts, or use “all matching”."))
        return ids

    def clean(self) -> dict:
        data = super().clean()
        action = data.get("action")
        if action in ("add_tag", "set_tag_score", "remove_tag"):
            try:
                data["tag"] = clean_tag_name(data.get("tag") or "")
            except ValueError as exc:
                self.add_error("tag", str(exc))
        if action == "add_tag" and data.get("score") == 0:
            self.add_error("score", gettext("A score of 0 changes nothing."))
        if action == "set_tag_score" and (data.get("score") is None or data["score"] < 0):
            self.add_error("score", gettext("Type the score to set: a whole number, 0 or more (0 removes the tag)."))
        if action == "assign_owner" and not data.get("owner"):
            self.add_error("owner", gettext("Pick an owner (or “Unassigned”)."))
        return data

    def params(self) -> dict:
        """The action as a job's JSON parameters (``contacts.tasks.bulk_apply``)."""
        data = self.cleaned_data
        score = data.get("score") if data["action"] == "set_tag_score" else data.get("score") or 1
        return {"action": data["action"], "tag": data.get("tag") or "", "score": score,
                "owner": data.get("owner") or ""}


class NoteForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "placeholder": _("What happened, what's next…")}),
                           max_length=5000, label=_("Note"))

    def clean_text(self) -> str:
        text = self.cleaned_data["text"].strip()
        if not text:
            raise forms.ValidationError(gettext("Write something first."))
        return text


class TagEditForm(forms.Form):
    name = forms.CharField(max_length=100, label=_("Name"))
    description = forms.CharField(required=False, max_length=2000, label=_("Description"))
    colour = forms.CharField(required=False, max_length=7, label=_("Colour"))

    def clean_name(self) -> str:
        try:
            return clean_tag_name(self.cleaned_data["name"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_colour(self) -> str:
        colour = (self.cleaned_data.get("colour") or "").strip()
        if colour and not HEX_COLOUR.match(colour):
            raise forms.ValidationError(gettext("Colour must look like #4f46e5."))
        return colour.lower()


class TagMergeForm(forms.Form):
    into = forms.CharField(max_length=100, strip=True, label=_("Target tag"), help_text=_("The name of the tag to merge into."))


class ImportUploadForm(forms.Form):
    file = forms.FileField(label=_("CSV file"), help_text=_("UTF-8 or Windows-1250; comma, semicolon or tab separated; "
                                                             "at most 10 MB."))

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(gettext("The file is larger than 10 MB: split it into parts."))
        if upload.size == 0:
            raise forms.ValidationError(gettext("The file is empty."))
        return upload


class ImportMappingForm(forms.Form):
    """For each importable field, which CSV column holds it (or none)."""

    def __init__(self, *args, header: list[str], **kwargs) -> None:
        initial = kwargs.pop("initial", None) or {}
        super().__init__(*args, **kwargs)
        choices = [("", gettext("— not imported —"))] + [(str(index), name or gettext("column %(number)d") % {"number": index + 1})
                                                for index, name in enumerate(header)]
        for target in IMPORT_FIELDS:
            self.fields[target] = forms.ChoiceField(choices=choices, required=target == "email",
                                                    label=FIELD_LABELS[target])
            if initial.get(target) is not None:
                self.fields[target].initial = str(initial[target])

    def clean(self) -> dict:
        data = super().clean()
        used: dict[str, str] = {}
        for target in IMPORT_FIELDS:
            column = data.get(target)
            if column:
                if column in used:
                    self.add_error(target, gettext("That column is already mapped to %(field)s.") % {"field": FIELD_LABELS[used[column]]})
                used[column] = target
        return data

    def mapping(self) -> dict[str, int]:
        return {target: int(self.cleaned_data[target]) for target in IMPORT_FIELDS if self.cleaned_data.get(target)}


# --- the contact card ---------------------------------------------------------------------------------
MAX_TAG_STEP = 1_000_000


def _tag_score_message() -> str:
    return gettext("Score must be a whole number other than 0, at most %(max)s either way.") % {
        "max": number_format(MAX_TAG_STEP, force_grouping=True)}


def _tag_set_message() -> str:
    return gettext("Score must be a whole number from 0 (removes the tag) to %(max)s.") % {
        "max": number_format(MAX_TAG_STEP, force_grouping=True)}


def first_error(form: forms.Form) -> str:
    """The first problem of an invalid form, for a toast."""
    for errors in form.errors.values():
        return str(errors[0])
    return ""


class TagAddForm(forms.Form):
    """Add a tag by name with a score (negative subtracts; a result ≤ 0 removes the tag)."""

    tag = forms.CharField(required=False, strip=False)
    score = forms.CharField(required=False)

    def clean_tag(self) -> str:
        try:
            return clean_tag_name(self.cleaned_data["tag"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_score(self) -> int:
        try:
            score = int(self.cleaned_data["score"] or 1)
        except ValueError:
            raise forms.ValidationError(_tag_score_message()) from None
        if not -MAX_TAG_STEP <= score <= MAX_TAG_STEP or score == 0:
            raise forms.ValidationError(_tag_score_message())
        return score


class TagStepForm(forms.Form):
    """+1 / −1 on a tag chip (``delta``), a typed score (``score``: set to exactly this; 0
    removes), or remove the tag (``remove``)."""

    remove = forms.CharField(required=False)
    score = forms.CharField(required=False)
    delta = forms.CharField(required=False)

    def clean_remove(self) -> bool:
        return bool(self.cleaned_data["remove"])

    def clean_score(self) -> int | None:
        value = (self.cleaned_data["score"] or "").strip()
        if self.cleaned_data.get("remove") or value == "":
            return None
        try:
            score = int(value)
        except ValueError:
            raise forms.ValidationError(_tag_set_message()) from None
        if not 0 <= score <= MAX_TAG_STEP:
            raise forms.ValidationError(_tag_set_message())
        return score

    def clean_delta(self) -> int | None:
        if self.cleaned_data.get("remove") or self.cleaned_data.get("score") is not None:
            return None
        value = self.cleaned_data["delta"] or "1"
        if value not in ("1", "-1"):
            raise forms.ValidationError(gettext("Use + or − to change a score by one."))
        return int(value)


class OwnerForm(forms.Form):
    """The card's Owner select: a Sales user, or none ("none" or empty)."""

    owner = forms.ChoiceField(required=False, choices=[])

    def __init__(self, *args, owner_choices: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["owner"].choices = [("", ""), *owner_choices]
        self.fields["owner"].error_messages["invalid_choice"] = gettext("Pick an owner from the list (a Sales user).")

    def clean_owner(self) -> int | None:
        value = self.cleaned_data["owner"]
        return None if value in ("", "none") else int(value)


class ConsentForm(forms.Form):
    channel = forms.ChoiceField(choices=[(channel, channel) for channel in CONSENT_CHANNELS])
    granted = forms.TypedChoiceField(choices=[("yes", _("Granted")), ("no", _("Withdrawn"))], coerce=lambda value: value == "yes")


class EraseForm(forms.Form):
    """GDPR erasure is confirmed by typing the contact's email."""

    confirm_email = forms.CharField(required=False)

    def __init__(self, *args, email: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean_confirm_email(self) -> str:
        typed = self.cleaned_data["confirm_email"].strip().lower()
        if typed != self.email:
            raise forms.ValidationError(gettext("Type the contact's email exactly to confirm the erasure."))
        return typed
