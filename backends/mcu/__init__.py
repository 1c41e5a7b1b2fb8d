"""Microcontroller backend: plain C for Cortex-M, one static arena, built and run in qemu."""
