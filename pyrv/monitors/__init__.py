"""Verification realm: monitors and their instances, hook tables, reactors and the registry."""
