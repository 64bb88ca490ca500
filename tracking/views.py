"""The Segment-compatible intake at ``/v1/…`` (machine endpoints, keyed by a source's write key),
the browser snippet, and Settings → Sources (create, revoke, live debugger)."""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import zlib
from datetime import timedelta

import plotly.graph_objects as go
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from automation.ingestion import ingest_rate_check
from contacts.models import EVENT_TYPE_CHOICES
from core.charts import DOWN, MUTED, PRIMARY, figure_dict
from core.htmx import render_page, wants_fragment
from core.roles import ADMIN, MARKETER, has_role, role_required
from tracking import vendoring
from tracking.forms import SourceForm
from tracking.intake import (
    MAX_REQUEST_BYTES,
    TooLarge,
    TrackValidationError,
    body_load,
    messages_validate,
    received_now,
)
from tracking.models import HourlyCount, MessageLog, Source
from tracking.services import log_request, messages_ingest, source_for_key, source_issue, source_revoke

ANALYTICS_NEXT_VERSION = vendoring.VERSION
ANALYTICS_NEXT_STATIC = f"vendor/{vendoring.LIBRARY}"

# Segment's full paths and analytics.js's one-letter ones (it posts to apiHost + "/t", "/p", …).
ENDPOINTS = {
    "batch": None, "b": None, "import": None,
    "track": "track", "t": "track", "identify": "identify", "i": "identify", "page": "page", "p": "page",
    "screen": "screen", "s": "screen", "alias": "alias", "a": "alias", "group": "group", "g": "group",
}


# --- intake ---------------------------------------------------------------------------------------
def _error(status: int, detail: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"success": False, "detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _basic_key(request: HttpRequest) -> str | None:
    """The write key of ``Authorization: Basic base64(key:)``; None without such a header."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.split(":", 1)[0]


def _body(request: HttpRequest) -> bytes:
    """The request body, gunzipped when the client compressed it; TooLarge above the limit."""
    raw = request.body
    if request.headers.get("content-encoding", "").lower() == "gzip":
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(MAX_REQUEST_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError("the body is not valid gzip") from exc
    if len(raw) > MAX_REQUEST_BYTES:
        raise TooLarge(f"A request may be at most {MAX_REQUEST_BYTES // 1024} KB.")
    return raw


@login_not_required
@csrf_exempt
@never_cache
def intake(request: HttpRequest, endpoint: str) -> HttpResponse:
    """POST /v1/batch, /v1/track, … as in Segment's HTTP Tracking API."""
    if endpoint not in ENDPOINTS:
        raise Http404
    if request.method != "POST":
        return _error(405, "Use POST.", Allow="POST")
    received_at = received_now()
    basic_key = _basic_key(request)
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_REQUEST_BYTES:
        source = source_for_key(basic_key or "")
        if source is not None:
            log_request(source, rejected=[{"reason": f"request of {length:,} bytes: above {MAX_REQUEST_BYTES // 1024} KB"}])
        return _error(413, f"A request may be at most {MAX_REQUEST_BYTES // 1024} KB.")
    sizes: list[int] | None = None
    try:
        raw_body = _body(request)
        body, sizes = body_load(raw_body or b"null")
    except TooLarge as exc:
        return _error(413, str(exc))
    except (ValueError, UnicodeDecodeError):
        body = None
    body_key = body.get("writeKey") if isinstance(body, dict) and isinstance(body.get("writeKey"), str) else None
    source = source_for_key(basic_key or body_key or "")
    if source is None:
        return _error(401, "Missing, unknown or revoked write key (HTTP Basic user name, or writeKey in the body).")
    if source.is_browser:
        origin = (request.headers.get("origin") or "").lower()
        if origin not in source.allowed_origins:
            log_request(source, rejected=[{"reason": f"origin {origin or '(none)'} is not allowed for this browser source"}])
            return _error(403, "This browser source does not allow this origin.")
    retry_after = ingest_rate_check(f"source-{source.pk}")
    if retry_after is not None:
        return _error(429, f"Too many requests; retry after {retry_after} s.", Retry_After=str(retry_after))
    if not isinstance(body, dict):
        log_request(source, rejected=[{"reason": "the body is not a JSON object"}])
        return JsonResponse({"errors": [{"field": "body", "message": "must be a JSON object"}]}, status=400)
    endpoint_type = ENDPOINTS[endpoint]
    if endpoint_type is None:
        raw_messages = body.get("batch")
        if not isinstance(raw_messages, list):
            log_request(source, rejected=[{"reason": "batch must be a list of messages"}])
            return JsonResponse({"errors": [{"field": "batch", "message": "must be a list of messages"}]}, status=400)
    else:
        raw_messages = [body]
        sizes = [len(raw_body)]  # the message is the body
    try:
        clean = messages_validate(raw_messages, source_id=source.pk, browser=source.is_browser, received_at=received_at,
                                  request_sent_at=body.get("sentAt") if endpoint_type is None else None,
                                  endpoint_type=endpoint_type, sizes=sizes)
        result = messages_ingest(source, clean, now=received_at)
    except TooLarge as exc:
        log_request(source, rejected=[{"reason": str(exc)}])
        return _error(413, str(exc))
    except TrackValidationError as exc:
        log_request(source, rejected=_rejections(raw_messages, exc.errors))
        errors = exc.errors if endpoint_type is None else [{k: v for k, v in e.items() if k != "index"} for e in exc.errors]
        return JsonResponse({"errors": errors}, status=400)
    log_request(source, outcomes=result.outcomes, now=received_at)
    return JsonResponse({"success": True, "accepted": result.accepted, "duplicates": result.duplicates})


def _rejections(raw_messages: list, errors: list[dict]) -> list[dict]:
    """One debugger row per message of a refused batch, with its own errors as the reason."""
    reasons: dict[int | None, list[str]] = {}
    for error in errors:
        reasons.setdefault(error.get("index"), []).append(f"{error['field']}: {error['message']}")
    rows = []
    for index, raw in enumerate(raw_messages):
        raw = raw if isinstance(raw, dict) else {}
        own = reasons.get(index)
        reason = "; ".join(own) if own else "another message of the batch was invalid (all-or-nothing)"
        if None in reasons:
            reason = "; ".join(reasons[None] + (own or []))
        rows.append({
            "message_type": str(raw.get("type") or "")[:20], "message_id": str(raw.get("messageId") or "")[:200],
            "label": str(raw.get("event") or raw.get("name") or "")[:200], "reason": reason,
            "visitor": str(raw.get("userId") or raw.get("anonymousId") or "")[:200],
        })
    return rows or [{"reason": "; ".join(reasons.get(None, ["invalid request"]))}]


# --- the browser snippet --------------------------------------------------------------------------
def _browser_source(write_key: str) -> Source:
    source = source_for_key(write_key)
    if source is None or not source.is_browser:
        raise Http404("No active browser source has this key.")
    return source


SNIPPET_JS = """/* Marketing Hub: Segment analytics.js (analytics-next %(version)s) for the source "%(name)s".
   The usual Segment snippet: it queues calls until the library has loaded, then loads it from
   this host; messages go to %(api_host)s. */
(function () {
  var analytics = (window.analytics = window.analytics || []);
  if (analytics.initialize || analytics.invoked) return;
  analytics.invoked = true;
  analytics.methods = ["trackSubmit", "trackClick", "trackLink", "trackForm", "pageview", "identify", "reset",
    "group", "track", "ready", "alias", "debug", "page", "screen", "once", "off", "on", "addSourceMiddleware",
    "addIntegrationMiddleware", "setAnonymousId", "addDestinationMiddleware", "register"];
  analytics.factory = function (method) {
    return function () {
      var args = Array.prototype.slice.call(arguments);
      args.unshift(method);
      analytics.push(args);
      return analytics;
    };
  };
  for (var i = 0; i < analytics.methods.length; i++) {
    analytics[analytics.methods[i]] = analytics.factory(analytics.methods[i]);
  }
  analytics._writeKey = %(write_key)s;
  analytics._cdn = %(origin)s;
  analytics.SNIPPET_VERSION = "mh-1";
  var script = document.createElement("script");
  script.async = true;
  script.src = %(library)s;
  var first = document.getElementsByTagName("script")[0];
  first.parentNode.insertBefore(script, first);
  analytics.page();
})();
"""


def _origin(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


@login_not_required
@csrf_exempt
@require_GET
def snippet_js(request: HttpRequest, write_key: str) -> HttpResponse:
    """The one script a shop's page includes: the queue stub, the key, and the vendored library."""
    source = _browser_source(write_key)
    origin = _origin(request)
    body = SNIPPET_JS % {
        "version": ANALYTICS_NEXT_VERSION, "name": source.name.replace("*/", "* /").replace('"', "'"),
        "api_host": f"{origin}/v1", "write_key": json.dumps(write_key), "origin": json.dumps(origin),
        "library": json.dumps(request.build_absolute_uri(static(ANALYTICS_NEXT_STATIC))),
    }
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    return response


@login_not_required
@csrf_exempt
@require_GET
def cdn_settings(request: HttpRequest, write_key: str) -> JsonResponse:
    """What analytics.js fetches from its "CDN" at start: only the Segment.io destination,
    pointed at this host, and no remote metrics."""
    _browser_source(write_key)
    return JsonResponse({
        "integrations": {
            "Segment.io": {"apiKey": write_key, "apiHost": f"{request.get_host()}/v1", "protocol": request.scheme,
                           "addBundledMetadata": False, "unbundledIntegrations": []},
        },
        "plan": {"track": {"__default": {"enabled": True}}, "identify": {"__default": {"enabled": True}}},
        "metrics": {"sampleRate": 0, "host": f"{request.get_host()}/v1"},
        "middlewareSettings": {}, "enabledMiddleware": {}, "legacyVideoPluginsEnabled": False, "remotePlugins": [],
        "analyticsNextEnabled": True, "edgeFunction": {}, "consentSettings": {}, "autoInstrumentationSettings": {},
    })


@login_not_required
@require_GET
def analytics_asset(request: HttpRequest, name: str) -> HttpResponse:
    """The library's lazy bundles and its polyfill, where it looks for them (``analytics._cdn``, this
    host): redirected to their vendored static files, so nothing is loaded from a CDN."""
    if name == "polyfill.min.js":
        return redirect(static(f"vendor/{vendoring.POLYFILL}"))
    bundle = name.removeprefix("bundles/")
    if bundle != name and bundle.split(".bundle.")[0] in vendoring.BUNDLES and bundle.endswith(".js") \
            and "/" not in bundle:
        return redirect(static(f"vendor/{vendoring.BUNDLES_DIR}/bundles/{bundle}"))
    raise Http404("No such analytics.js asset.")


def snippet_tag(request: HttpRequest, write_key: str) -> str:
    return f'<script src="{request.build_absolute_uri(reverse("tracking:snippet", args=[write_key]))}"></script>'


# --- Settings → Sources ---------------------------------------------------------------------------
def _hourly(source_ids: list[int], hours: int = 24) -> dict[int, dict]:
    since = timezone.now() - timedelta(hours=hours)
    rows = (HourlyCount.objects.filter(source_id__in=source_ids, hour__gte=since).values("source_id")
            .annotate(accepted=Sum("accepted"), duplicates=Sum("duplicates"), rejected=Sum("rejected")))
    return {row["source_id"]: row for row in rows}


@require_http_methods(["GET", "POST"])
@role_required(MARKETER)
def sources(request: HttpRequest) -> HttpResponse:
    """Admins create and revoke; marketers see the sources and their traffic."""
    can_edit = has_role(request.user, ADMIN)
    created = None
    form = SourceForm(request.POST or None) if can_edit else None
    if request.method == "POST":
        if not can_edit or form is None:
            raise PermissionDenied(_("Only admins create sources."))
        if form.is_valid():
            source, write_key = source_issue(
                name=form.cleaned_data["name"], kind=form.cleaned_data["kind"],
                allowed_origins=form.cleaned_data["allowed_origins"], created_by=request.user,
            )
            created = {"source": source, "write_key": write_key,
                       "snippet": snippet_tag(request, write_key) if source.is_browser else ""}
            form = SourceForm()
    all_sources = list(Source.objects.select_related("created_by")[:200])
    counts = _hourly([source.pk for source in all_sources])
    for source in all_sources:
        source.counts_24h = counts.get(source.pk, {"accepted": 0, "duplicates": 0, "rejected": 0})
    context = {"sources": all_sources, "form": form, "created": created, "can_edit": can_edit,
               "api_host": f"{_origin(request)}/v1"}
    return render(request, "tracking/sources.html", context)


@require_GET
@role_required(MARKETER)
def source_detail(request: HttpRequest, source_id: int) -> HttpResponse:
    """The live debugger (the log partial polls) and the hourly counts of the last 24 hours."""
    source = get_object_or_404(Source, pk=source_id)
    log = list(MessageLog.objects.filter(source=source).select_related("contact")[: MessageLog.LOG_KEEP])
    labels = dict(EVENT_TYPE_CHOICES)
    for entry in log:
        entry.event_label = labels.get(entry.event_type, entry.event_type)  # type: ignore[attr-defined]
    context = {"source": source, "log": log, "can_edit": has_role(request.user, ADMIN)}
    if wants_fragment(request):
        return render_page(request, "tracking/source_detail.html", context, partial="log")
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    by_hour = {row.hour: row for row in HourlyCount.objects.filter(source=source, hour__gte=now - timedelta(hours=23))}
    hours = []
    for offset in range(23, -1, -1):
        hour = now - timedelta(hours=offset)
        row = by_hour.get(hour)
        hours.append({"hour": hour, "accepted": row.accepted if row else 0, "duplicates": row.duplicates if row else 0,
                      "rejected": row.rejected if row else 0})
    context.update({"hours": hours, "hours_chart": _hours_chart(hours)})
    context["snippet_example"] = snippet_tag(request, "YOUR_WRITE_KEY")
    return render_page(request, "tracking/source_detail.html", context, partial="log")


def _hours_chart(hours: list[dict]) -> dict:
    """Messages per hour, stacked: accepted, duplicates, rejected."""
    labels = [timezone.localtime(h["hour"]).strftime("%H:00") for h in hours]
    figure = go.Figure([
        # "Label: count" rather than "count label": no plural form to agree with the number
        go.Bar(x=labels, y=[h[name] for h in hours], name=title, marker={"color": colour},
               hovertemplate="%{x}<br>" + title + ": %{y:,}<extra></extra>")
        for name, title, colour in (("accepted", _("Accepted"), PRIMARY), ("duplicates", _("Duplicates"), MUTED),
                                    ("rejected", _("Rejected"), DOWN))
    ])
    figure.update_layout(barmode="stack", showlegend=True,
                         legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "traceorder": "normal"},
                         yaxis={"rangemode": "tozero"},
                         xaxis={"type": "category", "tickangle": 0, "tickvals": labels[::6]})
    return figure_dict(figure)


@require_POST
@role_required(ADMIN)
def source_revoke_view(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source, pk=source_id)
    if source_revoke(source):
        flash.success(request, _("Source “%(name)s” revoked: its key is refused from now on.") % {"name": source.name})
    return redirect("tracking:sources")
