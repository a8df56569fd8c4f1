"""`python -m wmcli` runs the CLI (also what `torchrun -m wmcli` starts)."""

from wmcli.cli import main

if __name__ == "__main__":
    main()
