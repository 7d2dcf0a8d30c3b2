"""``python -m api ...`` is ``carepath ...``."""

from api.cli import main

main()
