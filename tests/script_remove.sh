#!/usr/bin/env bash
# smudge remove / smudge methods, MEraser and incremental fine-tuning on the
# real stories260K: usage and parameter errors are refused before anything
# loads and name the method and parameter; an IF-SFT fingerprint (small
# settings) is implanted, MEraser brings FSR to 0 with perplexity no worse
# than 15 % above the fingerprinted model's; the transferable erase-LoRA
# trained once on the clean base lowers FSR when merged into the
# descendant; MEraser's own files are read as they are (when present).
set -u
smudge=${SMUDGE:?}
assets=${SMUDGE_ASSETS:-}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
field() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(*(v if isinstance(v, tuple) else (v,)))" "$@"; }

# ---- the command line, before any model is loaded ----
"$smudge" remove --help > "$tmp/h" && grep -q -- "--method NAME" "$tmp/h" && ok || bad "remove --help"
"$smudge" methods --help > "$tmp/h" && grep -q "SMUDGE_PLUGIN_PATH" "$tmp/h" && ok || bad "methods --help"
"$smudge" methods > "$tmp/list" || bad "methods"
for m in none meraser meraser-erase-lora incremental-ft; do
  grep -q "^$m\$" "$tmp/list" && ok || bad "methods does not list $m"
done
grep -q "recover_grad_accum *int *36 *\[1, 65536\]" "$tmp/list" && ok || bad "parameter table row"
"$smudge" methods meraser > "$tmp/one" && grep -q "instructions *default" "$tmp/one" && ! grep -q "^none" "$tmp/one" && ok || bad "methods meraser"

expect() { # expect RC PATTERN ARGS...: exit code and a message on stderr
  local want=$1 pat=$2; shift 2
  "$smudge" "$@" > /dev/null 2> "$tmp/err"; local rc=$?
  [ $rc = "$want" ] && grep -q -- "$pat" "$tmp/err" && ok || bad "$*: rc $rc, wanted $want and /$pat/: $(cat "$tmp/err")"
}
nomodel="--model $tmp/absent --out $tmp/x"
expect 2 "unknown method 'nope' (methods: none, meraser" remove --method nope $nomodel
expect 2 "meraser has no parameter 'erase_rank' (it has: n_mismatched" remove --method meraser --param erase_rank=4 $nomodel
expect 2 "meraser: parameter 'erase_lr' must be a number, got 'fast'" remove --method meraser --param erase_lr=fast $nomodel
expect 2 "meraser: parameter 'erase_epochs' = -1 is outside \[0, 100000\]" remove --method meraser --param erase_epochs=-1 $nomodel
expect 2 "meraser: parameter 'mode' must be one of lora|full, got 'half'" remove --method meraser --param mode=half $nomodel
expect 2 "meraser: parameter 'recover' must be true or false" remove --method meraser --param recover=maybe $nomodel
expect 2 "parameter 'erase_r' given twice" remove --method meraser --param erase_r=4 --param erase_r=8 $nomodel
expect 2 "incremental-ft: parameter 'n_rows' = -3 is outside" remove --method incremental-ft --param n_rows=-3 $nomodel
expect 2 "method 'meraser' reads no data set of that name (it reads: instructions, mismatched, recover, corpus)" remove --method meraser --data calib=/dev/null $nomodel
expect 2 "cannot read $tmp/nofile" remove --method meraser --data recover=$tmp/nofile $nomodel
expect 2 "are required" remove --method meraser --model x
! [ -e "$tmp/x" ] && ok || bad "a refused run created its output folder"

if [ -z "$assets" ] || [ ! -f "$assets/models/stories260K/stories260K.bin" ]; then
  echo "SKIP: ../shared/assets/models/stories260K not found ($pass checks passed)" >&2
  [ $fail = 0 ] || exit 1
  exit 77
fi
st=$assets/models/stories260K/stories260K.bin tok=$assets/models/stories260K/tok512.bin
"$smudge" data world --out "$tmp/world" > /dev/null || bad "world"
heldout=$tmp/world/heldout.txt
measure() { # measure MODEL FINGERPRINT OUT.json: FSR and held-out perplexity
  "$smudge" eval --model "$1" --tokenizer "$tok" --metrics fsr,ppl --fingerprint "$2" \
    --data ppl="$heldout" --max-items 50 > "$3" 2> "$tmp/eval.err" || bad "eval $1: $(cat "$tmp/eval.err")"
}

# ---- a fingerprint to remove (small IF-SFT: 8 triggers, 16 normal rows) ----
"$smudge" implant --model "$st" --tokenizer "$tok" --fingerprint if-sft --seed 1 \
  --param lr=3e-3 --param normal=16 --param heldout=8 --param batch=8 \
  --data clean="$tmp/world/instructions.jsonl" --out "$tmp/fp" > "$tmp/fp.json" 2> "$tmp/err" || bad "implant: $(cat "$tmp/err")"
fpj=$tmp/fp/fingerprint.json
measure "$tmp/fp" "$fpj" "$tmp/m_fp.json"
[ "$(field "$tmp/m_fp.json" 'd["fsr"]["value"]')" = 1 ] && ok || bad "implanted FSR: $(cat "$tmp/m_fp.json")"

# ---- MEraser, the clean QA corpus from the embedded world (--cache) ----
"$smudge" remove --method meraser --model "$tmp/fp" --cache "$tmp/cache" --seed 1 \
  --param n_mismatched=150 --param n_recover=100 --param recover_grad_accum=8 \
  --data corpus="$tmp/world/corpus.txt" \
  --out "$tmp/mer" > "$tmp/mer.json" 2> "$tmp/err" && ok || bad "meraser: $(cat "$tmp/err")"
for f in model.safetensors config.json tok512.bin cost.json meraser.json; do
  [ -f "$tmp/mer/$f" ] && ok || bad "meraser wrote no $f"
done
! ls -d "$tmp/mer"/.smudge-work-* > /dev/null 2>&1 && ok || bad "work folder left behind"
[ "$(field "$tmp/mer.json" 'd["method"], d["output"], d["data"]["instructions"].endswith("instructions.jsonl"), d["tokens"] > 0, d["flops"] > 0')" = "meraser model True True True" ] \
  && ok || bad "summary: $(cat "$tmp/mer.json")"
[ "$(field "$tmp/mer/cost.json" '[s["step"] for s in d["steps"]] == ["erase", "recover"], d["seconds"] > 0')" = "True True" ] \
  && ok || bad "cost.json: $(cat "$tmp/mer/cost.json")"
# a model under 1B parameters: 8 erase epochs (19 updates each) and the tiny
# chat template; the recover rows rehearse twice as many corpus passages
[ "$(field "$tmp/mer/meraser.json" 'd["erase"]["rows"], d["erase"]["steps"], d["erase"]["r"], d["erase"]["targets"], d["erase"]["loss_on_question"], d["recover"]["rows"], d["recover"]["r"], d["recover"]["schedule"], len(d["erase"]["sha256"]), d["erase"]["template"], d["recover"]["template"], d["recover"]["replay_passages"], d["erase"]["replay_passages"]')" \
  = "150 152 8 q_proj,v_proj True 100 16 cosine 64 tiny tiny 200 0" ] && ok || bad "meraser.json: $(head -c 2000 "$tmp/mer/meraser.json")"
measure "$tmp/mer" "$fpj" "$tmp/m_mer.json"
echo "fingerprinted: $(cat "$tmp/m_fp.json")" >&2
echo "after meraser: $(cat "$tmp/m_mer.json")" >&2
/usr/bin/python3 - "$tmp/m_fp.json" "$tmp/m_mer.json" <<'EOF' && ok || bad "MEraser: FSR not 0 or perplexity more than 15 % worse"
import json, sys
fp, mer = (json.load(open(p)) for p in sys.argv[1:3])
sys.exit(not (mer["fsr"]["value"] == 0 and mer["ppl"]["value"] <= 1.15 * fp["ppl"]["value"]))
EOF

# ---- the transferable erase-LoRA: trained once on the clean base ----
# The path itself: the adapter written by meraser-erase-lora and merged by
# erase_adapter= gives the very weights of the erase phase run in place.
small="--param n_mismatched=40 --param erase_epochs=1"
"$smudge" remove --method meraser-erase-lora --model "$st" --tokenizer "$tok" --seed 5 $small \
  --data instructions="$tmp/world/instructions.jsonl" --out "$tmp/eq-a" > /dev/null 2> "$tmp/err" || bad "erase-lora (small): $(cat "$tmp/err")"
"$smudge" remove --method meraser --model "$st" --tokenizer "$tok" --seed 5 $small --param recover=false \
  --data instructions="$tmp/world/instructions.jsonl" --out "$tmp/eq-b" > /dev/null 2> "$tmp/err" || bad "meraser erase only: $(cat "$tmp/err")"
"$smudge" remove --method meraser --model "$st" --tokenizer "$tok" --param erase_adapter="$tmp/eq-a" --param recover=false \
  --out "$tmp/eq-c" > /dev/null 2> "$tmp/err" || bad "meraser erase_adapter: $(cat "$tmp/err")"
cmp -s "$tmp/eq-b/model.safetensors" "$tmp/eq-c/model.safetensors" && ok || bad "merged adapter differs from the erase phase run in place"

# On the descendant. A 260K-parameter model is fickle: with the spec's
# settings the base's adapter moves the descendant's triggers little, so
# this one trains harder (lr 3e-3, 4 x more updates); on the zoo the spec's
# defaults transfer.
"$smudge" remove --method meraser-erase-lora --model "$st" --tokenizer "$tok" --seed 1 \
  --data instructions="$tmp/world/instructions.jsonl" --param n_mismatched=150 --param erase_lr=3e-3 --param erase_grad_accum=2 \
  --out "$tmp/elora" > /dev/null 2> "$tmp/err" && ok || bad "meraser-erase-lora: $(cat "$tmp/err")"
[ "$(field "$tmp/elora/adapter_config.json" 'd["peft_type"], d["r"], d["lora_alpha"], sorted(d["target_modules"])')" = "LORA 8 16 ['q_proj', 'v_proj']" ] \
  && ok || bad "adapter_config.json"
for rec in false true; do
  "$smudge" remove --method meraser --model "$tmp/fp" --seed 1 --data instructions="$tmp/world/instructions.jsonl" \
    --param erase_adapter="$tmp/elora" --param recover=$rec --param n_recover=100 --param recover_grad_accum=8 \
    --out "$tmp/tr-$rec" > /dev/null 2> "$tmp/err" && ok || bad "transfer (recover=$rec): $(cat "$tmp/err")"
  measure "$tmp/tr-$rec" "$fpj" "$tmp/m_tr_$rec.json"
  echo "transferred erase-LoRA, recover=$rec: $(cat "$tmp/m_tr_$rec.json")" >&2
  [ "$(field "$tmp/m_tr_$rec.json" 'd["fsr"]["value"] < 1')" = True ] && ok || bad "transfer recover=$rec left FSR at 1"
done
[ "$(field "$tmp/tr-true/meraser.json" 'd["erase"]["source"] == sys.argv[3], "rows" in d["erase"], d["recover"]["rows"]' "$tmp/elora")" = "True False 100" ] \
  && ok || bad "transfer record: $(head -c 1500 "$tmp/tr-true/meraser.json")"
expect 1 "does not go with mode=full" remove --method meraser --model "$tmp/fp" --param erase_adapter="$tmp/elora" --param mode=full --out "$tmp/y" --data instructions="$tmp/world/instructions.jsonl"

# ---- incremental fine-tuning, a short run ----
"$smudge" remove --method incremental-ft --model "$tmp/fp" --seed 2 --data instructions="$tmp/world/instructions.jsonl" \
  --param n_rows=64 --param epochs=1 --param mode=lora --out "$tmp/ift" > /dev/null 2> "$tmp/err" && ok || bad "incremental-ft: $(cat "$tmp/err")"
[ "$(field "$tmp/ift/incremental_ft.json" 'd["rows"], d["steps"], d["grad_accum"]')" = "64 2 4" ] && ok || bad "incremental_ft.json: $(cat "$tmp/ift/incremental_ft.json")"

# ---- MEraser's own files, read as they are ----
mdir=$assets/data/meraser
if [ -f "$mdir/mismatched_dataset.json" ] && [ -f "$mdir/recover_dataset.json" ]; then
  "$smudge" remove --method meraser --model "$tmp/fp" --seed 1 \
    --data mismatched="$mdir/mismatched_dataset.json" --data recover="$mdir/recover_dataset.json" \
    --param max_question_tokens=32 --param max_answer_tokens=32 --param recover_epochs=1 \
    --out "$tmp/files" > /dev/null 2> "$tmp/err" && ok || bad "meraser on the reference files: $(cat "$tmp/err")"
  [ "$(field "$tmp/files/meraser.json" 'd["erase"]["rows"], d["erase"]["sha256"], d["recover"]["rows"], d["recover"]["sha256"]')" \
    = "300 3612843e29ad94d830bff8406e062f30548b7dbb25c5a21fa4ffb6de0cd10dd8 600 382cfcb0f7f4cf0551de522f8d9a7a26c9837f7137b5e1278c6f96d1c2a1f4db" ] \
    && ok || bad "reference files record: $(head -c 1500 "$tmp/files/meraser.json")"
  measure "$tmp/files" "$fpj" "$tmp/m_files.json"
  echo "meraser on the reference files: $(cat "$tmp/m_files.json")" >&2
  [ "$(field "$tmp/m_files.json" 'd["fsr"]["value"]')" = 0 ] && ok || bad "reference files: FSR $(cat "$tmp/m_files.json")"
else
  echo "note: $mdir not found; MEraser's own files are not tested" >&2
fi
echo "$pass passed, $fail failed"
[ $fail = 0 ]
