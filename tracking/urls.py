"""Mounted at the site root: the intake at /v1/ (so Segment's libraries only change their host)
and Settings → Sources."""

from __future__ import annotations

from django.urls import path, re_path

from tracking import views

app_name = "tracking"

urlpatterns = [
    path("settings/sources/", views.sources, name="sources"),
    path("settings/sources/<int:source_id>/", views.source_detail, name="source_detail"),
    path("settings/sources/<int:source_id>/revoke/", views.source_revoke_view, name="source_revoke"),
    path("v1/snippet/<str:write_key>.js", views.snippet_js, name="snippet"),
    path("v1/projects/<str:write_key>/settings", views.cdn_settings, name="cdn_settings"),
    path("analytics-next/<path:name>", views.analytics_asset, name="analytics_asset"),
    re_path(r"^v1/(?P<endpoint>[a-z]+)$", views.intake, name="intake"),
]
