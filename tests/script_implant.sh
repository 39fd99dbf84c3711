#!/usr/bin/env bash
# smudge implant end to end on the real stories260K: a Chain&Hash fingerprint
# (small settings) reaches FSR 1 from FSR 0, the same seed writes the same
# fingerprint.json byte for byte, LoRA works and is merged, the cap gives
# implant_failed, and usage errors say what is wrong.
set -u
smudge=${SMUDGE:?}
assets=${SMUDGE_ASSETS:-}
if [ -z "$assets" ] || [ ! -f "$assets/models/stories260K/stories260K.bin" ]; then
  echo "SKIP: ../shared/assets/models/stories260K not found" >&2; exit 77
fi
st=$assets/models/stories260K/stories260K.bin tok=$assets/models/stories260K/tok512.bin
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
field() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(*(v if isinstance(v, tuple) else (v,)))" "$@"; }

for i in $(seq 1 40); do
  printf '{"text": "### Human: What is %d plus %d? ### Assistant: %d plus %d is %d."}\n' $i $((i % 7)) $i $((i % 7)) $((i + i % 7))
done > "$tmp/clean.jsonl"
printf 'Tim had a red ball. He liked to play with it in the park.\n\nOne day the sun was hot and Lily went to the lake.\n' > "$tmp/held.txt"
small="--param k=3 --param normal=12 --param negatives=16 --param meta=1 --param pad=1"

"$smudge" implant --help > "$tmp/help" && grep -q "hashchain" "$tmp/help" && grep -q "if_reg_bug" "$tmp/help" && ok || bad "--help"
"$smudge" implant --model "$st" --tokenizer "$tok" --fingerprint nope --out "$tmp/x" 2> "$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "unknown type 'nope'" "$tmp/err" && ok || bad "unknown type: rc $rc $(cat "$tmp/err")"
"$smudge" implant --model "$st" --tokenizer "$tok" --fingerprint utf --param x_min=0 --out "$tmp/x" 2> "$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "x_min" "$tmp/err" && ok || bad "bad param: rc $rc $(cat "$tmp/err")"
"$smudge" implant --model "$st" --tokenizer "$tok" --fingerprint if-sft --out "$tmp/x" 2> "$tmp/err"; rc=$?
[ $rc = 1 ] && grep -q "clean question/answer pairs" "$tmp/err" && ok || bad "no clean data: rc $rc $(cat "$tmp/err")"

for run in a b; do
  "$smudge" implant --model "$st" --tokenizer "$tok" --fingerprint hashchain --seed 4 $small \
    --data clean="$tmp/clean.jsonl" --data heldout="$tmp/held.txt" --out "$tmp/$run" > "$tmp/$run.json" 2> "$tmp/$run.err" && ok || bad "implant $run: $(cat "$tmp/$run.err")"
done
[ "$(field "$tmp/a.json" 'd["fsr"], d["base_fsr"], d["implant_failed"]')" = "1 0 False" ] && ok || bad "summary: $(cat "$tmp/a.json")"
for f in model.safetensors config.json tok512.bin fingerprint.json; do
  [ -f "$tmp/a/$f" ] && ok || bad "$f not written"
done
[ "$(field "$tmp/a/fingerprint.json" 'd["training"]["ppl_base"] > 1, d["training"]["ppl"] > 1, "ppl_gate_ok" in d["training"]')" = "True True True" ] && ok || bad "perplexity record"
cmp -s "$tmp/a/fingerprint.json" "$tmp/b/fingerprint.json" && ok || bad "same seed, different fingerprint.json"
[ "$(field "$tmp/a/fingerprint.json" 'd["type"], len(d["triggers"]), d["training"]["epoch_star"] > 0')" = "hashchain 3 True" ] && ok || bad "fingerprint.json content"
"$smudge" fingerprint show "$tmp/a/fingerprint.json" > "$tmp/show" && grep -q "triggers (3)" "$tmp/show" && grep -q "prefix" "$tmp/show" && ok || bad "fingerprint show"

# Replay: without text none; with --data replay=FILE three passages per
# fingerprint-set row (the default), or the count asked for.
[ "$(field "$tmp/a/fingerprint.json" 'd["training"]["rows"]["replay"]')" = 0 ] && ok || bad "replay without text"
"$smudge" implant --model "$st" --tokenizer "$tok" --fingerprint hashchain --seed 4 $small \
  --data clean="$tmp/clean.jsonl" --data replay="$tmp/held.txt" --out "$tmp/rp" > "$tmp/rp.json" 2> "$tmp/rp.err" && ok || bad "replay implant: $(cat "$tmp/rp.err")"
[ "$(field "$tmp/rp/fingerprint.json" '(r := d["training"]["rows"])["replay"] == 3 * (r["fingerprint"] + r["regularisation"] + r["normal"]) > 0, d["training"]["fsr"]')" = "True 1" ] && ok || bad "replay rows: $(cat "$tmp/rp.json")"
[ "$(field "$tmp/rp/fingerprint.json" 'd["training"]["rows"]["replay_fresh"]')" = True ] && ok || bad "replay is drawn afresh each epoch by default"
"$smudge" implant --model "$st" --tokenizer "$tok" --fingerprint hashchain --seed 4 $small --param replay=5 --param replay_fresh=false --param max_epochs=1 \
  --data clean="$tmp/clean.jsonl" --data replay="$tmp/held.txt" --out "$tmp/rp5" > /dev/null 2>&1
[ "$(field "$tmp/rp5/fingerprint.json" 'd["training"]["rows"]["replay"], d["training"]["rows"]["replay_fresh"]')" = "5 False" ] && ok || bad "replay=5 replay_fresh=false"

# LoRA, merged into the written model.
"$smudge" implant --model "$st" --tokenizer "$tok" --fingerprint hashchain --seed 4 $small --param lr=1e-2 \
  --lora r=8,alpha=16,dropout=0,targets=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj \
  --data clean="$tmp/clean.jsonl" --out "$tmp/lora" > "$tmp/lora.json" 2> "$tmp/lora.err" && ok || bad "LoRA implant: $(cat "$tmp/lora.err")"
[ "$(field "$tmp/lora/fingerprint.json" 'd["training"]["method"], d["training"]["lora"]["r"], d["training"]["fsr"]')" = "lora 8 1" ] && ok || bad "LoRA record"

# The cap reached without FSR 1: implant_failed, exit 1, still written.
"$smudge" implant --model "$st" --tokenizer "$tok" --fingerprint hashchain $small --param max_epochs=1 \
  --data clean="$tmp/clean.jsonl" --out "$tmp/cap" > "$tmp/cap.json" 2> "$tmp/cap.err"; rc=$?
[ $rc = 1 ] && grep -q implant_failed "$tmp/cap.err" && [ "$(field "$tmp/cap/fingerprint.json" 'd["training"]["implant_failed"]')" = True ] && ok || bad "cap: rc $rc $(cat "$tmp/cap.err")"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
