"""The ``metis`` command line: one module per command group."""
