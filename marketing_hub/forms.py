from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.mail import EmailMultiAlternatives
from django.template import loader
from django.utils.translation import gettext_lazy as _

from core.models import ApiKey
from core.roles import ALL_ROLES, ROLE_LABELS
from marketing_hub.models import UserPreference

USERNAME_HELP = _("Letters, digits and @ . + - _ only, up to 150 characters.")


class _PlainLabels(forms.Form):
    """Labels without Django's trailing colon, like every hand-written form in the app."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class ApiKeyForm(_PlainLabels):
    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("Who uses it, e.g. “Shop website”."))
    scope = forms.ChoiceField(label=_("Scope"), choices=ApiKey.SCOPES, initial=ApiKey.SCOPE_INGEST)


class _UserFields(_PlainLabels):
    """Who a user is and their role; usernames are checked like Django's own (no spaces, no markup)."""

    username = forms.CharField(label=_("Username"), max_length=150, help_text=USERNAME_HELP, validators=[UnicodeUsernameValidator(
        message=_("A username may contain only letters, digits and @ . + - _ (no spaces or other signs)."),
    )])
    first_name = forms.CharField(label=_("First name"), max_length=150, required=False)
    last_name = forms.CharField(label=_("Last name"), max_length=150, required=False)
    email = forms.EmailField(label=_("Email"), required=False, help_text=_("Needed to send a password reset link."))
    role = forms.ChoiceField(label=_("Role"), choices=[(role, ROLE_LABELS[role]) for role in ALL_ROLES])

    def __init__(self, *args, user=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        clash = get_user_model().objects.filter(username__iexact=username)
        if self.user is not None:
            clash = clash.exclude(pk=self.user.pk)
        if clash.exists():
            raise forms.ValidationError(_("A user with this username already exists."))
        return username


class UserCreateForm(_UserFields):
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput, min_length=8)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password"):
            user = get_user_model()(username=cleaned.get("username", ""), email=cleaned.get("email", ""))
            try:
                validate_password(cleaned["password"], user)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class UserEditForm(_UserFields):
    pass


class UserPasswordResetForm(PasswordResetForm):
    """Django's password reset email (a one-time link to ``password_reset_confirm``) for the one
    user an admin picked, at that user's address. Unlike the self-service form, a failure to send
    is raised, so the admin is told."""

    def __init__(self, user) -> None:
        super().__init__(data={"email": user.email})
        self.user = user

    def get_users(self, email):
        if self.user.is_active and self.user.email:
            yield self.user

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email,
                  html_email_template_name=None) -> None:
        subject = "".join(loader.render_to_string(subject_template_name, context).splitlines())
        body = loader.render_to_string(email_template_name, context)
        EmailMultiAlternatives(subject, body, from_email, [to_email]).send()


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=_("Language"), choices=UserPreference.LANGUAGE_CHOICES, required=False)
