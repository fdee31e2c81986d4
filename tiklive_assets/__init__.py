"""tiklive-assets: TikTok data APIs turned into a durable, replayable archive and a queryable warehouse."""

__version__ = "0.1.0"
