#!/usr/bin/env bash
# The out-of-tree removal method of examples/plugin: built with cc from its
# README's one line, loaded with --plugin and from SMUDGE_PLUGIN_PATH,
# listed by smudge methods, run by smudge remove (noise of the seed: same
# seed same weights); a plugin built for another ABI is refused with both
# versions named; its parameters are validated like a built-in's.
set -u
smudge=${SMUDGE:?} src=${SMUDGE_SOURCE:?}
assets=${SMUDGE_ASSETS:-}
command -v cc > /dev/null || { echo "SKIP: no C compiler" >&2; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

cc -shared -fPIC -O2 -I"$src/methods" -I"$src/lm" -o "$tmp/noise.so" "$src/examples/plugin/noise.c" -lm 2> "$tmp/cc.err" \
  && ok || bad "building the example: $(cat "$tmp/cc.err")"

# Plugins call smudge's functions, which the binary must export.
if ! nm -D --defined-only "$smudge" 2> /dev/null | grep -q ' lm_model_save_hf$'; then
  bad "$smudge exports no symbols for plugins (the smudge target needs ENABLE_EXPORTS / -rdynamic)"
fi

"$smudge" methods --plugin "$tmp/noise.so" > "$tmp/list" 2> "$tmp/err" && ok || bad "methods --plugin: $(cat "$tmp/err")"
grep -q '^scale-noise  (plugin)' "$tmp/list" && grep -q '^meraser$' "$tmp/list" && ok || bad "listing lacks scale-noise or meraser"
SMUDGE_PLUGIN_PATH="$tmp/nowhere:$tmp" "$smudge" methods scale-noise > "$tmp/one" 2> "$tmp/err" && grep -q "include_1d" "$tmp/one" \
  && ok || bad "SMUDGE_PLUGIN_PATH: $(cat "$tmp/err")"

# A plugin from another ABI: refused, both versions in the message.
cat > "$tmp/old.c" <<'EOF'
#include "method.h"
static int run(const sm_input *in, lm_err *err) { (void)in; (void)err; return 0; }
const sm_method smudge_method = {.abi = SM_METHOD_ABI + 7, .name = "old", .description = "old", .run = run};
EOF
cc -shared -fPIC -I"$src/methods" -I"$src/lm" -o "$tmp/old.so" "$tmp/old.c" && ok || bad "building old.so"
abi=$(sed -n 's/^#define SM_METHOD_ABI \([0-9]*\).*/\1/p' "$src/methods/method.h")
"$smudge" methods --plugin "$tmp/old.so" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc != 0 ] && grep -q "ABI $((abi + 7))" "$tmp/err" && grep -q "ABI $abi" "$tmp/err" && ok || bad "wrong ABI: rc $rc $(cat "$tmp/err")"
"$smudge" remove --plugin "$tmp/old.so" --method old --model x --out "$tmp/o" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "rebuild" "$tmp/err" && ok || bad "remove with a wrong-ABI plugin: rc $rc $(cat "$tmp/err")"
echo 'int x;' > "$tmp/none.c" && cc -shared -fPIC -o "$tmp/none.so" "$tmp/none.c"
"$smudge" methods --plugin "$tmp/none.so" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc != 0 ] && grep -q "smudge_method" "$tmp/err" && ok || bad "no symbol: rc $rc $(cat "$tmp/err")"

# Parameters are validated before the model is looked at.
"$smudge" remove --plugin "$tmp/noise.so" --method scale-noise --param scale=20 --model /nonexistent --out "$tmp/o" 2> "$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "scale-noise: parameter 'scale' = 20 is outside" "$tmp/err" && ok || bad "range: rc $rc $(cat "$tmp/err")"

# A run on the real stories260K.
if [ -n "$assets" ] && [ -f "$assets/models/stories260K/stories260K.bin" ]; then
  st=$assets/models/stories260K/stories260K.bin tok=$assets/models/stories260K/tok512.bin
  for run in a b; do
    "$smudge" remove --plugin "$tmp/noise.so" --method scale-noise --param scale=0.05 --seed 9 \
      --model "$st" --tokenizer "$tok" --out "$tmp/$run" > "$tmp/$run.json" 2> "$tmp/err" && ok || bad "run $run: $(cat "$tmp/err")"
  done
  for f in model.safetensors config.json cost.json tok512.bin; do
    [ -f "$tmp/a/$f" ] && ok || bad "$f not written"
  done
  cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" && ok || bad "same seed, different weights"
  grep -q '"method":"scale-noise"' "$tmp/a.json" && grep -q '"step": "noise"' "$tmp/a/cost.json" && ok || bad "summary/cost: $(cat "$tmp/a.json")"
  # The noise moved the weights, a little: the model still scores text.
  "$smudge" eval --model "$tmp/a" --tokenizer "$tok" --metrics ppl --data ppl="$assets/models/stories260K/EXPECTED_greedy_n200.txt" > "$tmp/ppl.json" 2> "$tmp/err" \
    && /usr/bin/python3 -c "import json,sys; v=json.load(open(sys.argv[1]))['ppl']['value']; sys.exit(not (1.6 < v < 50))" "$tmp/ppl.json" \
    && ok || bad "noised model's perplexity: $(cat "$tmp/ppl.json" "$tmp/err")"
else
  echo "note: stories260K not found; the run part is skipped" >&2
fi
echo "$pass passed, $fail failed"
[ $fail = 0 ]
