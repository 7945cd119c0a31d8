"""Interfaces: the ``pyrv`` command."""
