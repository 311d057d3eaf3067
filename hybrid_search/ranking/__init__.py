"""Ranking: fusing the retrievers' lists into one ranking (pure functions and small models).

:mod:`.rankers` holds the one :class:`~hybrid_search.ranking.rankers.Ranker` protocol, one ranker per fusion and
the table that picks a query's ranker; the math is in :mod:`.fusion` (linear, RRF), :mod:`.photo_fusion`
(kind-aware photo fusion), :mod:`.learned` (a learned linear ranker) and :mod:`.adaptive` (per-query weights).
This layer sees plain data only: no engine client, nothing of the search stages.
"""
