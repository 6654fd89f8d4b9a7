"""Vectorised kernels over whole SeriesSets (numpy; no Python loop per point)."""

from tsq.kernels import choose, combine, maps
from tsq.kernels.aggregate import AGGREGATORS, Aggregator, reduce_segments
from tsq.kernels.blocks import Blocks
from tsq.kernels.buckets import (
    Buckets,
    Fill,
    Points,
    bucket_index,
    bucketize,
    bucketize_parts,
    bucketize_unordered,
    points_of,
)
from tsq.kernels.dense import bucketize_groups
from tsq.kernels.group import Grouping, group_by
from tsq.kernels.window import cumulative, window

__all__ = ["AGGREGATORS", "Aggregator", "Blocks", "Buckets", "Fill", "Grouping", "Points",
           "bucket_index", "bucketize", "bucketize_groups", "bucketize_parts",
           "bucketize_unordered", "choose", "combine", "cumulative", "group_by", "maps",
           "points_of", "reduce_segments", "window"]
