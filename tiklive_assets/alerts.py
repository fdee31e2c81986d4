"""Alerts: a failed run or check posts Slack-compatible JSON to a webhook, or lands in the log when none is set.

``TIKLIVE_ALERT_WEBHOOK_URL`` names the webhook (Slack incoming webhooks, Mattermost, or anything that accepts
``{"text": ...}``). A silent backup that started failing three weeks ago is the second-worst incident class,
after losing the database.
"""

from __future__ import annotations

import logging

import requests

from tiklive_assets import settings

ALERT_WEBHOOK_URL = settings.ALERT_WEBHOOK_URL
log = logging.getLogger("tiklive.alerts")


def notify(title: str, details: list[str] | None = None, *, webhook_url: str | None = None) -> str:
    """Send one alert; returns where it went ("webhook" or "log"). Never raises: alerting must not break a sensor."""
    text = f":rotating_light: *{title}*" + ("\n" + "\n".join(f"• {line}" for line in details) if details else "")
    url = webhook_url if webhook_url is not None else settings.alert_webhook_url()
    if url:
        try:
            response = requests.post(url, json={"text": text}, timeout=10)
            response.raise_for_status()
            return "webhook"
        except requests.RequestException as exc:
            log.error("alert webhook failed (%s); the alert was: %s", type(exc).__name__, text)
            return "log"
    log.error("%s", text)
    return "log"
