"""Helpers shared by every capability (no capability code here)."""
