"""Helpers the test tiers, benchmarks and measurements share (the conftest.py files hold fixtures only)."""
