"""Runnable scripts (each starts with the command that runs it). A regular package, so that `scripts`
packages other wheels install at top level (verl ships one) cannot shadow it."""
