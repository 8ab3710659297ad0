"""Demo reference CSVs for a fictional district; a package only so the files ship with it."""
