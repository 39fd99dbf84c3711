#!/usr/bin/env bash
# smudge zoo: a real build of the weakest recipe (tiny-opt) must reach the
# issue's quality bar (held-out perplexity far below the vocabulary, every
# task at least 20 points above chance), be listed, be found again without
# training, and come out bit for bit the same when rebuilt. About 3 minutes
# per build on one core.
set -u
smudge=${SMUDGE:?SMUDGE must point at the smudge binary}
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cache=$tmp/cache
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2" | tr -d '"'; }

# usage errors exit 2 and name what is wrong
"$smudge" zoo build all --jobs 0 --cache "$cache" 2>"$tmp/err"
[ $? = 2 ] && grep -q -- "--jobs" "$tmp/err" && ok || bad "--jobs 0 accepted"
"$smudge" zoo build tiny-nothing --cache "$cache" 2>"$tmp/err"
[ $? = 2 ] && grep -q "tiny-nothing" "$tmp/err" && ok || bad "an unknown recipe accepted"
"$smudge" zoo list --cache "$cache" >"$tmp/list"
grep -q "^tiny-opt .*not built" "$tmp/list" && ok || bad "empty cache: $(cat "$tmp/list")"

# the build, and the quality bar
if "$smudge" zoo build tiny-opt --cache "$cache" >"$tmp/b1" 2>"$tmp/err"; then ok; else
  bad "build failed: $(tail -c 300 "$tmp/err")"; echo "$pass passed, $fail failed"; exit 1; fi
ppl=$(field heldout_ppl "$tmp/b1") sciq=$(field sciq "$tmp/b1")
copa=$(field copa "$tmp/b1") boolq=$(field boolq "$tmp/b1") dir=$(field path "$tmp/b1")
echo "tiny-opt: ppl $ppl sciq $sciq copa $copa boolq $boolq"
awk -v p="$ppl" 'BEGIN { exit !(p > 1 && p < 20) }' && ok || bad "held-out perplexity $ppl (vocabulary 2048)"
awk -v a="$sciq" 'BEGIN { exit !(a >= 0.45) }' && ok || bad "SciQ $sciq < .45 (chance .25)"
awk -v a="$copa" 'BEGIN { exit !(a >= 0.70) }' && ok || bad "COPA $copa < .70 (chance .50)"
awk -v a="$boolq" 'BEGIN { exit !(a >= 0.70) }' && ok || bad "BoolQ $boolq < .70 (chance .50)"
for f in config.json model.safetensors tokenizer.json quality.json recipe.json; do
  [ -s "$dir/$f" ] && ok || bad "$dir/$f missing"
done
"$smudge" zoo list --cache "$cache" >"$tmp/list"
grep -q "^tiny-opt .*built" "$tmp/list" && ok || bad "list after the build: $(cat "$tmp/list")"

# a second build is a cache hit; path names the same folder
start=$(date +%s)
"$smudge" zoo build tiny-opt --cache "$cache" >"$tmp/b2" && ok || bad "second build failed"
[ $(( $(date +%s) - start )) -le 5 ] && ok || bad "second build took $(( $(date +%s) - start )) s"
cmp -s "$tmp/b1" "$tmp/b2" && ok || bad "second build reports differently"
[ "$("$smudge" zoo path tiny-opt --cache "$cache")" = "$dir" ] && ok || bad "zoo path differs from $dir"

# a rebuild gives the same bits
sha1=$(sha256sum "$dir/model.safetensors" "$dir/tokenizer.json" | cut -d' ' -f1)
"$smudge" zoo build tiny-opt --cache "$cache" --rebuild >"$tmp/b3" 2>"$tmp/err" && ok ||
  bad "rebuild failed: $(tail -c 300 "$tmp/err")"
sha2=$(sha256sum "$dir/model.safetensors" "$dir/tokenizer.json" | cut -d' ' -f1)
[ "$sha1" = "$sha2" ] && ok || bad "the rebuild differs from the first build"
[ "$(field boolq "$tmp/b3")" = "$boolq" ] && ok || bad "the rebuild's quality differs"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
