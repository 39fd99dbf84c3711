#!/usr/bin/env bash
# smudge data: the world is the same byte for byte for the same seed and
# differs for another; every file it writes passes 'data check'; 'data
# check' exits 0 on good files and 1 (naming file:line: field) on bad ones;
# 'data meraser' writes sets that check clean; the real samples check clean.
set -u
smudge=${SMUDGE:?SMUDGE must point at the smudge binary}
assets=${SMUDGE_ASSETS:-}
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out err=$tmp/err
expect_rc() { # want_rc description command...
  local want=$1 what=$2; shift 2
  "$@" >"$out" 2>"$err"; local rc=$?
  if [ "$rc" = "$want" ]; then ok; else bad "$what: exit $rc, wanted $want ($(head -c 300 "$err"))"; fi
}
expect_out() { # pattern description
  if grep -q -- "$1" "$out"; then ok; else bad "$2: stdout lacks '$1': $(head -c 300 "$out")"; fi
}
expect_err() {
  if grep -q -- "$1" "$err"; then ok; else bad "$2: stderr lacks '$1': $(head -c 300 "$err")"; fi
}

small="--corpus-kb 200 --heldout-kb 20 --instructions 400 --items 40 --train-items 60"
expect_rc 0 "world --help" "$smudge" data world --help
expect_out "usage: smudge data world" "world help"
expect_rc 0 "check --help" "$smudge" data check --help
expect_out "usage: smudge data check" "check help"
expect_rc 0 "meraser --help" "$smudge" data meraser --help
expect_rc 2 "data without subcommand" "$smudge" data
expect_rc 2 "unknown subcommand" "$smudge" data frob
expect_rc 2 "world without --out" "$smudge" data world --seed 3
expect_rc 2 "bad seed" "$smudge" data world --seed -4 --out "$tmp/x"
expect_rc 2 "bad size" "$smudge" data world --corpus-kb lots --out "$tmp/x"
expect_err "corpus-kb" "bad size names the option"

expect_rc 0 "world seed 7 (a)" "$smudge" data world --seed 7 --out "$tmp/a" $small
expect_rc 0 "world seed 7 (b)" "$smudge" data world --seed 7 --out "$tmp/b" $small
expect_rc 0 "world seed 8" "$smudge" data world --seed 8 --out "$tmp/c" $small
if diff -r "$tmp/a" "$tmp/b" >/dev/null; then ok; else bad "same seed, different files: $(diff -rq "$tmp/a" "$tmp/b" | head -3)"; fi
if cmp -s "$tmp/a/corpus.txt" "$tmp/c/corpus.txt"; then bad "seeds 7 and 8 give the same corpus"; else ok; fi
if cmp -s "$tmp/a/superglue/COPA/test.jsonl" "$tmp/c/superglue/COPA/test.jsonl"; then bad "seeds 7 and 8 give the same COPA"; else ok; fi

for f in sciq/train.json sciq/valid.json sciq/test.json \
         superglue/{COPA,RTE,BoolQ,WSC}/{train,val,test}.jsonl instructions.jsonl corpus.txt heldout.txt; do
  expect_rc 0 "check $f" "$smudge" data check "$tmp/a/$f"
done
expect_rc 0 "check COPA test" "$smudge" data check "$tmp/a/superglue/COPA/test.jsonl"
expect_out "copa, 40 records" "COPA test count"
expect_rc 0 "check instructions" "$smudge" data check "$tmp/a/instructions.jsonl"
expect_out "guanaco, 400 records" "instructions count"
grep -q "what [1-9].*how [1-9].*why [1-9].*other [1-9]" "$out" && ok || bad "instructions lack a question type: $(cat "$out")"

# a corrupted copy: label removed from record 5
sed '5s/"label": [a-z0-9]*/"lobel": 0/' "$tmp/a/superglue/BoolQ/val.jsonl" > "$tmp/BoolQ-bad.jsonl"
expect_rc 1 "check corrupted BoolQ" "$smudge" data check "$tmp/BoolQ-bad.jsonl"
expect_out "BoolQ-bad.jsonl:5: field 'label' missing" "corrupted BoolQ message"
expect_out "boolq, 39 records" "good records still counted"
expect_rc 1 "check with a wrong --format" "$smudge" data check "$tmp/a/superglue/BoolQ/val.jsonl" --format copa
expect_out "field 'premise' missing" "wrong format names a field"
expect_rc 2 "unknown format name" "$smudge" data check "$tmp/a/corpus.txt" --format nope
expect_err "unknown format 'nope'" "unknown format message"
expect_rc 1 "missing file" "$smudge" data check "$tmp/none.jsonl"
expect_err "none.jsonl" "missing file named"
head -c 3000 "$tmp/a/sciq/test.json" > "$tmp/sciq-trunc.json"
expect_rc 1 "truncated SciQ" "$smudge" data check "$tmp/sciq-trunc.json" --format sciq
expect_out "sciq-trunc.json:[0-9]*: truncated JSON" "truncated SciQ message"

mkdir -p "$tmp/m"
expect_rc 0 "meraser from the world" "$smudge" data meraser --from "$tmp/a/instructions.jsonl" --out "$tmp/m" --mismatched 60 --recover 120 --seed 3
expect_rc 0 "check mismatched" "$smudge" data check "$tmp/m/mismatched_dataset.json"
expect_out "meraser-mismatched, 60 records" "mismatched count"
expect_rc 0 "check recover" "$smudge" data check "$tmp/m/recover_dataset.json"
expect_out "meraser-recover, 120 records" "recover count"
expect_rc 1 "meraser asking too much" "$smudge" data meraser --from "$tmp/a/instructions.jsonl" --out "$tmp/m" --mismatched 300 --recover 600

if [ -n "$assets" ] && [ -d "$assets/data/superglue" ]; then
  d=$assets/data
  for f in superglue/{COPA,RTE,BoolQ,WSC}/{train,val}.jsonl sciq/{train,valid,test}.json \
           dolly/databricks-dolly-15k.head9.jsonl meraser/mismatched_dataset.json meraser/recover_dataset.json; do
    expect_rc 0 "check real $f" "$smudge" data check "$d/$f"
  done
  expect_rc 0 "check real WSC" "$smudge" data check "$d/superglue/WSC/val.jsonl"
  expect_out "wsc, 104 records" "real WSC count"
else
  echo "note: SMUDGE_ASSETS/data absent, real-sample checks skipped" >&2
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
