"""``[serve.adaptive_dial]``: the adaptive dial of ``langroute serve``, on its own timer."""

from __future__ import annotations

from typing import Any

from langroute.adaptive_dial import AdaptiveDial, AdaptiveDialConfig
from langroute.costs import CostLedger
from langroute.errors import ModelsConfigError, RouterConfigError

__all__ = ["start_dial"]


def start_dial(
    router: Any, ledger: CostLedger, config: AdaptiveDialConfig | None, where: str = ""
) -> AdaptiveDial | None:
    """Attach and start the dial the ``[serve]`` table asks for (``None``: none asked for).

    Raises:
        ModelsConfigError: The router has no dial to move, or no quality floor can be
            found for it (the models file is named).
    """
    if config is None:
        return None
    if not hasattr(router, "threshold"):
        raise ModelsConfigError(
            f"{where}[serve.adaptive_dial]: the router {type(router).__name__} has no threshold"
        )
    try:
        dial = AdaptiveDial(router, ledger, config=config)
    except RouterConfigError as exc:
        raise ModelsConfigError(f"{where}[serve.adaptive_dial]: {exc}") from exc
    return dial.start()
