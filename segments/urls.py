from __future__ import annotations

from django.urls import path

from segments import views

app_name = "segments"

urlpatterns: list = []
