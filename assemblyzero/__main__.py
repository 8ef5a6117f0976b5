"""`python -m assemblyzero lld-all ...`: the same as the `assemblyzero` command."""

from assemblyzero.entry import main

main()
