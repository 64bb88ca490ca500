"""Who may open Settings → Sources: admins manage, marketers read (sources, debugger), sales nothing.
The intake at /v1/ authenticates with a source's write key, not a login."""

from core.roles import ADMIN, MARKETER

READERS = {MARKETER, ADMIN}


def _source():
    from tracking.services import source_issue

    source, _ = source_issue(name="Shop", kind="browser", allowed_origins=["https://shop.example"])
    return {"source_id": source.pk}


ACCESS = {
    "tracking:sources": {"roles": READERS},
    "tracking:source_detail": {"roles": READERS, "kwargs": _source},
    "tracking:source_revoke": {"roles": {ADMIN}, "method": "post", "kwargs": _source},
}
PUBLIC = {"tracking:intake", "tracking:snippet", "tracking:cdn_settings", "tracking:analytics_asset"}
