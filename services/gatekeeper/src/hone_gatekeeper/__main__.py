"""`python -m hone_gatekeeper`: the gatekeeper command (serve by default)."""

from hone_gatekeeper.app import main

main()
