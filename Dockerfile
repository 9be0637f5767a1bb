# The Shoal appliance: the image every EC2 worker runs. Its entry point is the agent, `shoal-worker`,
# which takes jobs from the cluster's queue and runs them (docs: shared/worker/agent.py).
#
# Which image a cluster uses is chosen by one rule (shared/appliance.py, used by the CLI and the worker
# user data alike): TOIL_APPLIANCE_SELF overrides everything; otherwise
# TOIL_DOCKER_REGISTRY/TOIL_DOCKER_NAME tagged with the installed Shoal version. Build and push it so:
#   docker build -t "$TOIL_DOCKER_REGISTRY/$TOIL_DOCKER_NAME:$(python -c 'import importlib.metadata as m; print(m.version("shoal"))')" .
#
# Running it (the worker user data does this): host networking or a metadata hop limit of 2, so the
# agent reaches IMDSv2; the work directory bind-mounted at the same path inside and out; and, for jobs
# that name an image, the host's Docker socket plus its group:
#   docker run --network host -v /var/lib/shoal/work:/var/lib/shoal/work \
#     -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -e SHOAL_QUEUE_URL -e SHOAL_DLQ_URL -e SHOAL_TABLE_NAME IMAGE
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
COPY pyproject.toml README.md ./
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
