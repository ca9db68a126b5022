"""Placeholder: filled in below."""
EXPLANATIONS = {}
FINDINGS = {}
NOT_FOUND_BY_THE_KIT = []
