from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from contacts.models import Contact, ContactTag, Tag, tag_key


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name", locale="pl_PL")
    last_name = factory.Faker("last_name", locale="pl_PL")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("test-password-123")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if create and extracted:
            # get_or_create: transactional tests flush the groups the migration made
            self.groups.add(Group.objects.get_or_create(name=extracted)[0])


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    email = factory.Sequence(lambda n: f"contact{n}@example.com")
    first_name = factory.Faker("first_name", locale="pl_PL")
    last_name = factory.Faker("last_name", locale="pl_PL")
    country = "PL"
    city = "Warszawa"


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag
        django_get_or_create = ("key",)

    name = factory.Sequence(lambda n: f"tag{n}")
    key = factory.LazyAttribute(lambda tag: tag_key(tag.name))


def give_tag(contact: Contact, name: str, score: int = 1) -> ContactTag:
    """A tag on a contact with a score, bypassing the scoring service (test set-up only)."""
    tag = TagFactory(name=name)
    now = timezone.now()
    return ContactTag.objects.create(contact=contact, tag=tag, score=score, first_assigned_at=now, last_assigned_at=now)
