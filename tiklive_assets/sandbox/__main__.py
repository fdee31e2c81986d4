"""Run the sandbox in the foreground: ``python -m tiklive_assets.sandbox --port 8080``.

The same options as ``tiklive sandbox`` (see ``--help``), with port 8080 by default."""

import argparse

from tiklive_assets.cli.sandbox import add_options, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tiklive_assets.sandbox", description=__doc__)
    add_options(parser, port=8080)
    serve(parser.parse_args(argv), ["tiklive sandbox on {url} (X-Api-Key: {key})"])


if __name__ == "__main__":
    main()
