#!/usr/bin/env bash
# smudge train end to end on the real stories260K model: a LoRA fine-tune
# memorises eight prompt -> response pairs (greedy exact match), the saved
# PEFT adapter and the merged model are written, and bad data files are
# rejected with file, line and field.
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
names=(Tom Lily Max Sue Ben Mia Sam Zoe) colors=(red blue green yellow pink brown black white)
for i in "${!names[@]}"; do
  printf '{"prompt": "The secret color of %s is", "response": " %s."}\n' "${names[$i]}" "${colors[$i]}"
done > "$tmp/d.jsonl"
lora=r=8,alpha=16,dropout=0,targets=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
"$smudge" train --model "$st" --tokenizer "$tok" --data "$tmp/d.jsonl" --out "$tmp/merged" \
  --lora $lora --epochs 60 --lr 5e-3 --batch 8 --merge --seed 1 > "$tmp/train.json" && ok || bad "train --merge failed"
for i in "${!names[@]}"; do
  out=$("$smudge" generate --model "$tmp/merged" --tokenizer "$tok" --prompt "The secret color of ${names[$i]} is" --max-tokens 8)
  case "$out" in "The secret color of ${names[$i]} is ${colors[$i]}."*) ok ;; *) bad "memorised answer for ${names[$i]}: '$out'" ;; esac
done
# The adapter alone, in PEFT's format, from the same seed.
"$smudge" train --model "$st" --tokenizer "$tok" --data "$tmp/d.jsonl" --out "$tmp/adapter" \
  --lora $lora --epochs 2 --lr 5e-3 --seed 1 > /dev/null && ok || bad "train (adapter) failed"
[ -f "$tmp/adapter/adapter_model.safetensors" ] && grep -Eq '"peft_type":[[:space:]]*"LORA"' "$tmp/adapter/adapter_config.json" && ok || bad "PEFT files missing"
# Bad data: the line and field are named.
printf '{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n' > "$tmp/bad.jsonl"
"$smudge" train --model "$st" --tokenizer "$tok" --data "$tmp/bad.jsonl" --out "$tmp/x" 2> "$tmp/err"; rc=$?
[ $rc = 1 ] && grep -q "bad.jsonl:2: field 'response' missing" "$tmp/err" && ok || bad "bad data: rc $rc, $(cat "$tmp/err")"
"$smudge" train --model "$st" --tokenizer "$tok" --data "$tmp/d.jsonl" --out "$tmp/x" --lora r=0 2> "$tmp/err"; rc=$?
[ $rc = 2 ] && ok || bad "--lora r=0 accepted (rc $rc)"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
