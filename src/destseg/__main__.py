"""``python -m destseg``: the ``destseg`` command (:mod:`destseg.app.main`)."""

from destseg.app.main import main

main()
