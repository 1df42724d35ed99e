"""The web dashboard (``/ui``), served by ``metis serve``: see `metis.web.app`."""
