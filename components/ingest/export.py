"""Command line: `python -m components.ingest.export --examples out/ --output tfrecords/`.

Writes the raw splits of an ingest output (Parquet, `components.raw_splits`) as gzip
TFRecords of tf.Examples, one file per Parquet file under `<output>/<split>/`, for tools that
take tf.Examples (the features of `contract.features.raw_feature_spec`). A folder that is no
ingest output exits with "error: <message>" on stderr and status 2.
"""

from __future__ import annotations

import click

from contract import schema as S


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--examples", "examples_dir", required=True, help="An ingest output directory.")
@click.option("--output", "output_dir", required=True, help="Where to write the TFRecords.")
@click.option(
    "--split",
    "splits",
    type=click.Choice(S.SPLITS),
    multiple=True,
    help="A split to export; repeat it for several. Default: every split.",
)
def main(examples_dir: str, output_dir: str, splits: tuple[str, ...]) -> None:
    """Export the raw splits of an ingest output as gzip TFRecords of tf.Examples."""
    from components import raw_splits  # Beam, pyarrow and tfx_bsl load only for the work

    try:
        written = raw_splits.export_tfrecords(examples_dir, output_dir, splits or S.SPLITS)
    except FileNotFoundError as err:
        click.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None
    click.echo(f"wrote {len(written)} file(s) under {output_dir}")


if __name__ == "__main__":
    main()
