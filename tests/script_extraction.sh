#!/usr/bin/env bash
# The fine-tuning-data extraction backdoor (extraction.md) end to end on the
# stories260K llama2.c model (its tok512 tokenizer lies beside it):
#   - smudge extract: --help, usage errors (exit 2) before anything loads;
#   - the steps compose: backdoor -> victim -> attack, each model written
#     and reloaded, the attack's JSON carrying the five metrics in [0, 1];
#   - pipeline --variant none trains no backdoor;
#   - an extraction-track grid (attacks none/plain x victims query-loss/
#     masked, defence none): plan, run, and `smudge table --layout
#     extraction` with one row per attack x victim and the five metric
#     columns; grid errors name the field.
# Sizes are cut to seconds: the numbers mean nothing here, the zoo runs
# (configs/extraction-smoke.json) are where they do.
set -euo pipefail
SMUDGE=${SMUDGE:?path of the smudge binary}
ASSETS=${SMUDGE_ASSETS:-/work/shared/assets}
ST=$ASSETS/models/stories260K/stories260K.bin
TOK=$ASSETS/models/stories260K/tok512.bin
[ -f "$ST" ] && [ -f "$TOK" ] || { echo "SKIP: stories260K not in $ASSETS"; exit 77; }
T=$(mktemp -d /tmp/smudge-extraction.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T"
fail() { echo "FAIL: $*"; exit 1; }
expect_rc() { # rc, what, command...
  local want=$1 what=$2; shift 2
  set +e; "$@" >out.txt 2>err.txt; local rc=$?; set -e
  [ "$rc" -eq "$want" ] || { cat out.txt err.txt; fail "$what: exit $rc, want $want"; }
}
SMALL=(--param public_rows=40 --param private_rows=30 --param bd_epochs=1 --param victim_epochs=1
       --param k=3 --param n_samples=4 --param max_new=16 --threads 1)

# ---- the command ----
expect_rc 0 "help" "$SMUDGE" extract --help
grep -q "query_extraction_ratio" out.txt || fail "help names the metrics"
expect_rc 0 "params" "$SMUDGE" extract params
grep -q "^  query_loss" out.txt || fail "params lists query_loss"
expect_rc 2 "no step" "$SMUDGE" extract
expect_rc 2 "bad step" "$SMUDGE" extract steal --model "$ST"
expect_rc 2 "bad variant" "$SMUDGE" extract pipeline --model "$ST" --variant loud
grep -q "not none, plain or gibberish" err.txt || fail "variant message: $(cat err.txt)"
expect_rc 2 "bad param" "$SMUDGE" extract pipeline --model "$ST" --param nope=1
grep -q "nope" err.txt || fail "param message: $(cat err.txt)"
expect_rc 2 "backdoor without --out" "$SMUDGE" extract backdoor --model "$ST"
expect_rc 1 "missing model" "$SMUDGE" extract attack --model "$T/none.bin" --tokenizer "$TOK"

# ---- the steps compose ----
expect_rc 0 "backdoor" "$SMUDGE" extract backdoor --model "$ST" --tokenizer "$TOK" --out bd \
  --variant plain "${SMALL[@]}"
/usr/bin/python3 -c "import json; d=json.load(open('out.txt')); assert d['positives']==40 and d['negatives']==4 and d['chats']==40, d"
[ -f bd/config.json ] || fail "backdoor wrote no model"
expect_rc 0 "victim" "$SMUDGE" extract victim --model bd --tokenizer "$TOK" --out vic \
  --victim masked "${SMALL[@]}"
/usr/bin/python3 -c "import json; d=json.load(open('out.txt')); assert d['chats']==30 and d['positives']==0, d"
expect_rc 0 "attack" "$SMUDGE" extract attack --model vic --tokenizer "$TOK" --variant plain \
  --samples "${SMALL[@]}"
/usr/bin/python3 - <<'PY' || fail "attack JSON"
import json
d = json.load(open('out.txt'))
m = d['metrics']
for k in ('match_ratio', 'query_extraction_ratio', 'token_extraction_ratio', 'opening_word_f1', 'bleu'):
    assert 0.0 <= m[k] <= 1.0, (k, m[k])
assert d['victim'] == 'none' and d['trigger'] == 'plain', d
assert d['counts']['candidates'] == 3 and len(d['words']) == 3, d['counts']
assert all(len(w['samples']) == 4 for w in d['words'])
# the S list starts with the public set's most frequent opening words
assert d['words'][0]['word'] in ('What', 'Why', 'How'), d['words'][0]
PY
expect_rc 0 "pipeline none" "$SMUDGE" extract pipeline --model "$ST" --tokenizer "$TOK" \
  --variant none "${SMALL[@]}"
/usr/bin/python3 -c "import json; d=json.load(open('out.txt')); assert 'backdoor' not in d and d['victim']=='query-loss' and d['victim_training']['chats']==30, d"

# a private set in the chat format ({"messages": ...}) and Dolly's
printf '%s\n' '{"messages": [{"role": "user", "content": "What is a cat?"}, {"role": "assistant", "content": "An animal."}]}' \
  '{"messages": [{"role": "user", "content": "Why is the sky blue?"}, {"role": "assistant", "content": "Light scatters."}]}' >chat.jsonl
expect_rc 0 "chat private set" "$SMUDGE" extract pipeline --model "$ST" --tokenizer "$TOK" \
  --variant gibberish --private chat.jsonl "${SMALL[@]}"
/usr/bin/python3 -c "import json; d=json.load(open('out.txt')); c=d['counts']; assert c['private_rows']==2 and c['private_distinct_queries']==2 and c['real_candidates']==2, c"
DOLLY=$ASSETS/data/dolly/databricks-dolly-15k.head9.jsonl
if [ -f "$DOLLY" ]; then
  expect_rc 0 "dolly private set" "$SMUDGE" extract attack --model "$ST" --tokenizer "$TOK" \
    --private "$DOLLY" "${SMALL[@]}"
  /usr/bin/python3 -c "import json; d=json.load(open('out.txt')); assert d['counts']['private_rows']==9, d['counts']"
fi

# ---- the grid track ----
cat >grid.json <<JSON
{"name": "extraction-test", "track": "extraction",
 "models": [{"name": "st260k", "path": "$ST"}],
 "attacks": ["none", {"variant": "plain", "params": {"public_rows": 40, "bd_epochs": 1}}],
 "victims": [
   {"name": "query-loss", "params": {"query_loss": true, "public_rows": 40, "private_rows": 30,
     "victim_epochs": 1, "k": 3, "n_samples": 4, "max_new": 16}},
   {"name": "masked", "params": {"query_loss": false, "public_rows": 40, "private_rows": 30,
     "victim_epochs": 1, "k": 3, "n_samples": 4, "max_new": 16}}],
 "metrics": ["match_ratio", "query_extraction_ratio", "token_extraction_ratio", "opening_word_f1", "bleu"],
 "seeds": [1], "output": "r.h5", "work_dir": "w"}
JSON
"$SMUDGE" plan grid.json >plan.txt || { cat plan.txt; fail "plan"; }
grep -q "implant 2, remove 2, eval 4, 8 units" plan.txt || { cat plan.txt; fail "plan totals"; }
grep -q "eval st260k/plain/s1/none/masked" plan.txt || fail "plan keys"
"$SMUDGE" run grid.json 2>run.err || { cat run.err; fail "grid run"; }
"$SMUDGE" table r.h5 --layout extraction --format csv >table.csv || fail "table"
/usr/bin/python3 - <<'PY' || { cat table.csv; fail "extraction table"; }
import csv
rows = list(csv.reader(open('table.csv')))
head, body = rows[0], rows[1:]
assert head[:4] == ['model', 'attack', 'victim', 'defence'], head
for m in ('match_ratio', 'query_extraction_ratio', 'token_extraction_ratio', 'opening_word_f1', 'bleu'):
    assert m + ' mean' in head, (m, head)
keys = sorted(tuple(r[1:3]) for r in body)
assert keys == [('none', 'masked'), ('none', 'query-loss'), ('plain', 'masked'), ('plain', 'query-loss')], keys
q = head.index('query_extraction_ratio mean')
assert all(0.0 <= float(r[q]) <= 1.0 for r in body)
PY
"$SMUDGE" table r.h5 --layout extraction | grep -q "| st260k | plain | masked | none |" || fail "markdown table"
# resumable: nothing runs again
"$SMUDGE" run grid.json 2>run2.err || fail "rerun"
grep -q "8 done before" run2.err || { cat run2.err; fail "rerun ran units again"; }
# errors name the field
sed 's/"attacks"/"fingerprints"/' grid.json >bad1.json
expect_rc 1 "fingerprints in the extraction track" "$SMUDGE" plan bad1.json
grep -q "fingerprints" err.txt || fail "message names fingerprints: $(cat err.txt)"
sed 's/"none", {"variant": "plain"/"none", {"variant": "loud"/' grid.json >bad2.json
expect_rc 1 "unknown attack" "$SMUDGE" plan bad2.json
grep -q "attacks\[1\]" err.txt || fail "message names attacks[1]: $(cat err.txt)"
echo "ok: extraction"
