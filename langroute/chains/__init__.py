"""Decider chains: a free heuristic gate, the kNN router, then an LLM router for the unsure."""
