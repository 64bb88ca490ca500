from __future__ import annotations

from django.urls import path

from loyalty import views

app_name = "loyalty"

urlpatterns: list = []
