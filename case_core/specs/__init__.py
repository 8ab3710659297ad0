"""Packaged workflow specs (YAML data); a package only so the files ship with it."""
