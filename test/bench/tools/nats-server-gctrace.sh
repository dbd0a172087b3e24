#!/bin/bash
# nats-server with Go's GC trace, each line stamped with the monotonic ms it was read at (comparable with the bench
# processes' clocks), appended to $GCLOG (default /tmp/nats-gctrace.log). For `throughput.ts --stalls`:
#   NATS_SERVER_BIN=bench/tools/nats-server-gctrace.sh TJ_BENCH_NATS_GCLOG=/tmp/nats-gctrace.log \
#     node --import tsx bench/throughput.ts --phases latency --stalls
# The bench reads nats-server's CPU by the pid it started, which is this script's: that column reads 0.
export GODEBUG=gctrace=1
/usr/sbin/nats-server "$@" 2> >(python3 -u -c '
import sys, time
for line in sys.stdin:
    sys.stdout.write("%.3f %s" % (time.monotonic() * 1000, line))
    sys.stdout.flush()
' >>"${GCLOG:-/tmp/nats-gctrace.log}") &
pid=$!
trap 'kill -TERM $pid' TERM INT
wait $pid
