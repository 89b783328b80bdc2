"""``gleitzeit migrate-config OLD.(yaml|json) [-o NEW.toml]``.

Reads an old config (and the old ``GLEITZEIT_OLLAMA_*``/``GLEITZEIT_PYTHON_*``/
``GLEITZEIT_DOCKER_*`` environment variables, unless ``--no-env``), writes the new TOML config
(to ``-o`` or standard output) and prints a report of every key: kept, changed (how) or
dropped (why). The written file is checked with the core's config loader first.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from gleitzeit_core import ConfigError, GleitzeitError, guarded, load_config

__all__ = ["migrate_config_command"]


@click.command("migrate-config")
@click.argument("old", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the new TOML config here (default: standard output).",
)
@click.option("--no-env", is_flag=True, help="Ignore the old GLEITZEIT_* environment variables.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@guarded
def migrate_config_command(old: Path, output: Path | None, no_env: bool, force: bool) -> None:
    """Migrate an old provider config (YAML or JSON) to the new TOML config."""
    import tomllib

    from gleitzeit_legacy.migration import load_old, migrate

    def refuse(*problems: str) -> ConfigError:  # the old file's problem: exit 2
        return ConfigError([f"migrate-config: {problem}" for problem in problems])

    try:
        data = load_old(old)
        migration = migrate(data, environ={} if no_env else os.environ, source=str(old))
    except (OSError, ValueError) as exc:
        raise refuse(str(exc)) from None
    except Exception as exc:  # a YAML syntax error, say
        raise refuse(f"cannot read {old}: {exc}") from None
    text = migration.to_toml()
    try:
        load_config(tomllib.loads(text))
    except ConfigError as exc:
        # values the old code took unchecked (a url of "not a url") that the new config refuses:
        # the old file's problem, so a config error (2), one line each, with the fix
        raise refuse(
            *(f"{old}: the new config refuses {problem}" for problem in exc.problems),
            f"correct these values in {old} (the new keys above are named in "
            "docs/migration.md) and run migrate-config again",
        ) from None
    except tomllib.TOMLDecodeError as exc:  # we wrote TOML we cannot read: a bug, not the user's
        raise GleitzeitError(f"migrate-config: the migrated config is invalid: {exc}") from exc
    report = "\n".join(migration.report_lines())
    if output is None:
        click.echo(text, nl=False)
        click.echo(report, err=True)
        return
    if output.exists() and not force:
        raise refuse(f"{output} exists (use --force)")
    output.write_text(text, encoding="utf-8")
    click.echo(report)
    click.echo(f"wrote {output}; check it with `gleitzeit config check {output}`")
