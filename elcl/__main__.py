"""Allows `python -m elcl ...` and `torchrun -m elcl ...`."""

from elcl.cli.app import main

if __name__ == "__main__":
    main()
