"""The ``fuxiops`` command-line tool."""
