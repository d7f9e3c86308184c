"""Thin Typer front end; all logic lives in the library modules."""
