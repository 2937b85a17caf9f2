"""What ``langroute serve`` keeps in the core.

:mod:`~langroute.serving.keys`: API keys with spend budgets, in a JSON Lines file.
"""
