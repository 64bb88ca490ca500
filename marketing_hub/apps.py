from django.apps import AppConfig


class MarketingHubConfig(AppConfig):
    name = "marketing_hub"
    verbose_name = "Marketing Hub"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from marketing_hub.middleware import language_to_session

        user_logged_in.connect(language_to_session, dispatch_uid="mh-language-to-session")
