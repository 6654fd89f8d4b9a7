"""Vectorised kernels over whole SeriesSets (numpy; no Python loop per point)."""

from tsq.kernels import maps
from tsq.kernels.aggregate import AGGREGATORS, Aggregator, reduce_segments
from tsq.kernels.buckets import Buckets, Fill, bucket_index, bucketize
from tsq.kernels.group import group_by

__all__ = ["AGGREGATORS", "Aggregator", "Buckets", "Fill", "bucket_index", "bucketize",
           "group_by", "maps", "reduce_segments"]
