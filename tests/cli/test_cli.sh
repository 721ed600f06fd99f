#!/bin/sh
# Black-box tests of the babymamba tool on the golden models: inspect agrees with PyTorch's
# parameter counts, infer cuts and classifies windows, bench runs, and bad input fails with a
# clear message and a non-zero exit status.
set -u

cli=${BM_CLI:?BM_CLI must name the babymamba binary}
golden=${BM_GOLDEN_DIR:?BM_GOLDEN_DIR must name tests/golden}
python=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

# inspect: the parameter count of every golden variant equals PyTorch's count in the manifest.
for name in $($python -c "import json,sys; print(' '.join(v['name'] for v in json.load(open(sys.argv[1]))['variants']))" "$golden/manifest.json"); do
  expected=$($python -c "import json,sys; print([v['parameters'] for v in json.load(open(sys.argv[1]))['variants'] if v['name']==sys.argv[2]][0])" "$golden/manifest.json" "$name")
  actual=$("$cli" inspect --json "$golden/$name.safetensors" | $python -c "import json,sys; print(json.load(sys.stdin)['parameters'])")
  if [ "$actual" = "$expected" ]; then pass "inspect $name parameters $actual"; else fail "inspect $name parameters $actual, PyTorch $expected"; fi
done

# inspect prints a readable table too.
if "$cli" inspect "$golden/cx_published.safetensors" | grep -q '^parameters *27306$'; then
  pass "inspect table"; else fail "inspect table"; fi

# infer: 300 rows of 9 channels give windows at 0, 64, ..., 128 + 64k <= 300, so 3 windows.
awk 'BEGIN { srand(7); for (r = 0; r < 300; r++) { line = ""; for (c = 0; c < 9; c++) line = line (c ? "," : "") sprintf("%.4f", rand() * 2 - 1); print line } }' > "$work/channels.csv"
count=$("$cli" infer "$golden/cx_published.safetensors" "$work/channels.csv" --jsonl | wc -l)
if [ "$count" -eq 3 ]; then pass "infer jsonl window count"; else fail "infer jsonl gave $count windows, expected 3"; fi
if "$cli" infer "$golden/cx_published.safetensors" "$work/channels.csv" --jsonl | $python -c "
import json, sys
rows = [json.loads(line) for line in sys.stdin]
assert [r['first_row'] for r in rows] == [0, 64, 128], rows
for r in rows:
    assert abs(sum(r['probabilities'].values()) - 1) < 1e-4
    assert r['class'] == max(r['probabilities'], key=r['probabilities'].get)
"; then pass "infer jsonl content"; else fail "infer jsonl content"; fi

# infer: a header naming the channels in another order selects them by name.
{ echo "ch8,ch7,ch6,ch5,ch4,ch3,ch2,ch1,ch0"; awk -F, '{ print $9","$8","$7","$6","$5","$4","$3","$2","$1 }' "$work/channels.csv"; } > "$work/named.csv"
if [ "$("$cli" infer "$golden/cx_published.safetensors" "$work/channels.csv" --jsonl)" = "$("$cli" infer "$golden/cx_published.safetensors" "$work/named.csv" --jsonl)" ]; then
  pass "infer selects columns by header name"; else fail "infer selects columns by header name"; fi

# infer: wrong column count, non-numeric data and too few rows fail with a message.
cut -d, -f1-5 "$work/channels.csv" > "$work/five.csv"
if ! "$cli" infer "$golden/cx_published.safetensors" "$work/five.csv" 2> "$work/err" && grep -q "5 columns" "$work/err"; then
  pass "infer rejects wrong column count"; else fail "infer rejects wrong column count: $(cat "$work/err")"; fi
{ head -5 "$work/channels.csv"; echo "1,2,x,4,5,6,7,8,9"; } > "$work/bad.csv"
if ! "$cli" infer "$golden/cx_published.safetensors" "$work/bad.csv" 2> "$work/err" && grep -q "bad.csv:6" "$work/err"; then
  pass "infer names the bad line"; else fail "infer names the bad line: $(cat "$work/err")"; fi
head -10 "$work/channels.csv" > "$work/short.csv"
if ! "$cli" infer "$golden/cx_published.safetensors" "$work/short.csv" 2> "$work/err" && grep -q "no window" "$work/err"; then
  pass "infer rejects too few rows"; else fail "infer rejects too few rows: $(cat "$work/err")"; fi

# infer: a NaN, an infinity or a value beyond a double's range is an error naming the row, and
# no window is invented around it.
for bad in nan inf 1e999; do
  { head -200 "$work/channels.csv"; echo "1,2,$bad,4,5,6,7,8,9"; tail -n +201 "$work/channels.csv"; } > "$work/bad_$bad.csv"
  if ! "$cli" infer "$golden/cx_published.safetensors" "$work/bad_$bad.csv" --jsonl > "$work/out" 2> "$work/err" &&
     grep -Eq "(row |:)201" "$work/err" && $python -c "
import json, sys
assert all(json.loads(line)['last_row'] < 200 for line in open(sys.argv[1])), 'window past the bad row'
" "$work/out"; then
    pass "infer rejects $bad at its row"; else fail "infer rejects $bad at its row: $(cat "$work/err")"; fi
done

# infer: a header with a misspelt channel name is rejected, not read by position.
{ echo "ch0,ch1,ch2,ch3,ch4,ch5,ch6,ch7,chX"; cat "$work/channels.csv"; } > "$work/misspelt.csv"
if ! "$cli" infer "$golden/cx_published.safetensors" "$work/misspelt.csv" 2> "$work/err" && grep -q "'ch8'" "$work/err"; then
  pass "infer rejects misspelt header"; else fail "infer rejects misspelt header: $(cat "$work/err")"; fi

# infer: class names with quotes, backslashes and control characters stay valid JSON.
$python - "$golden/cx_published.safetensors" "$work/odd_classes.safetensors" <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
size = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + size])
meta = json.loads(header["__metadata__"]["babymamba"])
meta["classes"] = ['a"b', "c\\d", "new\nline", "bell\u0007", "plain", "\u00e9t\u00e9"]
header["__metadata__"]["babymamba"] = json.dumps(meta)
text = json.dumps(header).encode()
text += b" " * (-(8 + len(text)) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + data[8 + size:])
PY
if "$cli" infer "$work/odd_classes.safetensors" "$work/channels.csv" --jsonl | $python -c "
import json, sys
rows = [json.loads(line) for line in sys.stdin]
assert len(rows) == 3, rows
assert 'a\"b' in rows[0]['probabilities'], rows
"; then pass "infer escapes class names"; else fail "infer escapes class names"; fi
cp "$golden/cx_c1_fwd_mean.safetensors" "$work/q\"uote.safetensors"
if "$cli" bench "$work/q\"uote.safetensors" --windows 3 --warmup 0 --threads 1 --json | $python -c "import json, sys; json.load(sys.stdin)"; then
  pass "bench escapes the model path"; else fail "bench escapes the model path"; fi

# bench: with two windows the median lies between them and p99 is the larger.
if "$cli" bench "$golden/cx_c1_fwd_mean.safetensors" --windows 2 --warmup 0 --threads 1 --json | $python -c "
import json, sys
r = json.load(sys.stdin)['single']
assert r['median_us'] <= r['p99_us'], r
"; then pass "bench percentiles ordered"; else fail "bench percentiles ordered"; fi

# infer and inspect: endless or special files fail promptly instead of exhausting memory.
if ! timeout 20 "$cli" infer "$golden/cx_published.safetensors" /dev/zero 2> "$work/err" && grep -q "NUL byte" "$work/err"; then
  pass "infer rejects NUL-filled input"; else fail "infer rejects NUL-filled input: $(cat "$work/err")"; fi
head -c 2000000 /dev/zero | tr '\0' '1' > "$work/long_line.csv"
if ! "$cli" infer "$golden/cx_published.safetensors" "$work/long_line.csv" 2> "$work/err" && grep -q "longer than" "$work/err"; then
  pass "infer rejects overlong line"; else fail "infer rejects overlong line: $(cat "$work/err")"; fi
if ! "$cli" inspect /dev/zero 2> "$work/err" && grep -q "not a regular file" "$work/err"; then
  pass "inspect rejects device file"; else fail "inspect rejects device file: $(cat "$work/err")"; fi
if ! "$cli" infer "$golden/cx_published.safetensors" "$work/channels.csv" --hop 2> "$work/err" && grep -q "needs a value" "$work/err"; then
  pass "infer option without value"; else fail "infer option without value: $(cat "$work/err")"; fi

# bench: prints median, p99 and throughput for 1 and 2 threads.
if "$cli" bench "$golden/cx_published.safetensors" --windows 50 --warmup 5 --threads 2 --json | $python -c "
import json, sys
r = json.load(sys.stdin)
assert r['threads'] == 2
for run in ('single', 'parallel'):
    assert 0 < r[run]['median_us'] <= r[run]['p99_us'], r
    assert r[run]['windows_per_second'] > 0, r
"; then pass "bench json"; else fail "bench json"; fi

# Model errors reach the user with the file name and the library's message.
printf 'not a model' > "$work/junk.safetensors"
if ! "$cli" inspect "$work/junk.safetensors" 2> "$work/err" && grep -q "junk.safetensors" "$work/err"; then
  pass "inspect rejects junk file"; else fail "inspect rejects junk file: $(cat "$work/err")"; fi
if ! "$cli" bench "$golden/cx_published.safetensors" --threads 0 2> "$work/err" && grep -q -- "--threads" "$work/err"; then
  pass "bench rejects zero threads"; else fail "bench rejects zero threads"; fi
if ! "$cli" frobnicate 2> /dev/null; then pass "unknown command fails"; else fail "unknown command fails"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
