"""The Research API resource: client key and secret from ``dg.EnvVar`` (never logged), the host.

Nothing connects here."""

from collections.abc import Callable

import dagster as dg

from tiklive_assets import settings
from tiklive_assets.research.client import QuotaReserver, ResearchClient, ResearchResponse


class TikTokResearchResource(dg.ConfigurableResource):
    """TikTok Research API credentials and host.

    ``TIKTOK_RESEARCH_CLIENT_KEY`` / ``_SECRET`` and ``TIKTOK_RESEARCH_BASE_URL``."""

    client_key: str
    client_secret: str
    base_url: str | None = None
    backoff_initial: float = 2.0  # seconds before the first retry of a transient answer (tests use less)

    def client(
        self,
        *,
        quota: QuotaReserver | None = None,
        on_response: Callable[[ResearchResponse], object] | None = None,
        max_attempts: int = 4,
    ) -> ResearchClient:
        """A client on this host with these credentials: ``quota`` reserves each request, ``on_response`` (the
        archive) gets every answer first, ``max_attempts`` bounds the retries of a transient answer."""
        return ResearchClient(
            self.client_key,
            self.client_secret,
            self.base_url or settings.research_base_url(),
            quota=quota,
            on_response=on_response,
            max_attempts=max_attempts,
            backoff_initial=self.backoff_initial,
        )


def research_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "tiktok_research": TikTokResearchResource(
            client_key=dg.EnvVar(settings.RESEARCH_CLIENT_KEY), client_secret=dg.EnvVar(settings.RESEARCH_CLIENT_SECRET)
        )
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=research_resources())
