"""``python -m webpacs``: the ``webpacs`` command."""

from webpacs.cli.main import main

if __name__ == "__main__":
    main()
