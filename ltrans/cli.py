"""The ``ltrans`` command line: each command is a few lines over importable functions.

User errors (``ltrans.errors.UserError``) and file-system errors (``OSError``: an unwritable or full
output folder, a path under a regular file) print one line and exit 2; no traceback.
"""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import click

from ltrans import __version__
from ltrans.errors import UserError


class _Group(click.Group):
    """A click group that turns UserError and OSError into one clear line and exit code 2."""

    def main(self, args=None, prog_name=None, **extra):
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except UserError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except OSError as err:
            click.echo(f"error: {os_error_line(err)}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        except click.ClickException as err:  # usage errors: click's own message, exit 2
            err.show()
            sys.exit(err.exit_code)
        sys.exit(code if isinstance(code, int) else 0)  # click returns Exit codes when not standalone


def os_error_line(err: OSError) -> str:
    """'<path>: <reason>' plus what to do, for a file-system error that reached the command line."""
    paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    reason = err.strerror or str(err) or type(err).__name__
    fix = ("free some space, or choose another -o / --cache-dir" if err.errno == errno.ENOSPC
           else "check that path, or choose a writable -o / --cache-dir")
    return f"{paths}: {reason} ({fix})" if paths else f"{reason} ({fix})"


def _store(ctx: click.Context):
    from ltrans.artifacts import Store

    return Store(ctx.obj["cache_dir"])


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def _emit(rows: list[dict], columns: list[str], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        _print_table(rows, columns)


FORMAT = click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                      show_default=True, help="Output format.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ltrans")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="LTRANS_CACHE",
              default=None, help="Artifact cache (default ~/.cache/ltrans; env LTRANS_CACHE).")
@click.pass_context
def cli(ctx: click.Context, cache_dir: Path | None) -> None:
    """Latent translation: bridges between frozen generative models, swept with Ray Tune + Optuna."""
    ctx.ensure_object(dict)
    ctx.obj["cache_dir"] = cache_dir


def main() -> None:
    cli(obj={})


# Imported last: each command module registers its commands on `cli`, defined above.
from ltrans import cli_bridge, cli_cache, cli_data, cli_models, cli_report, cli_sweep

__all__ = ["cli", "cli_bridge", "cli_cache", "cli_data", "cli_models", "cli_report", "cli_sweep", "main"]
