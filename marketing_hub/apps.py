from django.apps import AppConfig


class MarketingHubConfig(AppConfig):
    name = "marketing_hub"
    verbose_name = "Marketing Hub"
