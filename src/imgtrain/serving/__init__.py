"""Serving: the HTTP endpoint and its web page."""
