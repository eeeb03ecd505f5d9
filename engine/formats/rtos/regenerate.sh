#!/bin/sh
# Regenerate security_message_generated.py from security_message.fbs.
#
# Needs flatc (Debian: apt-get install flatbuffers-compiler; the committed file was made with
# flatc 2.0.8). Run it only after changing the schema: the generated file is committed, so
# installing, testing and CI need no flatc. --gen-onefile keeps every type in one module, which
# imports nothing but the flatbuffers runtime (the per-type files would import each other by the
# top-level package name AzureIoTSecurity).
set -eu
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flatc --python --gen-onefile -o "$out" security_message.fbs
cp "$out/security_message_generated.py" security_message_generated.py
