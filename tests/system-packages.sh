#!/usr/bin/env bash
# make test's set-up, as make demo's for the data: the Debian packages the suite needs, installed where apt is usable
# (root, or sudo without a password); elsewhere, before the run, the test groups that will skip and the one command
# that installs what they need. Outside CI it never fails: a missing package skips tests, it does not stop the suite.
set -u
missing=()
skipped=()
need() {  # CHECK (a command line: true when the package is there), PACKAGES, the tests that skip without them
  if ! (eval "$1") >/dev/null 2>&1; then
    missing+=($2)
    skipped+=("$3")
  fi
}
need "command -v npm" "nodejs npm" \
  "the JavaScript library (test_web.py; JavaScript's side of test_conformance.py, test_fuzz.py, test_native.py)"
need "command -v git" git "docs/layout.md against the tracked files (test_layout.py)"
need "test -x \"${CHROMIUM:-/usr/bin/chromium}\"" chromium "the demo page in headless Chromium (test_web.py)"
need "command -v cc" gcc "the C library and program (test_native.py)"
need "test -f /usr/include/cjson/cJSON.h" libcjson-dev "the C library and program (test_native.py)"
need "command -v aarch64-linux-gnu-gcc" gcc-aarch64-linux-gnu "the ARM64 build of the C program (make test-emulated)"
need "command -v nginx || test -x /usr/sbin/nginx" nginx-light "two replicas behind nginx (test_serve.py)"
need "command -v qemu-x86_64-static" qemu-user-static "int8 on an AVX2-only x86 CPU (test_int8.py, make test-emulated)"
need "test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz" dataset-fashion-mnist \
  "the tests on Fashion-MNIST (test_train.py, test_int8.py, test_likelihood.py, test_prior_folder.py, ...)"
need "test -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf" fonts-noto-color-emoji \
  "the colour data set that a package ships: Noto Color Emoji drawn by Pillow (test_emoji.py)"
[ ${#missing[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then
  S=$([ "$(id -u)" = 0 ] || echo sudo)
  echo "make test: installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if $S apt-get install -y -q "${missing[@]}" || { $S apt-get update -q && $S apt-get install -y -q "${missing[@]}"; }
  then exit 0; fi
  # one package apt cannot install must not keep the others (Chromium for the browser tests, say) out
  failed=()
  for package in "${missing[@]}"; do
    $S apt-get install -y -q "$package" || failed+=("$package")
  done
  [ ${#failed[@]} -eq 0 ] && exit 0
  echo "make test: apt-get could not install ${failed[*]}"
  # CI must run every test group: a package it could not install fails the run instead of skipping tests
  [ "${CI:-}" = true ] && exit 1
fi
if [ "${CI:-}" = true ]; then
  echo "make test: CI needs apt-get as root (or sudo) to install ${missing[*]}"
  exit 1
fi
echo "make test: these tests will skip, for want of Debian packages:"
declare -A said
for group in "${skipped[@]}"; do
  [ -n "${said[$group]:-}" ] || echo "  - $group"
  said[$group]=1
done
echo "to run them: sudo apt-get install ${missing[*]}"
