"""One request's execution: the decision, then every paid attempt, in order.

* :mod:`~langroute.dispatch.dispatcher`: :class:`RouteDispatcher`, the one place where
  every entry point (LangChain, LlamaIndex, ``langroute serve``) decides what to call;
* :mod:`~langroute.dispatch.routed_call`: :class:`RoutedCall`, the record of a routed call
  and its ledger rows;
* :mod:`~langroute.dispatch.escalation`: try the chosen route, then each stronger one;
* :mod:`~langroute.dispatch.cascade`: the cascade policy (cheap first, scored, escalated);
* :mod:`~langroute.dispatch.equivalents`: a route's equivalent models, tried in order;
* :mod:`~langroute.dispatch.breakers`: circuit breakers per model;
* :mod:`~langroute.dispatch.continuation`: continuing a stream that broke after output;
* :mod:`~langroute.dispatch.latency`: the latency-aware order of equivalents.
"""
