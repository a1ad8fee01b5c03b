"""`python -m dclaw ...`: the same commands as the `dclaw` script (serve starts its trainer so)."""

from dclaw.cli import main

main()
