"""Lexicons for `case_core.domain.extraction`; a package only so the YAML files ship with it."""
