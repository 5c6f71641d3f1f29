#!/bin/sh
# Runs Python with boto3, botocore and moto: the venv that scripts/test-peers.sh makes, reached as
# $FERRY_PEERS_BIN/python-aws (default ~/.cache/ferry-peers/bin). Missing: exit 1, so the test fails.
bin=${FERRY_PEERS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry-peers/bin}
if [ ! -x "$bin/python-aws" ] || [ ! -x "$bin/moto_server" ]; then
  echo "aws_python: $bin/python-aws or $bin/moto_server missing; run scripts/test-peers.sh" >&2
  exit 1
fi
export FERRY_PEERS_BIN="$bin"
exec "$bin/python-aws" "$@"
