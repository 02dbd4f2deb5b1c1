"""``python -m webpacs``."""

from webpacs.cli.main import main

main()
