from __future__ import annotations

from django.urls import path

from leads import views

app_name = "leads"

urlpatterns: list = []
