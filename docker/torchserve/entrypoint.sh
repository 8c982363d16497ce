#!/bin/sh
# Run TorchServe in the foreground as the container's main process, so killing the container
# kills TorchServe (the official entrypoint backgrounds it and tails /dev/null).
#
# TorchServe takes per-model batching from the archive (model-config.yaml) when a model is loaded
# at start-up, and reads TS_* variables only with enable_envvars_config: so the model is NOT
# loaded with --models. A detached registrar (signflow-torchserve-register) registers it through
# the management API with SIGNFLOW_BATCH_SIZE / SIGNFLOW_MAX_BATCH_DELAY_MS / SIGNFLOW_WORKERS,
# exactly as the local launcher does, and the health check turns healthy once it is READY.
set -eu
# Every variable is checked before anything starts: a bad value exits 2 here, not after
# TorchServe has come up with a setting the registrar reads differently.
. "$(dirname "$0")/signflow-env.sh"
token_auth=$(signflow_bool TS_TOKEN_AUTH true) || exit 2
cd /home/model-server/keys
config=/home/model-server/config/run.properties
cp /home/model-server/config/config.properties "$config"
echo "number_of_gpu=${SIGNFLOW_NUMBER_OF_GPU:-1}" >>"$config"
if [ -n "${SIGNFLOW_TOKEN_EXPIRATION_MIN:-}" ]; then
  echo "token_expiration_min=${SIGNFLOW_TOKEN_EXPIRATION_MIN}" >>"$config"
fi
set -- --foreground --ncs \
  --model-store /home/model-server/model-store \
  --ts-config "$config" \
  --log-config /home/model-server/config/log4j2.xml \
  --enable-model-api "$@"
if [ "$token_auth" = false ]; then set -- "$@" --disable-token-auth; fi
# Detached (its parent exits at once): the init process reaps it, not Java.
(python /usr/local/bin/signflow-torchserve-register &)
exec torchserve "$@"
