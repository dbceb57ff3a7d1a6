"""One module per source: how its records change the database."""
