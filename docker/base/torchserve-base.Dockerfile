# Stand-in for pytorch/torchserve built from local parts: same user, paths and venv-on-PATH
# conventions, so docker/torchserve/Dockerfile builds on either.
FROM signflow/python-base:local
RUN apt-get update -qq \
 && mkdir -p /usr/share/man/man1 \
 && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
RUN pip install -q -c /opt/requirements.lock torchserve==0.12.0 torch-model-archiver==0.12.0 numpy pyyaml psutil packaging \
 && useradd -m -u 1000 -s /bin/bash model-server \
 && mkdir -p /home/model-server/model-store /home/model-server/tmp /home/model-server/logs \
 && chown -R model-server /home/model-server
USER model-server
WORKDIR /home/model-server
