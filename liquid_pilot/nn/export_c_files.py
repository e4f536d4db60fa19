"""The fixed files of a C export (``export_c``): the self-test's driver, the Makefile and the Cortex-M4 board.

They do not depend on the pilot: ``selftest_data.h`` and ``liquid_pilot.h`` carry everything that does.
The Makefile's recipe lines are written here indented by four spaces and get their tab when written.
"""
from __future__ import annotations

SELFTEST_C = r"""/* selftest.c: steps the exported pilot over the recorded flight in selftest_data.c and compares every
 * output with onnxruntime's (the flight artefact of the same checkpoint, stepped on the same inputs at export). Exits 0
 * only if every command, clamped command and state value is within TEST_TOLERANCE. Built with -DLP_BOARD (make
 * cortex-m4), the board (cortex_m4/board.c) also counts each step's instructions and the stack it uses. */
#include <math.h>
#include <stdio.h>

#include "liquid_pilot.h"
#include "selftest_data.h"
#ifdef LP_BOARD
#include "board.h"
#endif

/* The larger of sofar and the largest |got - want|; not-a-number counts as infinitely wrong. */
static float worst(const float *got, const float *want, int n, float sofar)
{
    int i;
    for (i = 0; i < n; i++) {
        const float d = fabsf(got[i] - want[i]);
        if (d != d)
            return INFINITY;
        sofar = d > sofar ? d : sofar;
    }
    return sofar;
}

int main(void)
{
    static lp_pilot pilot;
    lp_output out;
    float command = 0.0f, clamped = 0.0f, state = 0.0f;
    int t, failed = 0;
    lp_init(&pilot);
#ifdef LP_BOARD
    board_init();
#endif
    for (t = 0; t < TEST_STEPS; t++) {
        int rc;
        if (test_reset[t])
            lp_reset(&pilot);
#ifdef LP_BOARD
        board_begin();
#endif
        rc = lp_step(&pilot, test_images[t], LP_USES_IMU ? test_imu[t] : NULL, test_dt[t], &out);
#ifdef LP_BOARD
        board_end();
#endif
        if (rc != LP_OK) {
            printf("step %d: lp_step returned %d\n", t, rc);
            failed = 1;
        }
        command = worst(out.raw, test_command[t], LP_COMMANDS, command);
        clamped = worst(out.command, test_clamped[t], LP_COMMANDS, clamped);
        state = worst(pilot.state, test_state[t], LP_STATE_SIZE, state);
    }
    printf("recorded flight: %d steps of %s\n", TEST_STEPS, TEST_SOURCE);
    printf("max |C - onnxruntime|: command %.3g, clamped command %.3g, state %.3g (tolerance %.0e)\n",
           (double)command, (double)clamped, (double)state, (double)TEST_TOLERANCE);
#ifdef LP_BOARD
    board_report();
#endif
    if (!(command <= TEST_TOLERANCE && clamped <= TEST_TOLERANCE && state <= TEST_TOLERANCE))
        failed = 1;
    printf("%s\n", failed ? "FAIL: the C step does not match onnxruntime"
                          : "PASS: every output within tolerance of onnxruntime");
    return failed;
}
"""

BOARD_H = r"""/* board.h: instruction counting and stack measurement around lp_step on QEMU's mps2-an386 (board.c). */
#ifndef BOARD_H
#define BOARD_H

void board_init(void); /* start the timer, measure instructions per tick, paint the stack */
void board_begin(void); /* just before a step */
void board_end(void); /* just after it */
void board_report(void); /* print instructions per step, the implied rate at 168 MHz and the stack used */

#endif
"""

BOARD_C = r"""/* board.c: instructions per step and stack use on QEMU's mps2-an386 (a Cortex-M4 with FPU).
 *
 * QEMU runs the board with -icount shift=0: every instruction advances the virtual clock by 1 ns. The SysTick
 * timer counts the board's system clock on that virtual time, so the ticks between board_begin and board_end
 * count the step's instructions (40 to a tick at the board's 25 MHz). board_init measures the instructions per
 * tick on a loop of a known number of instructions instead of assuming the clock. Instructions are not cycles:
 * a Cortex-M4F takes 1 cycle for most instructions, 2 for a float load, 3 for a float multiply-accumulate, 14
 * for a division, plus flash wait states, so steps per second at 168 MHz from this count are an estimate (an
 * upper bound at one cycle per instruction).
 *
 * The stack below main's frame is painted with a pattern at board_init; board_report finds how deep the steps
 * wrote into it.
 */
#include <stdint.h>
#include <stdio.h>

#include "board.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u) /* SysTick control and status */
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u) /* reload value */
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u) /* current value: counts down, 24 bits */
#define TICK_MASK 0xFFFFFFu
#define CALIBRATION_LOOPS 1000000u /* of two instructions each */
#define PAINT_WORDS 16384u /* 64 KB of stack painted */
#define PAINT 0x5AA5C33Cu
#define CLOCK_HZ 168e6 /* the STM32F405 of a Crazyflie */

static uint32_t began, steps, fewest = 0xFFFFFFFFu, most;
static uint64_t total;
static double per_tick;
static uint32_t *painted_top, *painted_bottom;

static uint32_t ticks_since(uint32_t from)
{
    return (from - SYST_CVR) & TICK_MASK;
}

static void paint(void)
{
    uint32_t *sp, *p;
    __asm volatile("mov %0, sp" : "=r"(sp));
    painted_top = sp - 64; /* leave this function's frame and some slack alone */
    painted_bottom = painted_top - PAINT_WORDS;
    for (p = painted_bottom; p < painted_top; p++)
        *p = PAINT;
}

void board_init(void)
{
    uint32_t start, ticks;
    SYST_RVR = TICK_MASK;
    SYST_CVR = 0;
    SYST_CSR = 5; /* enabled, processor clock, no interrupt */
    start = SYST_CVR;
    __asm volatile("mov r0, %0\n"
                   "1: subs r0, #1\n"
                   "bne 1b\n"
                   :
                   : "r"(CALIBRATION_LOOPS)
                   : "r0", "cc");
    ticks = ticks_since(start);
    per_tick = 2.0 * CALIBRATION_LOOPS / (double)ticks;
    paint();
}

void board_begin(void)
{
    began = SYST_CVR;
}

void board_end(void)
{
    const uint32_t ticks = ticks_since(began);
    total += ticks;
    steps++;
    fewest = ticks < fewest ? ticks : fewest;
    most = ticks > most ? ticks : most;
}

void board_report(void)
{
    const double mean = per_tick * (double)total / (double)steps;
    uint32_t *p = painted_bottom;
    while (p < painted_top && *p == PAINT)
        p++;
    printf("instructions per step: %.0f mean, %.0f fewest, %.0f most over %lu steps (QEMU -icount, %.1f per "
           "SysTick tick, +-%.0f)\n", mean, per_tick * fewest, per_tick * most, (unsigned long)steps, per_tick,
           per_tick);
    printf("steps per second at 168 MHz: %.0f (estimate from the instruction count, at one cycle per "
           "instruction)\n", CLOCK_HZ / mean);
    if (p == painted_bottom)
        printf("stack: more than the %u bytes painted\n", 4u * PAINT_WORDS);
    else
        printf("stack: %lu bytes below main's frame (measured by painting)\n",
               (unsigned long)(4u * (uint32_t)(painted_top - p)));
}
"""

STARTUP_C = r"""/* startup.c: the Cortex-M4's vector table and reset handler for QEMU's mps2-an386 board.
 *
 * Reset grants the FPU (CP10 and CP11 in CPACR) before any floating-point instruction, copies initialised
 * data from flash to RAM as a microcontroller must, then enters newlib's start-up (_start, from
 * --specs=rdimon.specs: zeroes .bss, sets up semihosting for printf and exit, calls main). */
#include <stdint.h>

extern uint32_t __stack_top, __data_load__, __data_start__, __data_end__;
extern void _start(void);

static void hang(void)
{
    for (;;) {
    }
}

static void reset(void)
{
    const uint32_t *from = &__data_load__;
    uint32_t *to;
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: full access to CP10, CP11 */
    __asm volatile("dsb\n"
                   "isb");
    for (to = &__data_start__; to < &__data_end__;)
        *to++ = *from++;
    _start();
}

/* The initial stack pointer, then reset and the fault and system handlers. */
__attribute__((section(".isr_vector"), used)) static const struct {
    void *stack;
    void (*handlers[15])(void);
} vectors = {&__stack_top, {reset, hang, hang, hang, hang, hang, 0, 0, 0, 0, hang, hang, 0, hang, hang}};
"""

LINKER_SCRIPT = r"""/* mps2_an386.ld: QEMU's mps2-an386 (AN386: Cortex-M4 with FPU). Code and constants in the 4 MB at 0
 * (SSRAM1, standing in for flash), data, heap and stack in the 4 MB at 0x20000000 (SSRAM2/3). */
MEMORY
{
  FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
  RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 4M
}
ENTRY(_start)
SECTIONS
{
  .text :
  {
    KEEP(*(.isr_vector))
    *(.text*)
    *(.rodata*)
    KEEP(*(.init))
    KEEP(*(.fini))
    . = ALIGN(4);
    __preinit_array_start = .;
    KEEP(*(.preinit_array))
    __preinit_array_end = .;
    __init_array_start = .;
    KEEP(*(SORT(.init_array.*)))
    KEEP(*(.init_array))
    __init_array_end = .;
    __fini_array_start = .;
    KEEP(*(.fini_array))
    __fini_array_end = .;
  } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  .data : ALIGN(4)
  {
    __data_start__ = .;
    *(.data*)
    . = ALIGN(4);
    __data_end__ = .;
  } > RAM AT > FLASH
  __data_load__ = LOADADDR(.data);
  .bss (NOLOAD) : ALIGN(4)
  {
    __bss_start__ = .;
    *(.bss*)
    *(COMMON)
    . = ALIGN(4);
    __bss_end__ = .;
  } > RAM
  end = .;
  __end__ = .;
  __stack_top = ORIGIN(RAM) + LENGTH(RAM);
}
"""

FOOTPRINT_C = r"""/* footprint.c: the smallest firmware that steps the pilot (-DWITH_PILOT) and the same without it.
 * The difference of their sizes is what the pilot adds to a firmware: its code, weights, scratch maps and the libm
 * functions it calls. The camera frame is the caller's buffer, in both. */
#include "liquid_pilot.h"

uint8_t frame[LP_IMAGE_BYTES]; /* external: the compiler cannot assume it never changes */

int main(void)
{
#ifdef WITH_PILOT
    static lp_pilot pilot;
    static const float imu[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 9.81f};
    lp_output out;
    lp_init(&pilot);
    return lp_step(&pilot, frame, imu, 0.0625f, &out);
#else
    return frame[0];
#endif
}
"""

MAKEFILE = r"""# The exported pilot (liquid-pilot export --c): its self-test on this machine, on an emulated Cortex-M4F
# and on emulated aarch64 Linux. Every target fails unless every output is within the tolerance of onnxruntime's.
#   make test       build with this machine's C compiler (-std=c99 -Wall -Wextra -Werror -pedantic) and run
#   make cortex-m4  cross-build (arm-none-eabi-gcc, newlib), run under qemu-system-arm on the mps2-an386 board
#                   with semihosting; print flash, RAM, stack and instructions per step
#   make aarch64    cross-build (aarch64-linux-gnu-gcc, static), run under qemu-aarch64
# Debian packages: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm gcc-aarch64-linux-gnu qemu-user-static

WARN = -std=c99 -Wall -Wextra -Werror -pedantic
OPT = -O2
PILOT = liquid_pilot.c
TEST = selftest.c selftest_data.c
HEADERS = liquid_pilot.h selftest_data.h
B = build

ARM_CC = arm-none-eabi-gcc
ARM_SIZE = arm-none-eabi-size
M4 = -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard
# Fused multiply-adds (vfma), as firmware built in a GNU C dialect (gnu99, gnu11) gets by default; M4_FP= for none.
M4_FP = -ffp-contract=fast
M4_CFLAGS = $(WARN) $(OPT) $(M4) $(M4_FP) -ffunction-sections -fdata-sections -I. -Icortex_m4
M4_LDFLAGS = $(M4) --specs=rdimon.specs -T cortex_m4/mps2_an386.ld -Wl,--gc-sections
BOARD = cortex_m4/startup.c cortex_m4/board.c cortex_m4/board.h cortex_m4/mps2_an386.ld
QEMU_ARM = qemu-system-arm
QEMU_M4 = $(QEMU_ARM) -M mps2-an386 -nographic -monitor none -serial none \
        -semihosting-config enable=on,target=native -icount shift=0 -kernel
A64_CC = aarch64-linux-gnu-gcc
QEMU_A64 = $(shell command -v qemu-aarch64 || command -v qemu-aarch64-static || echo qemu-aarch64)
# The difference of two size lines (text data bss): what stepping the pilot adds to a firmware.
FOOTPRINT = NR == 2 { t = $$1; d = $$2; b = $$3 } NR == 3 { printf "the pilot in a firmware (footprint.elf - \
baseline.elf): flash %d bytes (text + data), RAM %d bytes (data + bss) + stack\n", $$1 + $$2 - t - d, \
$$2 + $$3 - d - b }
NEED = sh -c 'for tool in "$$@"; do command -v $$tool >/dev/null || { echo "make $@: $$tool not found; Debian: \
        apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm gcc-aarch64-linux-gnu \
        qemu-user-static"; exit 2; }; done' need

.PHONY: test cortex-m4 aarch64 clean

test: $(B)/host/selftest
    $(B)/host/selftest

$(B)/host/selftest: $(PILOT) $(TEST) $(HEADERS)
    mkdir -p $(B)/host
    $(CC) $(WARN) $(OPT) $(PILOT) $(TEST) -lm -o $@

cortex-m4: $(B)/cortex-m4/selftest.elf $(B)/cortex-m4/footprint.elf $(B)/cortex-m4/baseline.elf
    @$(NEED) $(QEMU_ARM)
    @$(ARM_SIZE) $(B)/cortex-m4/liquid_pilot.o $(B)/cortex-m4/baseline.elf $(B)/cortex-m4/footprint.elf
    @$(ARM_SIZE) $(B)/cortex-m4/baseline.elf $(B)/cortex-m4/footprint.elf | awk '$(FOOTPRINT)'
    $(QEMU_M4) $(B)/cortex-m4/selftest.elf

$(B)/cortex-m4/liquid_pilot.o: $(PILOT) liquid_pilot.h
    @$(NEED) $(ARM_CC)
    mkdir -p $(B)/cortex-m4
    $(ARM_CC) $(M4_CFLAGS) -c $(PILOT) -o $@

$(B)/cortex-m4/selftest.elf: $(B)/cortex-m4/liquid_pilot.o $(TEST) $(HEADERS) $(BOARD)
    $(ARM_CC) $(M4_CFLAGS) -DLP_BOARD $(M4_LDFLAGS) $(B)/cortex-m4/liquid_pilot.o $(TEST) cortex_m4/startup.c \
            cortex_m4/board.c -lm -o $@

$(B)/cortex-m4/footprint.elf: $(B)/cortex-m4/liquid_pilot.o cortex_m4/footprint.c $(BOARD)
    $(ARM_CC) $(M4_CFLAGS) -DWITH_PILOT $(M4_LDFLAGS) $(B)/cortex-m4/liquid_pilot.o cortex_m4/footprint.c \
            cortex_m4/startup.c -lm -o $@

$(B)/cortex-m4/baseline.elf: cortex_m4/footprint.c $(BOARD)
    @$(NEED) $(ARM_CC)
    mkdir -p $(B)/cortex-m4
    $(ARM_CC) $(M4_CFLAGS) $(M4_LDFLAGS) cortex_m4/footprint.c cortex_m4/startup.c -lm -o $@

aarch64: $(B)/aarch64/selftest
    @$(NEED) $(QEMU_A64)
    $(QEMU_A64) $(B)/aarch64/selftest

$(B)/aarch64/selftest: $(PILOT) $(TEST) $(HEADERS)
    @$(NEED) $(A64_CC)
    mkdir -p $(B)/aarch64
    $(A64_CC) $(WARN) $(OPT) -static $(PILOT) $(TEST) -lm -o $@

clean:
    rm -rf $(B)
"""

README_MD = r"""# The exported pilot in C

Generated by `liquid-pilot export MODEL --c DIR`; do not edit, export again. `liquid_pilot.h` documents the
interface (inputs, outputs, units, frames, return codes); `liquid_pilot.c` is the whole step. To use it, add
those two files to a firmware or program, link the C maths library (`-lm`), and call:

```c
static lp_pilot pilot;          /* the state, owned by you */
lp_output out;
lp_init(&pilot);                /* zero state, the default clamps (pilot.limits) */
/* every camera frame, already at LP_IMAGE_WIDTH x LP_IMAGE_HEIGHT RGB: */
if (lp_step(&pilot, frame, imu, dt_seconds, &out) == LP_OK)
    fly(out.command);           /* vx, vy, vz (m/s), yaw rate (rad/s), body FLU; else out.command is hover */
```

Checks, each against onnxruntime's outputs recorded at export over a flight (`selftest_data.c`):

- `make test`: this machine's compiler;
- `make cortex-m4`: a Cortex-M4F under QEMU (`mps2-an386`), with flash, RAM, stack and instructions per step;
- `make aarch64`: aarch64 Linux under `qemu-aarch64`.
"""

FILES = {"selftest.c": SELFTEST_C, "cortex_m4/board.h": BOARD_H, "cortex_m4/board.c": BOARD_C,
         "cortex_m4/startup.c": STARTUP_C, "cortex_m4/mps2_an386.ld": LINKER_SCRIPT,
         "cortex_m4/footprint.c": FOOTPRINT_C, "README.md": README_MD,
         "Makefile": "\n".join("\t" + line[4:] if line.startswith("    ") else line
                               for line in MAKEFILE.splitlines()) + "\n"}
