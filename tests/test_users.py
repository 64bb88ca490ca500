"""Settings → Users: admins edit, switch off, reset the password of and delete users; the last
active admin always stays; usernames are checked like Django's; everything is audited."""

from __future__ import annotations

import re
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.test import Client
from django.urls import reverse

from core.roles import ADMIN, MARKETER, SALES, roles_of
from marketing_hub.models import UserEvent, UserRoleEvent
from marketing_hub.services import UserChangeRefused, user_active_set, user_delete, user_update, users_history
from tests.conftest import PASSWORD
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()
XSS_USERNAME = "<img src=x onerror=alert(1)>"


def _edit(client, person, **changes):
    data = {"username": person.username, "first_name": person.first_name, "last_name": person.last_name,
            "email": person.email, "role": sorted(roles_of(person))[0] if roles_of(person) else SALES, **changes}
    return client.post(reverse("user_edit", kwargs={"user_id": person.pk}), data)


def _signs_in(username: str, password: str = PASSWORD) -> Client | None:
    """Sign in through the real login form (axes needs the request); the client, or None if refused."""
    client = Client()
    response = client.post(reverse("login"), {"username": username, "password": password})
    return client if response.status_code == 302 else None


def _fresh(user):
    return User.objects.get(pk=user.pk)


def test_admin_edits_name_email_and_role_and_it_is_audited(admin_client, admin):
    # given a marketer
    person = UserFactory(username="ola", first_name="Ola", email="ola@example.com", role=MARKETER)
    # when the admin renames her, changes her email and makes her a seller
    response = _edit(admin_client, person, first_name="Aleksandra", email="ola@shop.pl", role=SALES)
    # then
    assert response.status_code == 302
    person = _fresh(person)
    assert (person.first_name, person.email, roles_of(person)) == ("Aleksandra", "ola@shop.pl", {SALES})
    # and the history says who did what
    changed = UserEvent.objects.filter(pgh_obj_id=person.pk, pgh_label="changed").get()
    assert changed.email == "ola@shop.pl" and changed.pgh_context.metadata["user"] == admin.pk
    roles = {(event.pgh_label, event.group.name) for event in UserRoleEvent.objects.filter(user_id=person.pk)}
    assert {("role_taken", MARKETER), ("role_given", SALES)} <= roles
    history = users_history(user_id=person.pk)
    assert history[0]["who"] == (admin.get_full_name() or admin.username)
    headlines = [entry["headline"] for entry in history]
    assert "Role Marketer → Sales" in headlines and "Role Marketer given" in headlines  # changed, then created
    changes = next(entry["changes"] for entry in history if entry["headline"] == "Changed")
    assert changes == ["name changed", "email ola@example.com → ola@shop.pl"]
    page = admin_client.get(reverse("users")).content.decode()
    assert "Role Marketer → Sales" in page


@pytest.mark.parametrize("view", ["create", "edit"])
def test_a_username_with_markup_is_refused_with_a_clear_message(admin_client, view):
    # given
    person = UserFactory(username="plain", role=MARKETER)
    # when the admin types a username with markup
    if view == "create":
        response = admin_client.post(reverse("users"), {"username": XSS_USERNAME, "role": MARKETER,
                                                        "password": "a-Long-password-42"})
    else:
        response = _edit(admin_client, person, username=XSS_USERNAME)
    # then the form comes back with the reason, and nobody has that name
    assert response.status_code == 200
    assert "A username may contain only letters, digits and @ . + - _" in response.content.decode()
    assert not User.objects.filter(username=XSS_USERNAME).exists()


def test_an_existing_bad_username_can_be_fixed_and_deleted(admin_client):
    # given a user created before usernames were checked
    person = UserFactory(username=XSS_USERNAME, email="old@example.com", role=SALES)
    # when the admin renames it
    assert _edit(admin_client, person, username="fixed.name").status_code == 302
    assert _fresh(person).username == "fixed.name"
    # and deletes it
    response = admin_client.post(reverse("user_delete", kwargs={"user_id": person.pk}))
    assert response.status_code == 302 and not User.objects.filter(pk=person.pk).exists()


def test_a_deactivated_user_cannot_sign_in_and_their_session_ends(admin_client):
    # given a seller signed in
    seller = UserFactory(username="seller", role=SALES)
    their_browser = _signs_in("seller")
    assert their_browser is not None
    assert their_browser.get(reverse("dashboard")).status_code == 200
    # when an admin deactivates them
    response = admin_client.post(reverse("user_active", kwargs={"user_id": seller.pk}), {"active": "0"})
    assert response.status_code == 302
    # then their open session no longer works
    response = their_browser.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    # and the login form refuses them
    assert _signs_in("seller") is None
    # and the history says so
    assert users_history(user_id=seller.pk)[0]["headline"] == "Deactivated"
    # when reactivated, they can sign in again
    admin_client.post(reverse("user_active", kwargs={"user_id": seller.pk}), {"active": "1"})
    assert _signs_in("seller") is not None


def test_an_admin_cannot_demote_deactivate_or_delete_themselves(admin_client, admin):
    # when the only admin tries to take their own Admin role, switch themselves off or delete themselves
    response = _edit(admin_client, admin, role=MARKETER)
    assert response.status_code == 200
    assert "You cannot take the Admin role from yourself; ask another admin." in response.content.decode()
    admin_client.post(reverse("user_active", kwargs={"user_id": admin.pk}), {"active": "0"})
    admin_client.post(reverse("user_delete", kwargs={"user_id": admin.pk}))
    # then they are still an active admin
    admin = _fresh(admin)
    assert admin.is_active and roles_of(admin) == {ADMIN}


def test_the_last_active_admin_stays(admin):
    # given one active admin and one deactivated admin (a command acting, with no person behind it)
    UserFactory(username="old_admin", role=ADMIN, is_active=False)
    # then the last active admin cannot be demoted, deactivated or deleted
    with pytest.raises(UserChangeRefused, match="last active admin"):
        user_update(admin, username=admin.username, first_name="", last_name="", email="", role=MARKETER)
    with pytest.raises(UserChangeRefused, match="last active admin"):
        user_active_set(admin, active=False)
    with pytest.raises(UserChangeRefused, match="last active admin"):
        user_delete(admin)
    assert roles_of(_fresh(admin)) == {ADMIN} and _fresh(admin).is_active
    # but with a second active admin each of them may go
    UserFactory(username="second_admin", role=ADMIN)
    assert user_active_set(admin, active=False)


def test_a_superuser_demoted_is_no_longer_an_admin(admin):
    boss = UserFactory(username="boss", is_superuser=True)
    user_update(boss, username="boss", first_name="", last_name="", email="", role=MARKETER, by=admin)
    assert roles_of(_fresh(boss)) == {MARKETER}


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin():
    # given exactly two admins
    first, second = UserFactory(username="first", role=ADMIN), UserFactory(username="second", role=ADMIN)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(target, by):
        try:
            barrier.wait(5)
            user_update(target, username=target.username, first_name="", last_name="", email="", role=MARKETER, by=by)
            outcomes.append("demoted")
        except UserChangeRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    # when each demotes the other at the same moment
    threads = [threading.Thread(target=demote, args=(second, first)), threading.Thread(target=demote, args=(first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then one change is refused and one admin is left
    assert sorted(outcomes) == ["demoted", "refused"]
    admins = [user for user in User.objects.all() if ADMIN in roles_of(user)]
    assert len(admins) == 1


def test_password_reset_link_is_emailed_works_once_and_is_audited(admin_client, admin, settings):
    # given a seller with an email
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    seller = UserFactory(username="seller", email="seller@shop.pl", role=SALES)
    # when the admin sends a reset link
    response = admin_client.post(reverse("user_password_reset", kwargs={"user_id": seller.pk}))
    assert response.status_code == 302
    # then one email reaches the seller with a one-time link
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["seller@shop.pl"]
    link = re.search(r"http://testserver(/reset/\S+/)", mail.outbox[0].body).group(1)
    client = Client()
    page = client.get(link, follow=True)
    assert "Choose a new password" in page.content.decode()
    form_url = page.redirect_chain[-1][0] if page.redirect_chain else link
    # a weak password is refused with the reason
    weak = client.post(form_url, {"new_password1": "password", "new_password2": "password"})
    assert "This password is too common." in weak.content.decode()
    # a good one is set
    done = client.post(form_url, {"new_password1": "Nowe-Haslo-2026!", "new_password2": "Nowe-Haslo-2026!"})
    assert done.status_code == 302 and done["Location"] == reverse("password_reset_complete")
    assert _signs_in("seller", "Nowe-Haslo-2026!") is not None
    # and the link is used up
    assert "This link no longer works" in Client().get(link, follow=True).content.decode()
    labels = list(UserEvent.objects.filter(pgh_obj_id=seller.pk).order_by("pgh_id").values_list("pgh_label", flat=True))
    assert labels[-2:] == ["password_reset_sent", "password_changed"]
    sent = UserEvent.objects.get(pgh_obj_id=seller.pk, pgh_label="password_reset_sent")
    assert sent.pgh_context.metadata["user"] == admin.pk


def test_password_reset_needs_an_email(admin_client, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    person = UserFactory(username="noemail", email="", role=SALES)
    response = admin_client.post(reverse("user_password_reset", kwargs={"user_id": person.pk}), follow=True)
    assert "noemail has no email address; add one first." in response.content.decode()
    assert mail.outbox == []


def test_deleting_a_seller_unassigns_their_contacts_and_is_audited(admin_client, admin):
    # given a seller owning a contact
    seller = UserFactory(username="leaving", role=SALES)
    contact = ContactFactory(owner=seller)
    # the edit page warns about it
    page = admin_client.get(reverse("user_edit", kwargs={"user_id": seller.pk})).content.decode()
    assert "The 1 contact they own becomes unassigned." in page
    # when deleted
    response = admin_client.post(reverse("user_delete", kwargs={"user_id": seller.pk}))
    # then
    assert response.status_code == 302 and not User.objects.filter(pk=seller.pk).exists()
    contact.refresh_from_db()
    assert contact.owner_id is None
    deleted = UserEvent.objects.get(pgh_obj_id=seller.pk, pgh_label="deleted")
    assert deleted.username == "leaving" and deleted.pgh_context.metadata["user"] == admin.pk
    assert any(entry["headline"] == "Deleted" and entry["username"] == "leaving" for entry in users_history())


def test_non_admins_see_no_user_management(marketer_client):
    person = UserFactory(username="target", role=SALES)
    assert marketer_client.get(reverse("user_edit", kwargs={"user_id": person.pk})).status_code == 403
    assert marketer_client.post(reverse("user_delete", kwargs={"user_id": person.pk})).status_code == 403
    assert User.objects.filter(pk=person.pk).exists()
