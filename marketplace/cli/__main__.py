"""`python -m marketplace.cli` runs the `datadebit` command."""

from marketplace.cli.main import main

main()
