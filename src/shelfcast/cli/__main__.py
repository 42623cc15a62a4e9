"""`python -m shelfcast.cli`: the same as the `shelfcast` command."""

from shelfcast.cli import main

main()
