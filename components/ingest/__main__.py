"""Command line: `python -m components.ingest --input 'logs/*.csv' --output out/`.

Extra Beam pipeline options go after `--`, e.g. `-- --runner=DataflowRunner --project=...`.
On unusable input it prints "error: <message>" to stderr and exits with status 2.
"""

from __future__ import annotations

import click

from components.ingest import errors, sources
from contract import schema as S

_SHOWN_DEAD_LETTERS = 5


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--input",
    "input_pattern",
    required=True,
    multiple=True,
    help="Input file or glob (CSV, JSONL, Parquet); repeat it to read several.",
)
@click.option("--output", "output_dir", required=True, help="Output directory.")
@click.option(
    "--schema", "schema_path", default="", help="RawSchema JSON file; default: the demo schema."
)
@click.option(
    "--format",
    "input_format",
    type=click.Choice((sources.AUTO, *sources.FORMATS)),
    default=sources.AUTO,
    show_default=True,
    help="Input format; auto picks it from each file's extension.",
)
@click.option(
    "--encoding", default="utf-8", show_default=True, help="Text encoding of CSV/JSONL input."
)
@click.option(
    "--funnel-policy",
    type=click.Choice(errors.FUNNEL_POLICIES),
    default=errors.REJECT,
    show_default=True,
    help="Rows with clicks > impressions etc.: dead-letter them (reject) or clip the counts.",
)
@click.option(
    "--max-bad-share",
    type=click.FloatRange(0.0, 1.0),
    default=errors.DEFAULT_MAX_BAD_SHARE,
    show_default=True,
    help="Stop with an error when more than this share of the rows is dead-lettered.",
)
@click.argument("beam_args", nargs=-1, type=click.UNPROCESSED)
def main(
    input_pattern: tuple[str, ...],
    output_dir: str,
    schema_path: str,
    input_format: str,
    encoding: str,
    funnel_policy: str,
    max_bad_share: float,
    beam_args: tuple[str, ...],
) -> None:
    """Validate, filter and split a raw engagement log into train/eval/test Parquet files."""
    try:
        schema = S.resolve_schema(schema_path)
    except (OSError, ValueError) as err:
        _fail(f"cannot load the schema {schema_path}: {err}")
    from components.ingest import job  # Beam and pyarrow load only when there is work to do

    try:
        counts = job.run_ingest(
            input_pattern,
            output_dir,
            schema,
            input_format,
            encoding,
            funnel_policy,
            beam_args,
            max_bad_share=max_bad_share,
        )
    except errors.IngestError as err:
        _fail(str(err))
    click.echo(counts.summary())
    if counts.rows_dead_letter:
        click.echo(f"first dead-lettered rows (all in {job.dead_letter_pattern(output_dir)}):")
        for record in job.read_dead_letters(output_dir)[:_SHOWN_DEAD_LETTERS]:
            click.echo(f"  [{record['reason']}] {record['message']}")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
