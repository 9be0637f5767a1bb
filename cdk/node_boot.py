"""What a worker or leader does at boot: the shell of its user data, built from small pure pieces.

Nothing is built or pushed by us. The node installs Docker and Python 3.11 from Amazon Linux's own
repositories, boto3 (and, on the leader, Toil) from PyPI (on a network without the internet, boto3 from a
second asset of the stack instead: ``vendored_python_runtime``), and Shoal's code from the stack's asset (an S3
object the CDK publishes at deploy time: ``shared/`` without the CLI, the local cloud and the simulator,
plus the Toil plugin's shim). The agent runs on the host as a systemd service; jobs run in the Toil
appliance (``quay.io/ucsc_cgl/toil:<Toil's dockerTag>``), each in a container of its own
(shared/worker/isolation.py): on a bridge network whose traffic to the metadata service the host drops,
without the Docker socket, with short-lived credentials of the job role (the job store's bucket only)
that a timer refreshes. Why the agent is not in the appliance: the appliance's Python (3.10 for Toil
9.6.0) is older than Shoal's (3.11+), and the agent needs the host's process table to end a job's tree.

Each piece is a list of lines; ``tests/cdk/test_node_boot.py`` runs the agent-install piece for real.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence

OPT = "/opt/shoal"
AGENT_ZIP = f"{OPT}/agent.zip"
PACKAGES_ZIP = f"{OPT}/packages.zip"  # the agent's requirements, for networks without PyPI
AGENT_DIR = f"{OPT}/agent"  # PYTHONPATH of the agent and of the leader's Toil
VENV = f"{OPT}/venv"
PYTHON = "python3.11"  # Amazon Linux 2023's newest packaged Python that Shoal supports
ENV_FILE = "/etc/shoal/agent.env"
AGENT_LOG = "/var/log/shoal/agent.log"
JOB_NETWORK = "shoal-jobs"
JOB_BRIDGE = "shoaljobs"  # the bridge interface of the job network (at most 15 characters)
JOB_CREDENTIALS_DIR = "/run/shoal/job-credentials"
IMDS_V4 = "169.254.169.254"
IMDS_V6 = "fd00:ec2::254"
CREDENTIAL_SECONDS = 3600  # the longest a role chained from the instance role may have
REFRESH_MINUTES = 15  # well inside botocore's refresh window (it re-reads when 15 or 10 minutes are left)


def preamble() -> list[str]:
    return [
        "set -euo pipefail",
        'retry() { for i in 1 2 3 4 5; do "$@" && return 0; sleep $((i * 5)); done; return 1; }',
    ]


def instance_identity() -> list[str]:
    """``$INSTANCE_ID`` from IMDSv2 (the host is one hop away: a hop limit of 1 is enough)."""
    return [
        "TOKEN=$(curl -sS -X PUT http://169.254.169.254/latest/api/token "
        '-H "X-aws-ec2-metadata-token-ttl-seconds: 300")',
        'INSTANCE_ID=$(curl -sS -H "X-aws-ec2-metadata-token: $TOKEN" '
        "http://169.254.169.254/latest/meta-data/instance-id)",
    ]


def install_packages(*, docker: bool = True) -> list[str]:
    packages = ["python3.11", "python3.11-pip", "amazon-cloudwatch-agent", *(["docker"] if docker else [])]
    lines = [f"retry dnf install -y {' '.join(packages)}"]
    if docker:
        lines.append("systemctl enable --now docker")
    return lines


def python_runtime(requirements: Sequence[str]) -> list[str]:
    """A venv with exactly these requirements from PyPI (pinned by the caller)."""
    return [
        f"{PYTHON} -m venv {VENV}",
        f"retry {VENV}/bin/pip install --quiet --disable-pip-version-check {' '.join(map(shlex.quote, requirements))}",
    ]


def vendored_python_runtime(*, zip_path: str = PACKAGES_ZIP, venv: str = VENV, python: str = PYTHON) -> list[str]:
    """A venv without pip whose ``site-packages`` is the packages asset (node_code.NodePackages): no PyPI."""
    return [
        f"{python} -m venv --without-pip {venv}",
        f"SITE=$({venv}/bin/python -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))')",
        f'{venv}/bin/python -m zipfile -e {zip_path} "$SITE"',
    ]


def download(bucket: str, key: str, region: str, target: str) -> list[str]:
    return [f"mkdir -p {OPT}", f"retry aws s3 cp --region {region} s3://{bucket}/{key} {target}"]


def download_agent(bucket: str, key: str, region: str) -> list[str]:
    return [f"mkdir -p {OPT}", f"retry aws s3 cp --region {region} s3://{bucket}/{key} {AGENT_ZIP}"]


def unpack_agent(
    *, zip_path: str = AGENT_ZIP, target: str = AGENT_DIR, python: str = f"{VENV}/bin/python"
) -> list[str]:
    """Unpack the asset and prove the agent imports from it (the part tests run locally)."""
    return [
        f"rm -rf {target} && mkdir -p {target}",
        f"{python} -m zipfile -e {zip_path} {target}",
        f"PYTHONPATH={target} {python} -c 'import shared.worker.main, shared.appliance; print(shared.__file__)'",
    ]


def job_network(*, block_metadata: bool) -> list[str]:
    """The bridge job containers use; unless allowed, the host drops its packets to IMDS (v4 and v6)."""
    lines = [
        f"docker network inspect {JOB_NETWORK} >/dev/null 2>&1 || docker network create --driver bridge "
        f"--opt com.docker.network.bridge.name={JOB_BRIDGE} {JOB_NETWORK}",
    ]
    if block_metadata:
        for tables, address in (("iptables", IMDS_V4), ("ip6tables", IMDS_V6)):
            rule = f"DOCKER-USER -i {JOB_BRIDGE} -d {address} -j DROP"
            check = f"{tables} -C {rule} 2>/dev/null || {tables} -I {rule}"
            lines.append(check if tables == "iptables" else f"({check}) || true  # no IPv6: nothing to block")
    return lines


# `aws sts assume-role --query`: the answer in the format of botocore's credential_process (Version 1).
CREDENTIALS_QUERY = (
    "{Version: `1`, AccessKeyId: Credentials.AccessKeyId, SecretAccessKey: Credentials.SecretAccessKey, "
    "SessionToken: Credentials.SessionToken, Expiration: Credentials.Expiration}"
)


def credentials_config(directory: str, region: str) -> str:
    """The AWS config job containers read (``AWS_CONFIG_FILE``): credentials from the refreshed file."""
    return f"[default]\ncredential_process = cat {directory}/credentials.json\nregion = {region}\n"


def job_credentials(role_arn: str, region: str) -> list[str]:
    """A config whose ``credential_process`` reads the job role's credentials, refreshed by a timer."""
    query = CREDENTIALS_QUERY
    directory = JOB_CREDENTIALS_DIR
    refresh = "\n".join(
        [
            "#!/bin/bash",
            "set -euo pipefail",
            f'aws sts assume-role --region {region} --role-arn {role_arn} --role-session-name "$(hostname -s)" '
            f"--duration-seconds {CREDENTIAL_SECONDS} --query {shlex.quote(query)} --output json "
            f"> {directory}/credentials.json.tmp",
            f"chmod 0644 {directory}/credentials.json.tmp",
            f"mv -f {directory}/credentials.json.tmp {directory}/credentials.json",
        ]
    )
    config = credentials_config(directory, region)
    service = (
        "[Unit]\nDescription=Shoal job role credentials\n"
        "[Service]\nType=oneshot\nExecStart=/usr/local/bin/shoal-job-credentials\n"
    )
    timer = (
        "[Unit]\nDescription=Refresh the Shoal job role credentials\n[Timer]\n"
        f"OnBootSec=0\nOnUnitActiveSec={REFRESH_MINUTES}min\n[Install]\nWantedBy=timers.target\n"
    )
    return [
        f"mkdir -p {directory} && chmod 0755 {directory}",
        *write_file("/usr/local/bin/shoal-job-credentials", refresh, mode="0755"),
        *write_file(f"{directory}/config", config),
        *write_file("/etc/systemd/system/shoal-job-credentials.service", service),
        *write_file("/etc/systemd/system/shoal-job-credentials.timer", timer),
        "retry /usr/local/bin/shoal-job-credentials",
        "systemctl daemon-reload && systemctl enable --now shoal-job-credentials.timer",
    ]


def agent_service(environment: Mapping[str, str], *, stop_seconds: int) -> list[str]:
    """The agent as a systemd service: SIGTERM to the agent alone evacuates it (it ends its jobs' trees)."""
    unit = "\n".join(
        [
            "[Unit]",
            "Description=Shoal agent",
            "After=docker.service network-online.target",
            "Requires=docker.service",
            "[Service]",
            f"EnvironmentFile={ENV_FILE}",
            f"Environment=PYTHONPATH={AGENT_DIR}",
            f"ExecStart={VENV}/bin/python -m shared.worker.main",
            "Restart=on-failure",
            "RestartSec=5",
            "KillMode=process",
            f"TimeoutStopSec={stop_seconds}",
            f"StandardOutput=append:{AGENT_LOG}",
            "StandardError=inherit",
            "[Install]",
            "WantedBy=multi-user.target",
        ]
    )
    lines = [f"mkdir -p /etc/shoal {AGENT_LOG.rsplit('/', 1)[0]}", f": > {ENV_FILE}", f"chmod 0600 {ENV_FILE}"]
    lines += [f"echo {shlex.quote(f'{key}={value}')} >> {ENV_FILE}" for key, value in environment.items()]
    lines += [
        f'echo "SHOAL_NODE_ID=$INSTANCE_ID" >> {ENV_FILE}',
        *write_file("/etc/systemd/system/shoal-agent.service", unit + "\n"),
        "systemctl daemon-reload && systemctl enable --now shoal-agent.service",
    ]
    return lines


def log_shipping(log_group: str, path: str = AGENT_LOG) -> list[str]:
    """The CloudWatch agent sends ``path`` to ``log_group``, one stream per instance."""
    config = {
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {"file_path": path, "log_group_name": log_group, "log_stream_name": "{instance_id}"}
                    ]
                }
            }
        }
    }
    target = "/opt/aws/amazon-cloudwatch-agent/etc/shoal.json"
    return [
        *write_file(target, json.dumps(config)),
        f"/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:{target}",
    ]


def write_file(path: str, text: str, *, mode: str = "0644") -> list[str]:
    """A heredoc that writes ``text`` verbatim (a quoted delimiter: no expansion)."""
    return [f"cat > {path} <<'SHOAL_EOF'\n{text.rstrip(chr(10))}\nSHOAL_EOF", f"chmod {mode} {path}"]
