"""The ``langroute`` command line: nothing at run time imports this package.

:mod:`~langroute.cli.app` holds the typer app and :func:`~langroute.cli.app.main`;
:mod:`~langroute.cli.evaluation` the ``eval``/``tune``/``calibrate``/``compare`` commands;
:mod:`~langroute.cli.labels` the ``label`` command.
"""
