"""``python -m api ...`` is ``carepath ...``."""

from carepath.api.cli import main

main()
