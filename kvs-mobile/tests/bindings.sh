#!/usr/bin/env bash
# kvs-mobile's binding tests: generates the Kotlin, Swift and Python
# bindings from the built library (the workspace's pinned uniffi-bindgen,
# --library mode), runs the Kotlin scenario on the JVM (kotlinc from npm's
# kotlin-compiler in .tools, JNA from Debian's libjna-java) and the Python
# one with pytest. Run by .ci/test, which installs those first.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
out="$target/kvs-mobile-bindings"

cargo build -q -p kvs-mobile --features testing --locked
cargo build -q -p uniffi-bindgen --locked
rm -rf "$out" && mkdir -p "$out"
"$target/debug/uniffi-bindgen" generate --library "$target/debug/libkvs_mobile.so" \
  --language kotlin --language swift --language python --out-dir "$out" >/dev/null
cp "$target/debug/libkvs_mobile.so" "$out/"

echo "== kvs-mobile: Kotlin on the JVM"
kotlin=.tools/node_modules/kotlin-compiler
jna=$(dpkg -L libjna-java | grep '/jna\.jar$' | head -1)
coroutines="$kotlin/lib/kotlinx-coroutines-core-jvm.jar"
"$kotlin/bin/kotlinc" -nowarn -cp "$jna:$coroutines" \
  $(find "$out" -name '*.kt') kvs-mobile/tests/kotlin/MobileTest.kt -d "$out/mobile-test.jar" 2>&1 \
  | grep -v '^warning: unable to find kotlin-stdlib' || true
java -Djna.library.path="$out" -cp "$out/mobile-test.jar:$jna:$coroutines:$kotlin/lib/kotlin-stdlib.jar" \
  MobileTestKt examples/media

echo "== kvs-mobile: Python (UniFFI bindings)"
KVS_MOBILE_BINDINGS="$out" .venv/bin/python -m pytest -q -p no:cacheprovider kvs-mobile/tests/python
