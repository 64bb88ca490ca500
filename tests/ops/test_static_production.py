"""MH_PRODUCTION=1 before `collectstatic` has run: pages render with plain static URLs (they used
to answer 500 on every page, the manifest missing)."""

from __future__ import annotations

import pytest
from django.test import Client

from marketing_hub.staticfiles import ForgivingManifestStaticFilesStorage

pytestmark = pytest.mark.django_db

PRODUCTION_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "marketing_hub.staticfiles.ForgivingManifestStaticFilesStorage"},
}


def test_pages_render_without_collected_static_files(settings, tmp_path, admin_client, caplog, monkeypatch):
    # given the production storage and a STATIC_ROOT that collectstatic never filled
    monkeypatch.setattr(ForgivingManifestStaticFilesStorage, "_warned", False)
    settings.STORAGES = PRODUCTION_STORAGES
    settings.STATIC_ROOT = tmp_path / "staticfiles"
    # when pages are opened
    login = Client().get("/login/")
    dashboard = admin_client.get("/")
    # then they render, linking the plain (unversioned) names, and the log says what to run
    assert login.status_code == 200
    assert dashboard.status_code == 200
    assert 'href="/static/css/app.css"' in login.content.decode()
    assert "collectstatic --noinput" in caplog.text


def test_collected_static_files_are_served_versioned(settings, tmp_path):
    # given the production storage with a manifest naming a hashed file
    settings.STORAGES = PRODUCTION_STORAGES
    settings.STATIC_ROOT = tmp_path
    (tmp_path / "staticfiles.json").write_text(
        '{"paths": {"css/app.css": "css/app.0123456789ab.css"}, "version": "1.1", "hash": "x"}')
    # when a page is opened, then it links the versioned name
    assert 'href="/static/css/app.0123456789ab.css"' in Client().get("/login/").content.decode()


def test_with_a_manifest_a_name_it_lacks_is_no_warning_that_nothing_was_collected(settings, tmp_path, caplog,
                                                                                 monkeypatch):
    # given collected static files (a manifest), and whitenoise asking about a licence text beside
    # a bundle (it asks for every file it serves whether its name is a versioned one)
    monkeypatch.setattr(ForgivingManifestStaticFilesStorage, "_warned", False)
    settings.STORAGES = PRODUCTION_STORAGES
    settings.STATIC_ROOT = tmp_path
    (tmp_path / "staticfiles.json").write_text(
        '{"paths": {"css/app.css": "css/app.0123456789ab.css"}, "version": "1.1", "hash": "x"}')
    storage = ForgivingManifestStaticFilesStorage(location=tmp_path)
    # when a name the manifest lacks is asked for
    name = storage.stored_name("vendor/plotly-finance-4.1.0.txt")
    # then it is answered as it is, and the log does not claim the files were never collected
    assert name == "vendor/plotly-finance-4.1.0.txt"
    assert "collectstatic" not in caplog.text
