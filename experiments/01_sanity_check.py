"""The seed's experiment, kept at its old path: ``python experiments/01_sanity_check.py``."""

from anee_lite.cli import run_sanity_check

if __name__ == "__main__":
    run_sanity_check()
