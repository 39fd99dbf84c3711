#!/usr/bin/env bash
# The command line's contract: --help everywhere, exit codes scripts can
# trust (0 ok, 1 failure, 2 usage), errors that name what is wrong, and the
# real checkpoints in ../shared/assets scoring through every loader.
set -u
smudge=${SMUDGE:?SMUDGE must point at the smudge binary}
assets=${SMUDGE_ASSETS:-}
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect_rc() { # want_rc description command...
  local want=$1 what=$2; shift 2
  "$@" >/tmp/cli_out.$$ 2>/tmp/cli_err.$$; local rc=$?
  if [ "$rc" = "$want" ]; then ok; else bad "$what: exit $rc, wanted $want ($(head -c 300 /tmp/cli_err.$$))"; fi
}
expect_err() { # pattern description
  if grep -q -- "$1" /tmp/cli_err.$$; then ok; else bad "$2: stderr lacks '$1': $(head -c 300 /tmp/cli_err.$$)"; fi
}

expect_rc 0 "smudge --help" "$smudge" --help
for cmd in $("$smudge" --help | awk '/^commands:/{f=1;next} f && !NF {exit} f {print $1}'); do
  expect_rc 0 "$cmd --help" "$smudge" "$cmd" --help
  grep -q "usage: smudge $cmd" /tmp/cli_out.$$ && ok || bad "$cmd --help prints no usage line"
done
expect_rc 2 "no command" "$smudge"
expect_rc 2 "unknown command" "$smudge" frobnicate
expect_err "unknown command" "unknown command message"
expect_rc 2 "unknown option" "$smudge" score --model x --ids 1 --bogus
expect_err "bogus" "unknown option is named"
expect_rc 2 "missing --ids" "$smudge" score --model x
expect_rc 2 "bad id list" "$smudge" score --model x --ids 1,zz
expect_rc 1 "missing model" "$smudge" score --model /nonexistent/model --ids 1,2
expect_err "/nonexistent/model" "missing model path is named"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp" /tmp/cli_out.$$ /tmp/cli_err.$$' EXIT
mkdir -p "$tmp/bad"
echo '{"model_type": "llama", "hidden_size": ' > "$tmp/bad/config.json"
expect_rc 1 "malformed config.json" "$smudge" inspect --model "$tmp/bad"
expect_err "config.json" "malformed config names the file"

if [ -n "$assets" ] && [ -d "$assets/models" ]; then
  st="$assets/models/stories260K/stories260K.bin"
  expect_rc 0 "inspect stories260K" "$smudge" inspect --model "$st"
  grep -q '"n_kv_heads":4' /tmp/cli_out.$$ && ok || bad "stories260K: expected 4 KV heads: $(cat /tmp/cli_out.$$)"
  expect_rc 0 "score stories260K" "$smudge" score --model "$st" --ids 1,403,407,261,378,254,262
  # every logprob is a finite negative number
  /usr/bin/python3 -c "import json,sys,math; d=json.load(open('/tmp/cli_out.$$')); assert len(d['logprobs'])==6 and all(math.isfinite(x) and x<=0 for x in d['logprobs']), d" && ok || bad "stories260K logprobs"
  # a truncated checkpoint is an error, not a crash
  head -c 100000 "$st" > "$tmp/trunc.bin"
  expect_rc 1 "truncated llama2.c" "$smudge" score --model "$tmp/trunc.bin" --ids 1,2
  # convert to an HF folder and score identically
  expect_rc 0 "convert stories260K" "$smudge" convert --model "$st" --out "$tmp/st-hf"
  a=$("$smudge" score --model "$st" --ids 1,403,407,261,378)
  b=$("$smudge" score --model "$tmp/st-hf" --ids 1,403,407,261,378)
  [ "$a" = "$b" ] && ok || bad "HF round trip scores differ: $a vs $b"
  # llama2.c's own greedy output for 200 steps from an empty prompt
  tok="$assets/models/stories260K/tok512.bin"
  expect_rc 0 "generate stories260K" "$smudge" generate --model "$st" --tokenizer "$tok" --prompt "" --max-tokens 200 --temperature 0
  if [ "$(cat /tmp/cli_out.$$)" = "$(cat "$assets/models/stories260K/EXPECTED_greedy_n200.txt")" ]; then ok; else bad "stories260K greedy text differs from llama2.c's: $(head -c 200 /tmp/cli_out.$$)"; fi
  expect_rc 1 "generate .bin without tokenizer" "$smudge" generate --model "$st" --prompt "Once"
  expect_err "tokenizer" "missing tokenizer is named"
  expect_rc 0 "tokenize" "$smudge" tokenize --tokenizer "$tok" --text "Once upon a time"
  grep -q '{"ids":\[1,403,407,261,378\]}' /tmp/cli_out.$$ && ok || bad "tokenize ids: $(cat /tmp/cli_out.$$)"
  expect_rc 0 "tokenize --no-bos" "$smudge" tokenize --tokenizer "$tok" --text "Once upon a time" --no-bos
  grep -q '{"ids":\[403,407,261,378\]}' /tmp/cli_out.$$ && ok || bad "tokenize --no-bos ids: $(cat /tmp/cli_out.$$)"
  a=$("$smudge" score --model "$st" --tokenizer "$tok" --text "Once upon a time")
  b=$("$smudge" score --model "$st" --ids 1,403,407,261,378)
  [ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "score --text differs from score --ids: $a vs $b"
  expect_rc 2 "score with both --ids and --text" "$smudge" score --model "$st" --ids 1 --text x
  gg=$(ls "$assets"/models/llama-2-tiny-random-gguf/*.gguf | head -1)
  expect_rc 0 "inspect gguf" "$smudge" inspect --model "$gg"
  grep -q '"F16"' /tmp/cli_out.$$ && ok || bad "gguf stored dtype F16 not reported: $(cat /tmp/cli_out.$$)"
  expect_rc 0 "score gguf" "$smudge" score --model "$gg" --ids 1,450,4996,17354,1701
  head -c 4000 "$gg" > "$tmp/trunc.gguf"
  expect_rc 1 "truncated gguf" "$smudge" score --model "$tmp/trunc.gguf" --ids 1,2
else
  echo "SKIP (assets): ../shared/assets not found; real-checkpoint cases not run" >&2
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
