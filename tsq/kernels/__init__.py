"""Vectorised kernels over whole SeriesSets (numpy; no Python loop per point)."""

from tsq.kernels import choose, combine, maps
from tsq.kernels.aggregate import AGGREGATORS, Aggregator, reduce_segments
from tsq.kernels.buckets import (
    Buckets,
    Fill,
    Points,
    bucket_index,
    bucketize,
    bucketize_parts,
    bucketize_unordered,
)
from tsq.kernels.group import Grouping, group_by
from tsq.kernels.window import cumulative, window

__all__ = ["AGGREGATORS", "Aggregator", "Buckets", "Fill", "Grouping", "Points", "bucket_index",
           "bucketize", "bucketize_parts", "bucketize_unordered", "choose", "combine",
           "cumulative", "group_by", "maps", "reduce_segments", "window"]
