"""cdk-nag acknowledgments: every suppression names its rule (or one finding of it) and says why.

cdk-nag 3 reads CDK's native acknowledgments (``Validations.of(scope).acknowledge``). The ids are
qualified with the plugin's name, as cdk-nag prints them: ``AwsSolutions::AwsSolutions-IAM5[Resource::*]``.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

PLUGIN = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge ``rule`` (``AwsSolutions-L1``, ``AwsSolutions-IAM5[Resource::*]``) on ``scope``, with why."""
    if not rule.startswith(f"{PLUGIN}-"):
        raise ValueError(f"{rule!r} is not an {PLUGIN} rule id")
    if not reason.strip():
        raise ValueError(f"acknowledging {rule} needs a reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{PLUGIN}::{rule}", reason=reason))
