"""Placeholder until the catalog rows land (being filled in)."""

PRICE_REGIONS: tuple[str, ...] = ("us-east-1", "us-west-2")

# name: (vcpus, memory GiB, GPUs, instance storage GB, on-demand USD/h us-east-1, on-demand USD/h us-west-2)
INSTANCE_ROWS: dict[str, tuple[int, float, int, float, float, float]] = {
    "t3.large": (2, 8, 0, 0, 0.0832, 0.0832),
    "c5.4xlarge": (16, 32, 0, 0, 0.68, 0.68),
}
