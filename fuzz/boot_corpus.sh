#!/bin/bash
# Rebuilds the seed corpus of the boot fuzz target (fuzz/corpora/boot/)
# with nasm: the guests of the boot tests (tests/fixtures-src/*.asm) and
# the hostile seeds of fuzz/boot_seeds/*.asm; endings.asm once for each
# of its eight endings (its byte 2 picks one).  Reproducers of findings
# (crash-*, timeout-*, ...) in the corpus are kept.
set -euo pipefail
cd "$(dirname "$0")"
out=corpora/boot
mkdir -p "$out"
for src in ../tests/fixtures-src/*.asm boot_seeds/*.asm; do
	nasm -f bin -o "$out/$(basename "$src" .asm).bin" "$src"
done
for i in 1 2 3 4 5 6 7; do
	cp "$out/endings.bin" "$out/endings-$i.bin"
	printf "\\x0$i" | dd of="$out/endings-$i.bin" bs=1 seek=2 conv=notrunc status=none
done
