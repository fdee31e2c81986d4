"""The TikTok Research API domain: create-date partitioned video collection, user data and the research tables."""
