"""Latency-aware coarse-to-fine architecture search (paper 3.3, 3.5, Algorithm 1).

`search(space, accuracy_fn, latency_model, SearchConfig(...))` runs the coarse stage (random
sampling filtered by the latency table and closed-form params) and the evolutionary fine stage
on any `accuracy_fn(arch) -> float` and any `latency_model.predict(archs) -> ndarray` (ms).
See docs/search.md.
"""

from autovit.search.baselines import flops_constrained_search, random_search
from autovit.search.coarse import CoarseResult, coarse_search
from autovit.search.budget import LatencyBudget, ResolvedBudget
from autovit.search.config import SearchConfig, parse_count, parse_latency, parse_latency_list
from autovit.search.evolution import EvolutionarySearch, SearchResult, rank, search
from autovit.search.impact import latency_impact
from autovit.search.pareto import nondominated_sort, pareto_front
from autovit.search.state import Candidate

__all__ = [
    "LatencyBudget", "ResolvedBudget",
    "Candidate", "CoarseResult", "EvolutionarySearch", "SearchConfig", "SearchResult", "coarse_search",
    "flops_constrained_search", "latency_impact", "nondominated_sort", "pareto_front", "parse_count",
    "parse_latency", "parse_latency_list", "random_search", "rank", "search",
]
