"""Areas that follow each other: a manual tag edit moves loyalty tiers and segment memberships at
once, through the same hooks the rules engine runs after each batch."""

from __future__ import annotations

from segments.models import Segment, SegmentMember
from segments.services import segment_refresh
from tests.factories import ContactFactory, give_tag
from tests.loyalty.factories import make_program, tier_of


def test_manual_tag_bump_moves_the_loyalty_tier_at_once(db, marketer):
    # given the seeds' programme (Bronze while PURCHASE ≤ 5, Silver above) and a contact at 5
    program = make_program()
    contact = ContactFactory()
    give_tag(contact, "PURCHASE", 5)
    from loyalty.services import program_recompute

    program_recompute(program)
    assert tier_of(program, contact) == "Bronze"
    # when a marketer adds one PURCHASE point on the card
    contact.add_tag("purchase", 1, user=marketer)
    # then the contact is Silver without waiting for a scheduled recompute
    assert tier_of(program, contact) == "Silver"


def test_manual_tag_removal_updates_saved_segment_membership(db, marketer):
    # given a saved segment "kurtki ≥ 1" that the contact belongs to
    contact = ContactFactory()
    give_tag(contact, "kurtki", 2)
    segment = Segment.objects.create(name="Jackets", definition={"type": "has_tag", "tag": "kurtki"})
    segment_refresh(segment.pk)
    assert SegmentMember.objects.filter(segment=segment, contact=contact).exists()
    # when the tag is removed by hand
    contact.remove_tag("KURTKI", user=marketer)
    # then the membership follows immediately
    assert not SegmentMember.objects.filter(segment=segment, contact=contact).exists()
