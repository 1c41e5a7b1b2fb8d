"""The fixed C files of a generated project: the workspace allocator the kernels call, the
test harness (inputs from files, outputs to files: stdio on the host, semihosting on the
boards), the Cortex-M start-up code and the MPS2 linker script.

Semihosting (ARM DUI 0471): `bkpt 0xAB` with the operation in r0 and a pointer to its
argument block in r1; SYS_OPEN (0x01, modes 1 "rb" and 5 "wb"), SYS_CLOSE (0x02), SYS_WRITE0
(0x04), SYS_WRITE (0x05) and SYS_READ (0x06) return the bytes *not* transferred; SYS_EXIT
(0x18) with ADP_Stopped_ApplicationExit (0x20026) ends qemu with status 0, any other reason
with status 1. Files are opened relative to qemu's working directory.

Timing on the boards: SysTick counts the core clock (25 MHz on MPS2) down from 2^24 - 1,
its interrupt counts the wraps; under `qemu -icount shift=0` one instruction is 1 ns of
virtual time, so a tick is 40 instructions (`INSTRUCTIONS_PER_TICK` in run.py).
"""

from __future__ import annotations

RUNTIME_C = r"""/* The workspace the kernels allocate temporaries from: a LIFO bump allocator
 * over one static pool, sized at generation time from the kernels' own (constant) requests. */
#include <stddef.h>
#include <stdint.h>
#include "model.h"
#include "tvm/runtime/c_backend_api.h"

#define SMELT_POOL_BYTES (SMELT_WORKSPACE_BYTES > 0 ? SMELT_WORKSPACE_BYTES : 16)
static _Alignas(16) uint8_t smelt_pool[SMELT_POOL_BYTES];
static size_t smelt_pool_top;

void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes,
                               int dtype_code_hint, int dtype_bits_hint) {
  (void)device_type; (void)device_id; (void)dtype_code_hint; (void)dtype_bits_hint;
  uint64_t size = (nbytes + 15u) & ~(uint64_t)15u;
  if (size > SMELT_POOL_BYTES - smelt_pool_top) return NULL;
  void* block = smelt_pool + smelt_pool_top;
  smelt_pool_top += (size_t)size;
  return block;
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {
  (void)device_type; (void)device_id;
  uint8_t* p = (uint8_t*)ptr;
  if (p < smelt_pool || p >= smelt_pool + smelt_pool_top) return -1; /* not the last block */
  smelt_pool_top = (size_t)(p - smelt_pool);
  return 0;
}
"""

CHECKS_C = r"""
/* With the kernels' argument checks kept (host debug build), a failed check lands here. */
#include <stdio.h>
#include "tvm/ffi/c_api.h"

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** message_parts,
                                       int32_t num_parts) {
  fprintf(stderr, "smelt: kernel check failed: %s:", kind);
  for (int32_t i = 0; i < num_parts; ++i) fprintf(stderr, " %s", message_parts[i]);
  fprintf(stderr, "\n");
}
"""

HARNESS_IO_HOST = r"""#include <stdio.h>

static int smelt_read(const char* name, void* buf, uint32_t n) {
  FILE* f = fopen(name, "rb");
  if (f == NULL) return -1;
  size_t got = fread(buf, 1, n, f);
  fclose(f);
  return got == n ? 0 : -1;
}

static int smelt_write(const char* name, const void* buf, uint32_t n) {
  FILE* f = fopen(name, "wb");
  if (f == NULL) return -1;
  size_t put = fwrite(buf, 1, n, f);
  return (fclose(f) == 0 && put == n) ? 0 : -1;
}

static void smelt_say(const char* text) { fputs(text, stderr); }
static void smelt_timer_start(void) {}
static uint64_t smelt_timer_ticks(void) { return 0; }
"""

HARNESS_IO_SEMIHOST = r"""#include <string.h>

static int smelt_semihost(int op, void* arg) {
  register int r0 __asm__("r0") = op;
  register void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static int smelt_open(const char* name, uint32_t mode) {
  uint32_t block[3] = {(uint32_t)name, mode, (uint32_t)strlen(name)};
  return smelt_semihost(0x01, block);
}

static int smelt_transfer(int op, const char* name, uint32_t mode, const void* buf,
                          uint32_t n) {
  int fd = smelt_open(name, mode);
  if (fd < 0) return -1;
  uint32_t block[3] = {(uint32_t)fd, (uint32_t)buf, n};
  int left = smelt_semihost(op, block);
  uint32_t handle[1] = {(uint32_t)fd};
  smelt_semihost(0x02, handle);
  return left == 0 ? 0 : -1;
}

static int smelt_read(const char* name, void* buf, uint32_t n) {
  return smelt_transfer(0x06, name, 1, buf, n);
}

static int smelt_write(const char* name, const void* buf, uint32_t n) {
  return smelt_transfer(0x05, name, 5, buf, n);
}

static void smelt_say(const char* text) { smelt_semihost(0x04, (void*)text); }

#define SMELT_SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define SMELT_SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define SMELT_SYST_CVR (*(volatile uint32_t*)0xE000E018u)
extern volatile uint32_t smelt_systick_wraps;

static void smelt_timer_start(void) {
  SMELT_SYST_RVR = 0xFFFFFFu;
  SMELT_SYST_CVR = 0u;
  smelt_systick_wraps = 0u;
  SMELT_SYST_CSR = 7u; /* core clock, interrupt on wrap, enabled */
}

static uint64_t smelt_timer_ticks(void) {
  uint32_t now = SMELT_SYST_CVR;
  SMELT_SYST_CSR = 0u;
  return (uint64_t)smelt_systick_wraps * 0x1000000u + (0xFFFFFFu - now);
}
"""

STARTUP_C = r"""/* Cortex-M start-up: the vector table, .data copied from flash, .bss zeroed,
 * the FPU enabled where there is one, main() run, its status handed to qemu through semihosting.
 * Every fault ends the run with a failure instead of hanging. */
#include <stdint.h>
#include <string.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

volatile uint32_t smelt_systick_wraps;

static void smelt_exit(int status) {
  register int r0 __asm__("r0") = 0x18; /* SYS_EXIT */
  register uint32_t r1 __asm__("r1") = status == 0 ? 0x20026u : 0x20023u;
  __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
  for (;;) {
  }
}

void smelt_fault(void) {
  static const char text[] = "smelt: the core faulted\n";
  register int r0 __asm__("r0") = 0x04; /* SYS_WRITE0 */
  register const char* r1 __asm__("r1") = text;
  __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
  smelt_exit(1);
}

void smelt_systick(void) { smelt_systick_wraps++; }

void smelt_reset(void) {
  memcpy(&_sdata, &_sidata, (size_t)((uint8_t*)&_edata - (uint8_t*)&_sdata));
  memset(&_sbss, 0, (size_t)((uint8_t*)&_ebss - (uint8_t*)&_sbss));
#if defined(__ARM_FP)
  *(volatile uint32_t*)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10, CP11 full access */
  __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
  smelt_exit(main());
}

__attribute__((section(".isr_vector"), used)) static void (*const smelt_vectors[16])(void) = {
    (void (*)(void))(&_estack), smelt_reset, smelt_fault, smelt_fault, smelt_fault,
    smelt_fault, smelt_fault, 0, 0, 0, 0, smelt_fault, smelt_fault, 0, smelt_fault,
    smelt_systick,
};
"""

LINKER_SCRIPT = """/* MPS2 (AN385/AN386/AN500) under qemu: ZBT SSRAM1 at 0x0 holds the program
 * ("flash"), SSRAM2/3 at 0x20000000 the data and the stack. */
MEMORY
{{
  FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = {flash}
  RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = {sram}
}}
ENTRY(smelt_reset)
SECTIONS
{{
  .text : {{ KEEP(*(.isr_vector)) *(.text*) *(.rodata*) . = ALIGN(4); }} > FLASH
  .ARM.exidx : {{ *(.ARM.exidx*) }} > FLASH
  _sidata = LOADADDR(.data);
  .data : {{ _sdata = .; *(.data*) . = ALIGN(4); _edata = .; }} > RAM AT > FLASH
  .bss (NOLOAD) : {{ _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; }} > RAM
  _estack = ORIGIN(RAM) + LENGTH(RAM);
}}
"""
