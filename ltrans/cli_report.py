"""``ltrans report RUN_DIR [RUN_DIR ...]``: one offline HTML page over sweep run folders (``ltrans.analysis``).

plotly and pandas are imported only when the command runs, so ``ltrans --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from ltrans.cli import cli


@cli.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR...")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default RUN_DIR/report.html for one run, ./report.html for several).")
@click.option("--examples/--no-examples", default=False, show_default=True,
              help="Retrain the best bridge of each pair (as long as its trial took; cached afterwards) to show "
                   "translation grids and audio; sweeps keep no bridges.")
@click.option("--title", default=None, help="Page title (default: the sweeps' names).")
@click.pass_context
def report(ctx: click.Context, run_dirs: tuple[Path, ...], out: Path | None, examples: bool, title: str | None) -> None:
    """Leaderboard, pair matrix, ablations, speed, importance, curves and examples of sweep runs, in one HTML file.

    Several RUN_DIRs are compared in the same figures, coloured by run.
    """
    from ltrans.analysis.report import write_report

    written = write_report(list(run_dirs), out, store_root=ctx.obj.get("cache_dir"), examples=examples, title=title)
    seconds = sum(written.timings.values())
    click.echo(f"report: {written.path} ({len(written.plot_ids)} figures, {seconds:.1f} s)")
