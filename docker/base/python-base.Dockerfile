# Python 3.11 + the pinned torch CPU wheel on the locally made Debian base (no registry needed).
FROM signflow/debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates curl tini \
 && update-ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
COPY wheels/ /tmp/wheels/
# The local wheel when the context has it, else the same version from the package index.
RUN if ls /tmp/wheels/torch-*.whl >/dev/null 2>&1; then pip install -q /tmp/wheels/torch-*.whl; \
    else pip install -q torch==2.13.0; fi && rm -rf /tmp/wheels
COPY requirements.lock /opt/requirements.lock
