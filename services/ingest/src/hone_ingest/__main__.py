"""`python -m hone_ingest`: run the ingest service."""

from hone_ingest.app import main

main()
