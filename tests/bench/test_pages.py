"""The views part of the benchmark (``bench/pages.py``): per-URL figures, the URLs it measures and
the builder's POST as the browser sends it. Nothing here is timed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from bench import pages
from bench.pages import Probe, Timing, UrlResult
from bench.run import SERVER_SETTINGS, _target, machine, server_line, sql_value, summary_lines
from contacts.models import Contact
from demo import datagen
from demo.users import ensure_demo_users
from segments.models import Segment, SegmentMember, SegmentSize

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _result(url: str, samples: list[float], *, status: int = 200, problems: list[str] | None = None) -> UrlResult:
    return UrlResult(Probe(url), timings=[Timing([("page", ms, status)]) for ms in samples], problems=problems or [])


# --- aggregation ----------------------------------------------------------------------------------
def test_the_figure_is_the_worst_urls_p95_and_every_url_is_listed():
    # given a fast URL with one slow outlier and a URL that is slow throughout
    fast = _result("/a/", [10.0] * 19 + [500.0])
    slow = _result("/b/", [100.0 + i for i in range(20)])
    # when they make one figure
    figure = pages.page_figure("contact_list_p95_ms", [fast, slow], measures="…", rounds=20)
    # then the value is the slow URL's p95 (the 19th of 20: one outlier is not the p95), with its p50
    assert figure["value"] == 118.0
    assert figure["worst_url"] == "/b/"
    assert figure["p50_ms"] == 109.5
    assert figure["urls"]["/a/"] == {"p50_ms": 10.0, "p95_ms": 10.0, "max_ms": 500.0, "n": 20, "statuses": {"200": 20}}
    assert [row["url"] for row in figure["slowest"]] == ["/b/", "/a/"]
    assert figure["worst_p50"] == {"url": "/b/", "p50_ms": 109.5}
    assert figure["errors"] == 0


def test_non_200_answers_and_ignored_filters_fail_the_page_target():
    # given a figure whose URLs answer 200, one that answers 500 once, and one the page would ignore
    good = pages.page_figure("hot_leads_p95_ms", [_result("/ok/", [20.0] * 10)], measures="…")
    broken = pages.page_figure("hot_leads_p95_ms", [_result("/ok/", [20.0] * 10), _result("/x/", [20.0], status=500)],
                               measures="…")
    ignored = pages.page_figure("hot_leads_p95_ms", [_result("/hot/?country=PL", [20.0] * 10, problems=["unknown"])],
                                measures="…")
    slow = pages.page_figure("hot_leads_p95_ms", [_result("/slow/", [200.0] * 10)], measures="…")
    # when the target is checked
    target = _target("hot_leads_p95_ms")
    assert target is not None
    # then only the first passes; the errors are named
    assert [target[1](figure) for figure in (good, broken, ignored, slow)] == [True, False, False, False]
    assert broken["errors"] == 1
    assert broken["error_examples"] == ["/x/: page answered 500"]
    assert ignored["invalid_urls"] == {"/hot/?country=PL": ["unknown"]}
    assert "FAIL" in summary_lines([broken])[1]


@pytest.mark.django_db
def test_the_document_names_the_server_settings_and_warns_when_autovacuum_is_off():
    # when the bench reads the server the figures run on
    settings = machine()["postgres_settings"]
    # then every setting the plans depend on is there, as the server reports it
    assert set(settings) == set(SERVER_SETTINGS)
    assert settings["work_mem"] == sql_value("SHOW work_mem")
    # and a server without autovacuum is called out on stderr
    assert "autovacuum is off" in server_line({**settings, "autovacuum": "off"})
    assert "autovacuum is off" not in server_line({**settings, "autovacuum": "on"})


def test_a_page_with_panels_is_one_unit_with_its_parts_and_critical_path():
    # given a card whose page took 50 ms and whose three panels took 10, 30 and 20 ms
    card = UrlResult(Probe("/contacts/7/", panels=True), timings=[
        Timing([("page", 50.0, 200), ("/leads/card/7/", 10.0, 200), ("/loyalty/contacts/7/panel/", 30.0, 200),
                ("/segments/card/7/", 20.0, 200)])])
    # when it makes a figure
    figure = pages.page_figure("contact_card_p95_ms", [card], measures="…")
    # then the unit is the sum, the critical path the page plus the slowest panel, each part listed
    assert figure["value"] == 110.0
    assert figure["critical_path_p95_ms"] == 80.0
    assert figure["page_only_p95_ms"] == 50.0
    assert set(figure["urls"]["/contacts/7/"]["parts"]) == {
        "page", "/leads/card/<id>/", "/loyalty/contacts/<id>/panel/", "/segments/card/<id>/"}
    assert figure["urls"]["/contacts/7/"]["statuses"] == {"200": 4}


def test_slowest_statements_are_read_from_their_plans():
    statements = [
        {"sql": "SELECT 1", "plan": "Result\nExecution Time: 0.010 ms"},
        {"sql": "UPDATE x"},
        {"sql": "SELECT 2", "plan": "Seq Scan\nExecution Time: 12.500 ms"},
    ]
    assert [s["sql"] for s in pages.slowest_statements(statements)] == ["SELECT 2", "SELECT 1"]


# --- the builder's form ---------------------------------------------------------------------------
def test_form_fields_are_what_the_browser_submits():
    # given a page with the builder form and other markup around it
    html = """<body hx-headers='{"X-CSRFToken": "tok"}'>
    <form id="search"><input name="q" value="outside"></form>
    <form id="builder" method="post">
      <input type="hidden" name="csrfmiddlewaretoken" value="abc">
      <button type="submit" name="op" value="add_condition:r">+</button>
      <input type="text" name="name" value="Fani &amp; kurtek">
      <input type="checkbox" name="for_sending" checked>
      <input type="checkbox" name="r.negate">
      <select name="r.join"><option value="all">ALL</option><option value="any" selected>ANY</option></select>
      <select name="r-0.type"><option value="tag_score">Tag score</option><option value="score">Score</option></select>
      <select name="r-0.op"><option>gte</option></select>
      <input type="text" name="r-0.tag" value="kurtki" list="tag-options">
      <datalist id="tag-options"><option value="ignored"></datalist>
      <textarea name="description">two
lines</textarea>
      <input type="text" name="off" value="x" disabled>
    </form></body>"""
    # when it is read
    fields, headers = pages.form_fields(html, "builder")
    # then the named fields in order, buttons, unchecked boxes, disabled fields and other forms left out
    assert fields == [("csrfmiddlewaretoken", "abc"), ("name", "Fani & kurtek"), ("for_sending", "on"), ("r.join", "any"),
                      ("r-0.type", "tag_score"), ("r-0.op", "gte"), ("r-0.tag", "kurtki"), ("description", "two\nlines")]
    assert headers == {"X-CSRFToken": "tok"}


# --- the URLs on a small generated shop ------------------------------------------------------------
@pytest.fixture
def shop(db):
    datagen.generate(contacts=300, now=NOW)
    ensure_demo_users()


def test_every_list_and_hot_leads_url_is_one_the_page_applies(shop):
    # given the URLs the bench measures on a generated shop
    sales = get_user_model().objects.get(username="sales")
    segment_ids = list(Segment.objects.values_list("pk", flat=True)[:1])
    lists = pages.contact_list_urls(segment_ids=segment_ids)
    hot = pages.hot_leads_urls()
    # when each is checked against its page's FilterSet
    # then none has a parameter the page ignores or a value it rejects, and every filter is used
    assert {url: pages.contact_list_problems(url) for url in lists if pages.contact_list_problems(url)} == {}
    assert {url: pages.hot_leads_problems(url, sales) for url in hot if pages.hot_leads_problems(url, sales)} == {}
    used = {pair.split("=")[0] for url in lists for pair in url.partition("?")[2].split("&") if pair}
    assert used >= {"q", "tag", "tag_min", "country", "city", "consent", "owner", "created_after", "created_before",
                    "sort", "temperature", "stage", "tier", "segment", "page"}


def test_filters_a_page_would_ignore_or_reject_are_reported(shop):
    sales = get_user_model().objects.get(username="sales")
    # given URLs with a parameter the hot-leads filter does not have, a bad choice and a bad sort
    # then each is named
    assert pages.hot_leads_problems("/leads/hot/?country=PL", sales) == [
        "unknown parameter 'country' (ignored by the page)"]
    assert pages.hot_leads_problems("/leads/hot/?owner=nobody", sales)[0].startswith("owner:")
    assert "falls back" in pages.contact_list_problems("/contacts/?sort=name")[0]


def test_the_fixtures_leave_the_data_as_they_found_it(shop):
    # given a shop whose contacts have no owners
    Contact.objects.update(owner=None)
    segments_before = set(Segment.objects.values_list("pk", flat=True))
    # when the part's fixtures are set up
    with pages.page_fixtures(lambda line: None) as fixtures:
        # then three saved segments with members and a week of sizes exist, and sales people own leads
        bench = Segment.objects.filter(pk__in=fixtures.bench_segment_ids)
        assert bench.count() == 3
        assert all(s.refreshed_at and s.count == SegmentMember.objects.filter(segment=s).count() for s in bench)
        assert SegmentSize.objects.filter(segment__in=bench).count() == 3 * pages.SIZE_HISTORY_DAYS
        assert fixtures.owners_assigned == Contact.objects.filter(owner__isnull=False).count() > 0
    # and afterwards they are gone again
    assert set(Segment.objects.values_list("pk", flat=True)) == segments_before
    assert not Contact.objects.filter(owner__isnull=False).exists()


def test_every_page_answers_200_as_the_browser_asks_for_it(shop):
    # given the fixtures and logged-in browsers (CSRF enforced)
    with pages.page_fixtures(lambda line: None) as fixtures:
        clients = {user: pages.client_for(user) for user in ("admin", "sales")}
        probes = pages.page_probes(clients, fixtures)
        # when every URL is requested once (the card with its panels, the builder's POST)
        answers = {f"{name}: {result.probe.label}": pages.fetch(clients[result.probe.user], result.probe).statuses
                   for name, results in probes.items() for result in results}
    # then every figure has URLs and every answer is a 200; the card loaded its three panels
    assert set(probes) == set(pages.MEASURES)
    assert all(probes.values())
    assert {label: statuses for label, statuses in answers.items() if set(statuses) != {200}} == {}
    assert all(len(statuses) == 4 for label, statuses in answers.items() if label.startswith("contact_card"))
    assert all(not result.problems for results in probes.values() for result in results)


def test_rounds_stop_at_the_budget_or_the_hard_limit(monkeypatch):
    # given requests that take no time, and requests slower than any budget
    monkeypatch.setattr(pages, "fetch", lambda client, probe: Timing([("page", 1.0, 200)]))
    quick = [UrlResult(Probe("/a/")), UrlResult(Probe("/b/"))]
    rounds, _ = pages.run_probes({"admin": None}, quick, budget_s=60)
    # then quick pages get every round, each URL once per round
    assert rounds == pages.ROUNDS
    assert [len(result.timings) for result in quick] == [pages.ROUNDS, pages.ROUNDS]
    # and a figure past HARD_LIMIT × its budget stops after a few rounds, below the minimum
    assert pages.run_probes({"admin": None}, [UrlResult(Probe("/c/"))], budget_s=0)[0] == pages.FEW_ROUNDS
