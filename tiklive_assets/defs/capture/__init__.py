"""Capture domain: the raw archive, discovery queue, videos, profiles, follow graph and comments."""
