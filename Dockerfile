# An image of the Shoal agent alone: its entry point is `shoal-worker` (shared/worker/main.py), which takes
# jobs from a cluster's queue and runs them.
#
# This is NOT what a deployed cluster's workers run, and `cdk deploy` neither builds nor needs it. A worker
# installs the agent on the host from the stack's code asset (cdk/node_code.py, cdk/node_boot.py) and runs
# each job in a container of Toil's appliance image (quay.io/ucsc_cgl/toil:<Toil's dockerTag>, chosen by
# TOIL_APPLIANCE_SELF / TOIL_DOCKER_REGISTRY / TOIL_DOCKER_NAME as Toil chooses it: shared/appliance.py).
# It is kept for running an agent by hand, outside the deployed system (a test or development setup). It
# has no Toil: jobs without an image run inside it as plain processes, so give Toil's jobs an image
# (SHOAL_JOB_IMAGE, or the batch system's --shoalJobImage) or install Toil into it.
#
#   docker build -t shoal-agent .
#
# Running it: credentials that may use the cluster's queue, dead-letter queue and table (an instance role
# needs host networking or a metadata hop limit of 2); SHOAL_NODE_ID, else the instance id and region come
# from the instance metadata service; the work directory bind-mounted at the same path
# inside and out (a job that names an image gets its directory mounted by that path); and, for jobs that
# name an image, the host's Docker socket plus its group, which makes the agent root on the host:
#   docker run --network host -v /var/lib/shoal/work:/var/lib/shoal/work \
#     -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -e SHOAL_QUEUE_URL -e SHOAL_DLQ_URL -e SHOAL_TABLE_NAME -e SHOAL_NODE_ID -e AWS_REGION shoal-agent
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SHOAL_WORK_DIR=/var/lib/shoal/work

# The Docker CLI (not the daemon) runs jobs that name an image, through the host's socket.
RUN apt-get update \
    && (apt-get install -y --no-install-recommends docker-cli || apt-get install -y --no-install-recommends docker.io) \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/shoal
COPY pyproject.toml README.md toil_batch_system_shoal.py ./
COPY shared ./shared
COPY functions ./functions
COPY cdk ./cdk
RUN pip install . && rm -rf /opt/shoal/build

RUN useradd --create-home --uid 10001 --user-group shoal \
    && mkdir -p /var/lib/shoal/work \
    && chown -R shoal:shoal /var/lib/shoal
USER shoal
WORKDIR /var/lib/shoal

ENTRYPOINT ["shoal-worker"]
