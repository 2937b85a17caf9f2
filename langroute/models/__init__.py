"""The models behind the routes.

:mod:`~langroute.models.config`: the models file and the one call langroute makes;
:mod:`~langroute.models.scripted`: the scripted offline provider the test doubles share.
"""
