"""`python -m hone_trainer`: the trainer command (serve by default, or run-now)."""

from hone_trainer.app import main

# Guarded: training runs in spawned children, which import the main module again.
if __name__ == "__main__":
    main()
