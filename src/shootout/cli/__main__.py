"""`python -m shootout.cli`: the same as the `shootout` command."""

from shootout.cli import main

main()
