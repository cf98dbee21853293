"""Allow `python -m mailaudit`."""

from mailaudit.cli import main

main()
