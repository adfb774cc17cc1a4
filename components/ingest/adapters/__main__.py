"""Turn a public dataset into the raw engagement log (and its schema file).

    python -m components.ingest.adapters homedepot \
        --input ../shared/data/homedepot/train.csv.zip --out hd.csv --schema-out hd_schema.json
    python -m components.ingest.adapters esci --input ../shared/data/esci_sample/esci.csv \
        --out esci.csv

The pipeline runs them itself when given input_data="homedepot:<file>" or "esci:<file>".
"""

import sys
from pathlib import Path

import click

from components.ingest.adapters import esci, homedepot, write_log


@click.group()
def cli() -> None:
    """Dataset adapters into MLPR's raw log format."""


@cli.command("homedepot")
@click.option("--input", "source", required=True, help="train.csv or train.csv.zip.")
@click.option("--out", required=True, help="Output log (.csv, .jsonl or .parquet).")
@click.option("--schema-out", default=None, help="Where to write the schema JSON.")
@click.option("--seed", default=0, show_default=True, help="Seed of the click model.")
def homedepot_command(source: str, out: str, schema_out: str | None, seed: int) -> None:
    """Home Depot relevance data, with engagement simulated by a seeded click model."""
    try:
        log = homedepot.simulate(homedepot.read_source(source), seed=seed)
    except (OSError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    _write(log, homedepot.SCHEMA, out, schema_out)


@cli.command("esci")
@click.option("--input", "source", required=True, help="ESCI examples (CSV or Parquet).")
@click.option("--products", default=None, help="ESCI products file, when not joined already.")
@click.option("--locale", default="us", show_default=True, help="Product locale to keep.")
@click.option("--out", required=True, help="Output log (.csv, .jsonl or .parquet).")
@click.option("--schema-out", default=None, help="Where to write the schema JSON.")
@click.option("--seed", default=0, show_default=True, help="Seed of the click model.")
def esci_command(source, products, locale, out, schema_out, seed) -> None:
    """Amazon Shopping Queries (ESCI), with engagement simulated by a seeded click model."""
    try:
        log = esci.simulate(esci.read_source(source, products), seed=seed, locale=locale)
    except (OSError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    _write(log, esci.SCHEMA, out, schema_out)


def _write(log, schema, out: str, schema_out: str | None) -> None:
    schema_path = schema_out or str(Path(out).with_suffix(".schema.json"))
    write_log(log, schema, out, schema_path)
    click.echo(
        f"wrote {len(log)} rows ({log['query'].nunique()} queries) to {out}; schema {schema_path}"
    )


if __name__ == "__main__":
    cli()
