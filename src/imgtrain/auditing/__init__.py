"""Audit an image directory before training: duplicates, leakage between directories, conflicting labels,
class balance, odd sizes and likely label errors (audit.audit writes audit.json and audit.html)."""
