"""Flights as rosbag2 bags: reading real bags (any storage), training sequences and shards (collecting: harness)."""
