#!/bin/sh
# Install what `python -m bench` compares against: a local redis-server (Debian package),
# redis-py, ZODB/ZEO and matplotlib. Idempotent; run as root (apt) on the bench machine.
set -e
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }
    else
        echo "redis-server is missing: run 'sudo apt-get install -y redis-server'" >&2
    fi
fi
python -m pip install --quiet redis ZODB ZEO matplotlib
