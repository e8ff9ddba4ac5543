"""Core commands."""
import click
COMMANDS: list[click.Command] = []
