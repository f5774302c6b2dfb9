"""`python -m iotrace` is the `iotrace` command."""

from iotrace.cli import main_entry

main_entry()
