"""The boards the C target builds for: three Cortex-M cores that qemu-system-arm emulates
(MPS2 FPGA images) and the host (gcc, run natively): `host` built as a microcontroller's
code is (-O2), `host-asan` under AddressSanitizer and UBSan, the debug build that finds what
a microcontroller would not report (out-of-bounds arena access, signed overflow).

Every MPS2 image maps 4 MiB of ZBT SSRAM at 0x0 (the program, read-only after load: "flash")
and 4 MiB at 0x20000000 (data, stack: "SRAM"); qemu boots from the vector table at 0x0.
Hard float on M4 (single precision FPU) and M7 (double precision FPU); M3 has none.
"""

from __future__ import annotations

from dataclasses import dataclass

from smelt.backends.targets import TargetError


@dataclass(frozen=True)
class Board:
    name: str
    core: str  # e.g. "cortex-m4"; "host" for the build machine
    machine: str | None  # qemu-system-arm -M (None: runs natively)
    cflags: tuple[str, ...]
    flash: int  # bytes
    sram: int

    @property
    def is_host(self) -> bool:
        return self.machine is None

    @property
    def sanitized(self) -> bool:
        return "-fsanitize=address,undefined" in self.cflags

    @property
    def compiler(self) -> str:
        return "gcc" if self.is_host else "arm-none-eabi-gcc"


MIB = 1 << 20
SANITIZE = ("-O0", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all")
_THUMB = ("-mthumb",)

BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("mps2-an385", "cortex-m3", "mps2-an385",
          ("-mcpu=cortex-m3", *_THUMB, "-mfloat-abi=soft"), 4 * MIB, 4 * MIB),
    Board("mps2-an386", "cortex-m4", "mps2-an386",
          ("-mcpu=cortex-m4", *_THUMB, "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
          4 * MIB, 4 * MIB),
    Board("mps2-an500", "cortex-m7", "mps2-an500",
          ("-mcpu=cortex-m7", *_THUMB, "-mfloat-abi=hard", "-mfpu=fpv5-d16"), 4 * MIB, 4 * MIB),
    Board("host", "host", None, (), 0, 0),
    Board("host-asan", "host", None, SANITIZE, 0, 0),
)}


def get_board(name: str | None) -> Board:
    if name is None:
        raise TargetError(f"target 'c' needs board=; one of {', '.join(BOARDS)}")
    if name not in BOARDS:
        raise TargetError(f"unknown board {name!r} for target 'c'; smelt builds for "
                          f"{', '.join(BOARDS)} (mps2-*: Cortex-M3/M4/M7 under qemu)")
    return BOARDS[name]
