"""Grammars, read as package data: `importlib.resources.files("tsq.grammar")`."""
