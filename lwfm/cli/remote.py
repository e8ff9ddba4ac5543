"""CLI commands (placeholder until this area's commands land)."""

import click

COMMANDS: list[click.Command] = []
