"""Formats that cross a seam, each defined once and imported by both sides.

A DynamoDB item written by a state machine and read by an adapter, a Step Functions result path
written by the CDK app and read by a Lambda, a decision-log entry written by a round and read by
``shoal status``: each has one type or one set of names here. Pure like ``shared.domain`` (the
standard library and the domain only), so the CDK app, the Lambdas, the CLI and the agent all import
it without pulling in CDK, boto3 or Powertools.
"""
