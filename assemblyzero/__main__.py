"""`python -m assemblyzero lld-all ...`: the same as the `assemblyzero` command."""

from assemblyzero.cli.entry import main

main()
