#!/usr/bin/env bash
# Start or stop a Docker engine for the compose tests on a machine without systemd (CI, dev VMs).
# `start` installs Debian's docker.io + docker-compose when missing and starts dockerd in the
# background, recording its PID; `stop` stops exactly that PID. An engine that was already
# running (a developer's own) is left alone by both.
set -euo pipefail
state_dir=${SIGNFLOW_DOCKERD_DIR:-/tmp/signflow-dockerd}
pid_file=$state_dir/dockerd.pid

engine_up() { docker info >/dev/null 2>&1; }

case "${1:-}" in
  start)
    need_install=0
    command -v dockerd >/dev/null 2>&1 || need_install=1
    command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need_install=1
    if [ "$need_install" = 1 ]; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's docker.io, docker-compose and debootstrap" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
          docker.io docker-compose debootstrap >/dev/null
      else
        echo "no Docker engine: install docker.io and docker-compose (or Docker Engine + compose v2)" >&2
        exit 3
      fi
    fi
    command -v debootstrap >/dev/null 2>&1 || {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
    if engine_up; then echo "Docker engine already running: using it" >&2; exit 0; fi
    mkdir -p "$state_dir"
    nohup dockerd >"$state_dir/dockerd.log" 2>&1 &
    echo $! >"$pid_file"
    for _ in $(seq 1 60); do
      engine_up && { echo "dockerd started (pid $(cat "$pid_file"))" >&2; exit 0; }
      kill -0 "$(cat "$pid_file")" 2>/dev/null || break
      sleep 0.5
    done
    echo "dockerd did not come up; last lines of its log:" >&2
    tail -n 20 "$state_dir/dockerd.log" >&2
    exit 3
    ;;
  stop)
    [ -f "$pid_file" ] || exit 0
    pid=$(cat "$pid_file")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pid_file"
    ;;
  *)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
