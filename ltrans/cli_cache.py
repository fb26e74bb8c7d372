"""``ltrans cache ...``: list, verify and clear the content-addressed artifact store."""

from __future__ import annotations

import click

from ltrans.cli import FORMAT, _emit, _store, cli
from ltrans.errors import UserError

# The kinds of artifact ltrans writes (the first argument of every ``artifacts.make_key`` call).
CACHE_KINDS = ("dataset", "base_model", "classifier", "latents", "sample_quality", "report_examples")


def human_size(n: float) -> str:
    """A byte count for listings: 512 B, 1.5 KiB, 3.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _existing_store(ctx: click.Context):
    """The store of --cache-dir; UserError, without creating it, if a folder given with --cache-dir or
    $LTRANS_CACHE does not exist (a mistyped path would otherwise list 0 artifacts). The default cache
    not made yet is a fresh machine's: it lists 0 artifacts."""
    store = _store(ctx)
    if ctx.obj["cache_dir"] is not None and not store.root.is_dir():
        raise UserError(f"cache dir {store.root} does not exist; check --cache-dir or $LTRANS_CACHE "
                        "(ltrans creates it when it first caches something)")
    return store


@cli.group()
def cache() -> None:
    """The artifact cache (trained base models, latents, synthesised data)."""


@cache.command("ls")
@FORMAT
@click.pass_context
def cache_ls(ctx: click.Context, fmt: str) -> None:
    """Every cached artifact: kind, name, key, size, creation time."""
    store = _existing_store(ctx)
    rows = [{"kind": e.kind, "name": e.name, "key": e.digest[:12], "size": human_size(e.size_bytes),
             "size_bytes": e.size_bytes, "created": e.created, "path": str(e.path)}
            for e in store.entries()]
    if fmt == "table":
        click.echo(f"cache: {store.root} ({len(rows)} artifacts)")
    _emit(rows, ["kind", "name", "key", "size", "created"], fmt)


@cache.command("verify")
@click.option("--fix", is_flag=True, help="Remove the artifacts that fail, so the next run rebuilds them.")
@click.pass_context
def cache_verify(ctx: click.Context, fix: bool) -> None:
    """Re-hash every cached file against its manifest; exit 1 if any is corrupted."""
    store = _existing_store(ctx)
    results = store.verify_all()
    bad = [(e, problem) for e, problem in results if problem]
    for entry, problem in bad:
        click.echo(f"CORRUPT {entry.kind}/{entry.name}-{entry.digest[:12]}: {problem}")
        if fix:
            store.remove(entry.digest)
            click.echo(f"  removed {entry.path}")
    click.echo(f"{len(results) - len(bad)} ok, {len(bad)} corrupted")
    if bad and not fix:
        raise click.exceptions.Exit(1)


@cache.command("clear")
@click.option("--kind", default=None, type=click.Choice(CACHE_KINDS),
              help="Only this kind of artifact (`ltrans cache ls` shows each one's kind).")
@click.option("--key", "key", default=None, help="Only the artifact whose key starts with this.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def cache_clear(ctx: click.Context, kind: str | None, key: str | None, yes: bool) -> None:
    """Remove cached artifacts (all of them unless --kind or --key narrows it)."""
    store = _existing_store(ctx)
    if key is not None:  # an empty --key must not fall through to "clear everything"
        if not key.strip():
            raise UserError("--key is empty; give the first characters of an artifact's key (`ltrans cache ls` "
                            "shows them), or leave out --key to clear by --kind")
        removed = store.remove(key, kind=kind)
        if not removed:
            what = f"cached {kind} artifact" if kind else "cached artifact"
            raise UserError(f"no {what} has a key starting with {key!r}; see `ltrans cache ls`")
        click.echo(f"removed {removed}")
        return
    what = f"all {kind} artifacts" if kind else "every artifact"
    if not yes and not click.confirm(f"Remove {what} under {store.root}?", default=False):
        raise click.exceptions.Abort()
    click.echo(f"removed {store.clear(kind=kind)} artifacts")
