#!/bin/sh
# Run TorchServe in the foreground as the container's main process, so killing the container
# kills TorchServe (the official entrypoint backgrounds it and tails /dev/null).
set -eu
cd /home/model-server/keys
set -- --foreground --ncs \
  --model-store /home/model-server/model-store \
  --ts-config /home/model-server/config/config.properties \
  --log-config /home/model-server/config/log4j2.xml \
  --models "signflow=signflow-${MODEL_VERSION}.mar" \
  --enable-model-api "$@"
if [ "${TS_TOKEN_AUTH}" = "false" ]; then set -- "$@" --disable-token-auth; fi
exec torchserve "$@"
