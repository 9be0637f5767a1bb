"""What EC2's error codes mean to the fleet. Errors are classified by their *code*, never their message."""

from __future__ import annotations

from botocore.exceptions import ClientError

# EC2 refused this instance type (in this zone, on this market) for now: cache it and try the next option.
OFFERING_ERROR_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientCapacityOnOutpost",
        "InsufficientFreeAddressesInSubnet",
        "UnfulfillableCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "Unsupported",
        "UnsupportedOperation",
        "InvalidInstanceType",
    }
)
# The region's EBS storage quota (gp3 TiB, or volume count) refused a launch's root volume.
VOLUME_QUOTA_CODES = frozenset({"VolumeLimitExceeded"})
# The same refusal, made after RunInstances answered: the instance goes from pending to terminated with this reason.
VOLUME_QUOTA_STATE_REASONS = frozenset({"Client.VolumeLimitExceeded"})
# A batch call refused because of some of its ids: halve it to find them.
PER_INSTANCE_ERROR_CODES = frozenset(
    {
        "InvalidInstanceID.NotFound",
        "InvalidInstanceID.Malformed",
        "IncorrectInstanceState",
        "IncorrectState",
        "UnsupportedOperation",
        "OperationNotPermitted",
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
    }
)


def error_code(error: ClientError) -> tuple[str, str]:
    """EC2's error code and message: codes classify, messages are for people."""
    details = error.response.get("Error", {})
    return str(details.get("Code", "Unknown")), str(details.get("Message", ""))
