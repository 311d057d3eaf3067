"""Ranking: fusing the retrievers' lists into one ranking (pure functions and small models)."""
