"""The Polish walk: an admin, a marketer and a salesperson who saved Polish open the main pages, and
nothing English is left on them.

Two checks on every visible text node and on the attributes people read (title, placeholder,
aria-label, alt, confirm texts, button values), and on the words of the charts (titles, axes,
trace names, category labels, hover texts):
  (i)  the text is the English msgid of a catalogue that translates it: a marked string that was not
       translated at run time (a lazy string turned to text too early, a msgid under the wrong
       context, a missing {% load i18n %} …);
  (ii) the text contains a common English word that is no Polish word: an unmarked string.
<script>/<style>, code/kbd/pre/samp and anything inside translate="no" are skipped; the data made
here (names, e-mails, tags, segments, rules) is Polish so that it cannot trip the check.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.utils import timezone

from contacts.models import Consent
from core.models import ApiKey, Job
from core.roles import ADMIN, MARKETER, SALES
from leads.models import Notification
from marketing_hub.models import UserPreference
from tests.automation.factories import make_rule
from tests.contacts.factories import make_event
from tests.factories import ContactFactory, UserFactory, give_tag
from tests.i18n.catalogues import translated_msgids
from tests.leads.factories import funnel_with_stages
from tests.loyalty.factories import make_program
from tests.segments.factories import make_segment

# Common English words that are not Polish words. Left out on purpose: to, no, a, i, w, o, on, we,
# by, do, go, ten, test, status, import, system, segment, tag, lead, webhook, marketer, scoring, API.
ENGLISH_WORDS = frozenset("""
the and of with for from this that these those your you yet are is was were will would should could
cannot can't don't doesn't isn't won't has have had does not any each every when which what who whom
there their they them it its his her our into over after before than then only also more some none other
such about here where while without within between please click open close show hide view edit save
delete remove cancel create add new back previous next page results result search filter settings user
users name names active inactive never ago day days hour hours minute minutes seconds yes contact contacts
rule rules event events score hot warm cold funnel funnels stage stages owner won lost done failed queued
running total count sent all at an or unknown empty nothing something someone everyone
""".split())
ATTRIBUTES = ("title", "placeholder", "aria-label", "alt", "data-confirm", "hx-confirm", "data-confirm-button",
              "data-copied-label", "data-default-label")
SKIPPED = {"script", "style", "code", "kbd", "pre", "samp", "textarea", "svg"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# A token keeps what joins code-like text together (product_view, segment.entered, tag=kurtki&x=1).
TOKEN = re.compile(r"[\w@/:#+'’.=&?%-]+")


class VisibleText(HTMLParser):
    """The texts a person reads: text nodes, the attributes above, submit buttons' values; plus
    the JSON of the page's charts (json_script blocks)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.texts: list[str] = []
        self.json_blocks: list[str] = []
        self._json: list[str] | None = None

    @property
    def hidden(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        hidden = self.hidden or tag in SKIPPED or attributes.get("translate") == "no"
        if not hidden:
            for name in ATTRIBUTES:
                if attributes.get(name):
                    self.texts.append(attributes[name])
            if tag == "input" and attributes.get("type") in ("submit", "button") and attributes.get("value"):
                self.texts.append(attributes["value"])
        if tag == "script" and attributes.get("type") == "application/json":
            self._json = []
        if tag not in VOID:
            self.stack.append((tag, hidden))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag == "script" and self._json is not None:
            self.json_blocks.append("".join(self._json))
            self._json = None
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                break

    def handle_data(self, data):
        if self._json is not None:
            self._json.append(data)
        elif not self.hidden and data.strip():
            self.texts.append(data)


def _chart_texts(block: str) -> list[str]:
    """The words of a Plotly figure: titles, axis titles, trace names, category labels, hover texts."""
    try:
        figure = json.loads(block)
    except ValueError:
        return []
    if not isinstance(figure, dict) or "data" not in figure:
        return []
    texts: list[str] = []

    def title_of(node) -> None:
        title = node.get("title") if isinstance(node, dict) else None
        if isinstance(title, dict):
            title = title.get("text")
        if isinstance(title, str):
            texts.append(title)

    layout = figure.get("layout") or {}
    title_of(layout)
    for key, value in layout.items():
        if key.startswith(("xaxis", "yaxis")):
            title_of(value)
    for annotation in layout.get("annotations") or []:
        if isinstance(annotation, dict) and isinstance(annotation.get("text"), str):
            texts.append(annotation["text"])
    for trace in figure.get("data") or []:
        if not isinstance(trace, dict):
            continue
        for key in ("name", "hovertemplate", "texttemplate"):
            if isinstance(trace.get(key), str):
                texts.append(trace[key])
        for key in ("x", "y", "labels", "text", "hovertext"):
            values = trace.get(key)
            if isinstance(values, list):
                texts.extend(value for value in values if isinstance(value, str))
    # Plotly's own markup in hover templates is not words
    return [re.sub(r"%\{[^}]*\}|<[^>]+>", " ", text) for text in texts]


def _english_words(text: str) -> list[str]:
    words = []
    for token in TOKEN.findall(text):
        word = token.strip(".,:;!?()'’\"-").lower()
        if word in ENGLISH_WORDS:
            words.append(word)
    return words


def page_problems(html: str, msgids: set[str]) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    texts = parser.texts + [text for block in parser.json_blocks for text in _chart_texts(block)]
    problems = []
    for text in texts:
        shown = " ".join(text.split())
        if not shown:
            continue
        if shown in msgids:
            problems.append(f"untranslated msgid: {shown!r}")
        elif words := _english_words(shown):
            problems.append(f"English ({', '.join(sorted(set(words)))}): {shown[:140]!r}")
    return problems


def test_the_checker_finds_english_and_skips_what_it_should():
    # given a page with English text, a translated one, and English in places people don't read
    html = ('<html lang="pl"><title>Kontakty</title><body><h1>All contacts</h1><p title="Open the card">Karta</p>'
            '<code>the code</code><span translate="no">product_view and the rest</span>'
            '<script>var x = "the script";</script><p>Tag <b>kurtki</b> dodany</p><img alt="Logo of the shop"></body>')
    # when it is checked
    problems = page_problems(html, {"Add tag"})
    # then exactly the visible English is reported
    assert problems == ["English (all, contacts): 'All contacts'", "English (open, the): 'Open the card'",
                        "English (of, the): 'Logo of the shop'"]
    assert page_problems("<p>Add tag</p>", {"Add tag"}) == ["untranslated msgid: 'Add tag'"]


@pytest.fixture
def polish_world(db, settings):
    """Polish-looking data for every main page, and one user of each role who saved Polish."""
    settings.MH_WEBHOOK_ALLOWED_NETS = ["127.0.0.0/8"]
    users = {
        ADMIN: UserFactory(username="jadwiga", first_name="Jadwiga", last_name="Kowalczyk", role=ADMIN),
        MARKETER: UserFactory(username="marek", first_name="Marek", last_name="Zieliński", role=MARKETER),
        SALES: UserFactory(username="sylwia", first_name="Sylwia", last_name="Wójcik", role=SALES),
    }
    for user in users.values():
        UserPreference.objects.create(user=user, language="pl")
    contact = ContactFactory(email="zofia.nowak@przyklad.pl", first_name="Zofia", last_name="Nowak", score=120,
                             owner=users[SALES])
    ContactFactory(email="piotr.lis@przyklad.pl", first_name="Piotr", last_name="Lis", score=40)
    give_tag(contact, "kurtki", 5)
    give_tag(contact, "buty-zimowe", 2)
    Consent.objects.create(contact=contact, channel="email", granted=True, source="formularz")
    make_event(contact, "product_view", properties={"category": "kurtki"})
    segment = make_segment({"type": "tag_score", "tag": "kurtki", "op": "gte", "value": 3}, name="Miłośnicy kurtek")
    rule = make_rule("Kurtki zimowe", where=[{"property": "category", "op": "eq", "value": "kurtki"}],
                     actions=[{"type": "add_tag", "tag": "kurtki", "score": 1}])
    funnel = funnel_with_stages("Sprzedaż", ("Nowy", "Zaangażowany", "MQL", "SQL", "Klient"))
    program = make_program("Klub stałego klienta", metric={"type": "tag_score", "tag": "kurtki"},
                           tiers=[("Brązowy", 0, {"discount_percent": 5}), ("Srebrny", 6, {"discount_percent": 7})])
    job = Job.objects.create(kind="segment_refresh", title="Odświeżenie segmentu „Miłośnicy kurtek”", status="done",
                             params={"segment_id": segment.pk}, result={"members": 1}, created_by=users[MARKETER],
                             started_at=timezone.now() - timedelta(seconds=3), finished_at=timezone.now(), progress=1.0)
    Job.objects.bulk_create([Job(kind="tag_stats", title=f"Przeliczenie tagów {number}", status="queued")
                             for number in range(26)])  # two pages of jobs: the pager too
    Notification.objects.create(user=users[SALES], contact=contact, score=120)
    ApiKey.issue(name="Strona sklepu", scope="ingest", created_by=users[ADMIN])
    from tests.tracking.helpers import server_source
    from tests.webhooks.conftest import make_webhook

    source, _ = server_source("Zaplecze sklepu")
    webhook = make_webhook("http://127.0.0.1:9/odbiornik", description="Sklep internetowy")
    urls = [
        "/", "/contacts/", f"/contacts/{contact.pk}/", "/contacts/tags/", "/contacts/import/",
        "/segments/", "/segments/new/", f"/segments/{segment.pk}/",
        "/automation/rules/", f"/automation/rules/{rule.pk}/", "/automation/rules/new/", "/automation/changes/",
        "/automation/matrices/", "/automation/adhoc/", "/automation/events/",
        "/leads/hot/", "/leads/funnels/", f"/leads/funnels/{funnel.pk}/", "/leads/notifications/",
        "/leads/settings/", "/leads/model-check/",
        "/loyalty/", f"/loyalty/{program.pk}/",
        "/jobs/", f"/jobs/{job.pk}/",
        "/settings/", "/settings/users/", f"/settings/users/{users[MARKETER].pk}/", "/settings/api-keys/",
        "/settings/webhooks/", f"/settings/webhooks/{webhook.pk}/",
        "/settings/sources/", f"/settings/sources/{source.pk}/",
        "/segments/templates/", "/segments/overlap/", f"/segments/{segment.pk}/edit/",
        "/automation/matrices/new/", "/leads/alerts/settings/", f"/leads/funnels/{funnel.pk}/edit/",
        "/loyalty/new/", f"/loyalty/{program.pk}/edit/", "/settings/webhooks/new/", f"/settings/webhooks/{webhook.pk}/edit/",
        "/no-such-page/",
    ]
    # the contact card's panels, as the card loads them
    fragments = [f"/contacts/{contact.pk}/timeline/", f"/segments/card/{contact.pk}/", f"/leads/card/{contact.pk}/",
                 f"/loyalty/contacts/{contact.pk}/panel/"]
    return {"users": users, "urls": urls, "fragments": fragments}


def test_main_pages_are_polish_for_every_role(polish_world):
    msgids = translated_msgids()
    failures = []
    statuses: dict = {}
    for role, user in polish_world["users"].items():
        # given the user signed in with Polish saved (their browser asks for English)
        client = Client(HTTP_ACCEPT_LANGUAGE="en")
        client.force_login(user)
        for url in polish_world["urls"] + polish_world["fragments"]:
            # when they open the page (a 403 or 404 page is checked too)
            fragment = url in polish_world["fragments"]
            response = client.get(url, HTTP_HX_REQUEST="true") if fragment else client.get(url)
            if response.status_code in (301, 302):
                continue
            statuses[(role, url)] = response.status_code
            html = response.content.decode()
            if not fragment and '<html lang="pl">' not in html:
                failures.append(f"{role} {url} [{response.status_code}]: not served in Polish")
            # then no English is left on it
            failures += [f"{role} {url} [{response.status_code}]: {problem}" for problem in page_problems(html, msgids)]
    # the admin reaches every page (a broken URL here would silently check a 404 page instead)
    assert [url for (role, url), status in statuses.items() if role == ADMIN and status != 200] == ["/no-such-page/"]
    unique = list(dict.fromkeys(failures))
    assert not unique, f"{len(unique)} English texts on Polish pages:\n" + "\n".join(unique)


def test_pages_before_signing_in_are_polish_for_a_polish_browser(db):
    # given a Polish browser, nobody signed in, and a password reset link
    from django.contrib.auth.tokens import default_token_generator
    from django.template.loader import render_to_string
    from django.utils import translation
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    person = UserFactory(username="ola", first_name="Ola", last_name="Kruk", role=MARKETER)
    uid = urlsafe_base64_encode(force_bytes(person.pk))
    reset = f"/reset/{uid}/{default_token_generator.make_token(person)}/"
    client = Client(HTTP_ACCEPT_LANGUAGE="pl-PL,pl;q=0.9,en;q=0.5")
    msgids = translated_msgids()
    failures = []
    # when they open the login page, the reset link (a good one and a used one) and its done page
    for url in ("/login/", reset, "/reset/MQ/nie-ten-token/", "/reset/done/", "/login/?next=/settings/"):
        response = client.get(url, follow=True)
        html = response.content.decode()
        if '<html lang="pl">' not in html:
            failures.append(f"{url}: not served in Polish")
        failures += [f"{url}: {problem}" for problem in page_problems(html, msgids)]
    # and a failed sign-in, and the server error page (rendered without a request)
    failed = client.post("/login/", {"username": "ola", "password": "nie-to-haslo"}).content.decode()
    failures += [f"failed sign-in: {problem}" for problem in page_problems(failed, msgids)]
    with translation.override("pl"):
        failures += [f"500: {problem}" for problem in page_problems(render_to_string("500.html"), msgids)]
    # then everything is Polish
    assert not failures, "\n".join(failures)
