"""Parquet lake: partition paths and atomic partition writes (see lake.store)."""

from lake.store import (
    PART_FILE,
    LakeError,
    dataset_path,
    has_partition,
    list_partitions,
    partition_file,
    partition_name,
    partition_path,
    read_partition,
    scan_dataset,
    scan_partition,
    sink_partition,
    write_partition,
)

__all__ = [
    "PART_FILE",
    "LakeError",
    "dataset_path",
    "has_partition",
    "list_partitions",
    "partition_file",
    "partition_name",
    "partition_path",
    "read_partition",
    "scan_dataset",
    "scan_partition",
    "sink_partition",
    "write_partition",
]
