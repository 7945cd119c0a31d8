"""Formal realm: deterministic automata and the DOT files that describe them (spec §3.1, §7)."""
