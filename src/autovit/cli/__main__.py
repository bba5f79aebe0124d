"""`python -m autovit.cli ...` (also what `torchrun -m autovit.cli ...` runs on every process)."""

from autovit.cli import main

main()
