"""Synthetic demo partnership: the project's own generator, never real people's data."""
