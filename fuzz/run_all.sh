#!/bin/sh
# Runs every fuzz target one after another for SECONDS each (default 120), with its seeds and the XML dictionary.
# Usage, from fuzz/: ./run_all.sh [SECONDS] [TARGET...]   Logs: fuzz/artifacts/logs/<target>.log (git-ignored).
set -u
cd "$(dirname "$0")"
seconds=${1:-120}
[ $# -gt 0 ] && shift
targets=${*:-avatar_hash xep0008 vcard component xep0084 image stray_text component_stream}
mkdir -p artifacts/logs
for t in $targets; do
  case $t in
    image)   extra="../fixtures/images"; opts="-max_len=65536" ;;
    vcard)   extra="seeds/vcard ../fixtures/stanzas/vcard ../fixtures/stanzas/xep0153"; opts="-dict=xml.dict" ;;
    xep0008) extra="seeds/xep0008 ../fixtures/stanzas/xep0008"; opts="-dict=xml.dict" ;;
    avatar_hash) extra="seeds/avatar_hash"; opts="" ;;
    *)       extra="seeds/$t"; opts="-dict=xml.dict" ;;
  esac
  mkdir -p "corpus/$t"
  echo "== $t ($seconds s)"
  # shellcheck disable=SC2086
  cargo +nightly fuzz run -a "$t" "corpus/$t" $extra -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 $opts > "artifacts/logs/$t.log" 2>&1
  echo "   exit $?; $(grep -E '^Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb' "artifacts/logs/$t.log" | tr '\n' ' ')"
done
