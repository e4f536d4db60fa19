"""The pilot's whole single step as portable C99, for microcontrollers and C/C++ flight software.

``liquid-pilot export MODEL --c DIR`` writes DIR with:

- ``liquid_pilot.h``: the interface, documenting inputs, outputs, units, frames and return codes;
- ``liquid_pilot.c``: the step, generated from the checkpoint's own modules and weights: the image
  normalisation (a lookup table), the CNN (one function per layer; the first layer's rows stream
  through a small ring so its 48 KB output map is never held whole), the spatial softmax, the IMU
  normalisation, the recurrent head (CfC-NCP, LTC-NCP, dense CfC, LSTM, GRU or feed-forward), the
  command scaling and the gate's clamps. Weights are ``static const`` arrays, there is no ``malloc``,
  nothing from libc but ``math.h``; the recurrent state lives in a struct the caller owns;
- ``selftest.c`` and ``selftest_data.c``: the network's inputs at every step of a recorded flight and
  onnxruntime's outputs for them on the flight artefact (``flight.artefact``) of the same checkpoint;
  the self-test fails unless every output is within ``TOLERANCE`` of onnxruntime's;
- ``Makefile``: ``make test`` (host compiler, ``-std=c99 -Wall -Wextra -Werror -pedantic``),
  ``make cortex-m4`` (QEMU's mps2-an386 board, semihosting; flash, RAM, stack and instructions per step)
  and ``make aarch64`` (qemu-aarch64); ``cortex_m4/`` holds the board's start-up code and linker script.

The generator walks the PyTorch modules and emits C for each; a module it does not know is refused
with one line rather than exported wrongly.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liquid_pilot.flight.artefact import SELFTEST_TOLERANCE
from liquid_pilot.flight.gate import GateConfig, clamp
from liquid_pilot.flight.image import PREPROCESSING
from liquid_pilot.nn.cells import GATES, LTC, DenseCfC, WiredCfC
from liquid_pilot.nn.export_c_files import FILES
from liquid_pilot.nn.heads import FeedForwardHead, GatedRNNHead
from liquid_pilot.nn.policy import COMMAND_AXES, FRAME_NORM_FLOOR, IMU_FIELDS, Pilot

TOLERANCE = SELFTEST_TOLERANCE  # absolute, on every command and state value, against onnxruntime
PIXELS, BLOCK = 4, 4  # a convolution sums 4 pixels x 4 channels at once: 16 sums, 4 inputs, 4 weights fit the FPU


@dataclass
class StepInputs:
    """What the network was given at each step of a flight, as the flight core gave it (``harness.pilots``).

    ``reset[t]`` says the state was reset before step t (the start of a flight: dt is then 0).
    """

    images: np.ndarray  # (T, H, W, 3) uint8 RGB frames at the model's input size (after flight.image.fit)
    imu: np.ndarray  # (T, 6) float32 [gyro xyz rad/s, accel xyz m/s^2], body FLU; zeros for a pilot without IMU
    dt: np.ndarray  # (T,) float32 seconds since the previous step's frame; 0 after a reset
    reset: np.ndarray  # (T,) bool: reset the state before this step (reset[0] is always true)
    source: str  # where the steps come from, one line (written into the self-test's report)

    def __post_init__(self) -> None:
        self.images = np.ascontiguousarray(self.images)
        self.imu = np.asarray(self.imu, np.float32)
        self.dt = np.asarray(self.dt, np.float32).reshape(-1)
        self.reset = np.asarray(self.reset, bool).reshape(-1)
        steps = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3 or steps < 1:
            raise ValueError(f"images must be (steps >= 1, H, W, 3) uint8 RGB, got {self.images.shape} "
                             f"{self.images.dtype}")
        if self.imu.shape != (steps, len(IMU_FIELDS)) or self.dt.shape != (steps,) or self.reset.shape != (steps,):
            raise ValueError(f"imu {self.imu.shape}, dt {self.dt.shape} and reset {self.reset.shape} must have one "
                             f"row per image ({steps})")
        if not (np.isfinite(self.imu).all() and np.isfinite(self.dt).all() and (self.dt >= 0).all()):
            raise ValueError("imu and dt must be finite, and dt >= 0 seconds")
        if not self.reset[0]:
            raise ValueError("reset[0] must be true: a recorded flight starts from a reset state")
        if "\n" in self.source or "*/" in self.source or '"' in self.source or "\\" in self.source:
            raise ValueError(f"source must be one plain line (no quotes, backslashes or '*/'), got {self.source!r}")


def reference_outputs(checkpoint: str | os.PathLike, steps: StepInputs) -> dict[str, np.ndarray]:
    """Step the checkpoint's flight artefact in onnxruntime over ``steps``: command, clamped command, next state."""
    from liquid_pilot.nn.artefact import write_artefact
    from liquid_pilot.flight.runtime import OnnxPilot

    with tempfile.TemporaryDirectory() as tmp:
        write_artefact(checkpoint, Path(tmp) / "pilot.onnx")
        runner = OnnxPilot(Path(tmp) / "pilot.onnx")
    state_size = max(runner.state_size, 0)
    state = np.zeros((1, state_size), np.float32)
    commands, states = [], []
    for t in range(len(steps.images)):
        if steps.reset[t]:
            state = np.zeros((1, state_size), np.float32)
        command, state = runner.step(steps.images[t:t + 1], steps.imu[t:t + 1], state,
                                     steps.dt[t].reshape(1, 1))
        state = np.asarray(state, np.float32).reshape(1, state_size)
        commands.append(np.asarray(command, np.float32)[0])
        states.append(state[0].copy())
    limits = GateConfig()
    clamped = [np.asarray(clamp(c, limits), np.float32) for c in commands]
    return {"command": np.array(commands, np.float32), "clamped": np.array(clamped, np.float32),
            "state": np.array(states, np.float32).reshape(len(commands), state_size)}


def check_destination(out_dir: str | os.PathLike) -> Path:
    """Return ``out_dir`` as a Path, or raise ValueError if it cannot be the export's directory."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory; name a directory for --c")
    return out


def export_c(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, steps: StepInputs) -> list[Path]:
    """Write the C step, its self-test over ``steps`` and the Makefile into ``out_dir``; return the files written.

    The reference outputs come from onnxruntime stepping the checkpoint's flight artefact.
    Raises ValueError naming the problem for a model or recording this exporter cannot take.
    """
    from liquid_pilot.nn.checkpoint import load_pilot, read_checkpoint

    pilot = load_pilot(checkpoint).eval()
    cfg = pilot.config
    if steps.images.shape[1:3] != (cfg.image_height, cfg.image_width):
        raise ValueError(f"the recorded frames are {steps.images.shape[2]}x{steps.images.shape[1]}, the model takes "
                         f"{cfg.image_width}x{cfg.image_height}: record them through the flight core (fit)")
    out = check_destination(out_dir)
    sha256 = read_checkpoint(checkpoint)["sha256"]
    generator = _Generator(pilot, Path(checkpoint).name, sha256)
    pilot_c, header = generator.source(), generator.header()  # refuses unknown modules before anything is written
    reference = reference_outputs(checkpoint, steps)
    texts = {"liquid_pilot.h": header, "liquid_pilot.c": pilot_c,
             "selftest_data.h": _selftest_header(pilot, steps), "selftest_data.c": _selftest_data(steps, reference)}
    texts.update(FILES)
    written = []
    for name, text in texts.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        written.append(path)
    shutil.rmtree(out / "build", ignore_errors=True)  # products of an earlier export are stale now
    return written


# ---------------------------------------------------------------------------------------------------------------
# Formatting


def _float(value: float) -> str:
    """Return a float32 as the shortest C literal that reads back to the same float."""
    text = str(np.float32(value))
    if text in ("inf", "-inf", "nan"):
        raise ValueError(f"a weight is {text}: the checkpoint is damaged")
    return text + "f"


def _values(array: np.ndarray, per_line: int, indent: str, fmt=_float) -> str:
    """Return the nested initializer of ``array`` (a brace per dimension), ``per_line`` numbers to a line."""
    array = np.asarray(array)
    if array.ndim == 1:
        items = [fmt(v) for v in array.tolist()]
        lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
        if len(lines) <= 1:
            return "{" + (lines[0] if lines else "") + "}"
        return "{\n" + ",\n".join(indent + "    " + line for line in lines) + "\n" + indent + "}"
    inner = ",\n".join(indent + "    " + _values(a, per_line, indent + "    ", fmt) for a in array)
    return "{\n" + inner + "\n" + indent + "}"


def _array(name: str, array: np.ndarray | torch.Tensor, comment: str, ctype: str = "float",
           per_line: int = 8, storage: str = "static const") -> str:
    array = np.asarray(array.detach() if isinstance(array, torch.Tensor) else array)
    if ctype == "float":
        array = array.astype(np.float32)
    dims = "".join(f"[{d}]" for d in array.shape)
    fmt = _float if ctype == "float" else (lambda v: str(int(v)))
    return f"{_comment(comment)}{storage} {ctype} {name}{dims} = {_values(array, per_line, '', fmt)};\n"


def _comment(text: str, indent: str = "") -> str:
    """Return ``text`` as a C comment wrapped to 112 columns (nothing for no text)."""
    lines = textwrap.wrap(text, 112 - len(indent), break_long_words=False, break_on_hyphens=False)
    if not lines:
        return ""
    return f"{indent}/* " + f"\n{indent} * ".join(lines) + " */\n"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy()


# ---------------------------------------------------------------------------------------------------------------
# The generator


@dataclass(frozen=True)
class _Conv:
    name: str  # module path, e.g. encoder.convs.0
    index: int
    cin: int
    cout: int
    kernel: int
    stride: int
    padding: int
    relu: bool
    height_in: int
    width_in: int
    height: int  # output
    width: int
    pixels: int  # output pixels computed at once (they share each weight load)
    block: int  # output channels computed at once (they share each input load)
    pad_out: int  # zero columns each side of an output row: the next layer's padding (0 for the logits)

    @property
    def row_in(self) -> int:
        """Floats in one padded input row."""
        return (self.width_in + 2 * self.padding) * self.cin

    @property
    def row_out(self) -> int:
        """Floats in one padded output row."""
        return (self.width + 2 * self.pad_out) * self.cout


class _Generator:
    """Emits the C of one pilot; every ``_emit_*`` writes one part, reading the module's own weights."""

    def __init__(self, pilot: Pilot, model_name: str, sha256: str):
        self.pilot = pilot
        self.cfg = pilot.config
        self.model_name = model_name
        self.sha256 = sha256
        self.convs = self._convs()
        self.features = pilot.encoder.fc.out_features
        self.sensory = self.features + (len(IMU_FIELDS) if self.cfg.use_imu else 0)
        self.state_size = pilot.state_size
        head = pilot.head
        kinds = ((WiredCfC, "cfc_ncp"), (LTC, "ltc_ncp"), (DenseCfC, "cfc"), (GatedRNNHead, "rnn"),
                 (FeedForwardHead, "ff"))
        self.head_kind = next((kind for cls, kind in kinds if isinstance(head, cls)), None)
        if self.head_kind is None:
            raise ValueError(f"a {type(head).__name__} head has no C export (heads with one: cfc_ncp, ltc_ncp, cfc, "
                             "lstm, gru, ff)")

    # The CNN's structure, read from the modules.
    def _convs(self) -> list[_Conv]:
        encoder = self.pilot.encoder
        modules = list(encoder.convs)
        found: list[tuple] = []
        height, width, channels = self.cfg.image_height, self.cfg.image_width, 3
        i = 0
        while i < len(modules):
            conv = modules[i]
            if not isinstance(conv, nn.Conv2d):
                raise ValueError(f"encoder.convs.{i} is a {type(conv).__name__}: the C export knows Conv2d + ReLU only")
            k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
            if (conv.kernel_size[1], conv.stride[1], conv.padding[1]) != (k, s, p) or conv.groups != 1 or \
                    conv.dilation != (1, 1) or conv.bias is None or conv.padding_mode != "zeros" or \
                    conv.in_channels != channels or s > k:
                raise ValueError(f"encoder.convs.{i}: only square, ungrouped, undilated, biased, zero-padded "
                                 "convolutions with stride <= kernel have a C export")
            relu = i + 1 < len(modules) and isinstance(modules[i + 1], nn.ReLU)
            out_h, out_w = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
            found.append((f"encoder.convs.{i}", len(found), channels, conv.out_channels, k, s, p, relu, height,
                          width, out_h, out_w))
            height, width, channels = out_h, out_w, conv.out_channels
            i += 2 if relu else 1
        if len(found) < 2 or found[-1][7]:
            raise ValueError("the C export expects at least two convolutions, the last giving the softmax logits")
        if (height, width) != tuple(encoder.map_size):
            raise ValueError(f"the CNN's map is {height}x{width}, its grid says {encoder.map_size}")
        convs = []
        for n, spec in enumerate(found):
            out_w, cout = spec[11], spec[3]
            pixels = next(p for p in (PIXELS, 2, 1) if out_w % p == 0)
            block = next(b for b in (BLOCK, 3, 2, 1) if cout % b == 0)
            pad_out = found[n + 1][6] if n + 1 < len(found) else 0
            convs.append(_Conv(*spec, pixels, block, pad_out))
        return convs

    # Public results.
    def header(self) -> str:
        cfg, h, w = self.cfg, self.cfg.image_height, self.cfg.image_width
        limits = GateConfig()
        axes = ", ".join(COMMAND_AXES)
        imu_doc = (" *   imu    6 floats [gyro_x, gyro_y, gyro_z (rad/s), accel_x, accel_y, accel_z (m/s^2)], body\n"
                   " *          FLU; the accelerometer's specific force (+9.81 on z at rest, level), as in\n"
                   " *          sensor_msgs/Imu.\n"
                   ) if cfg.use_imu else " *   imu    unused by this pilot (camera only): pass NULL.\n"
        normalising = ("standardising each colour channel by the frame's own mean and deviation" if cfg.frame_norm
                       else "the training set's per-channel mean and deviation")
        return f"""/* liquid_pilot.h: the pilot {self.model_name} as portable C99, one control step per camera frame.
 *
 * Generated by `liquid-pilot export {self.model_name} --c DIR` from the checkpoint with weights sha256
 * {self.sha256}. Do not edit: export again.
 *
 * Head: {cfg.head} ({cfg.units} units, state of {self.state_size} floats), CNN on {w}x{h} RGB frames.
 *
 * Inputs of lp_step:
 *   image  {h}*{w}*3 bytes, RGB, row-major HWC (row 0 is the top of the picture, x to the right), the frame
 *          already at the model's input size. liquid_pilot/flight/image.py (preprocessing "{PREPROCESSING}")
 *          makes it from any camera frame: a centre crop to the aspect ratio {w}:{h}, then an area resize. On
 *          a microcontroller, let the camera or its DMA crop/bin to {w}x{h}; everything after that (scaling
 *          to [0, 1] and {normalising}) is inside lp_step.
{imu_doc} *   dt     seconds since the previous step's frame (the frames' stamps); 0 for the first step after
 *          lp_reset. The cells see dt * {cfg.time_scale:g}: the network runs in real time, any frame rate.
 * Outputs (lp_output):
 *   command  [{axes}]: body FLU (REP-103: x forward, y left, z up, yaw counter-clockwise seen
 *            from above), m/s and rad/s, after the clamps in lp_pilot.limits (the horizontal vector is
 *            scaled down to max_speed_xy; vz and the yaw rate are cut). Fly this one. PX4/ArduPilot/MAVLink
 *            take FRD: negate vy, vz and yaw_rate.
 *   raw      the same before the clamps (the ONNX artefact's "command" output).
 * State: lp_pilot.state, {self.state_size} floats, owned by the caller; lp_reset zeroes it (a new flight).
 *
 * What stays with the caller (liquid_pilot/flight/gate.py does it in Python): timeouts and stale frames,
 * resets after gaps, IMU plausibility, hysteresis after faults. lp_step checks only that its inputs and
 * outputs are finite: on a bad input it leaves the state alone, on a non-finite output it resets the state;
 * either way it sets both commands to zero (hover) and returns an error code.
 *
 * Resources: no malloc, no libc beyond math.h (expf, tanhf, sqrtf). Scratch maps are static (.bss), so
 * lp_step is not reentrant: step one pilot at a time. make cortex-m4 measures flash, RAM, stack and
 * instructions per step on an emulated Cortex-M4F.
 */
#ifndef LIQUID_PILOT_H
#define LIQUID_PILOT_H

#include <stdint.h>

#define LP_IMAGE_HEIGHT {h}
#define LP_IMAGE_WIDTH {w}
#define LP_IMAGE_BYTES ({h} * {w} * 3)
#define LP_USES_IMU {int(cfg.use_imu)}
#define LP_STATE_SIZE {self.state_size}
#define LP_COMMANDS 4 /* {axes} */

/* lp_step's return codes. */
#define LP_OK 0
#define LP_BAD_INPUT 1 /* NULL image, or dt, imu not finite, or dt < 0: hover, state unchanged */
#define LP_BAD_OUTPUT 2 /* the network produced a non-finite value: hover, state reset */

/* The clamps, as the flight gate's (GateConfig) defaults. */
typedef struct {{
    float max_speed_xy; /* m/s: horizontal speed limit (default {limits.max_speed_xy:g}) */
    float max_speed_z; /* m/s: vertical speed limit (default {limits.max_speed_z:g}) */
    float max_yaw_rate; /* rad/s: yaw rate limit (default {limits.max_yaw_rate:g}) */
}} lp_limits;

typedef struct {{
    float state[LP_STATE_SIZE > 0 ? LP_STATE_SIZE : 1]; /* the neurons between steps */
    lp_limits limits;
}} lp_pilot;

typedef struct {{
    float command[LP_COMMANDS]; /* to fly: {axes}, body FLU, m/s and rad/s, clamped */
    float raw[LP_COMMANDS]; /* the network's command before the clamps */
}} lp_output;

/* A fresh pilot: zero state, the default clamps. */
void lp_init(lp_pilot *pilot);

/* Zero the state: the next lp_step starts a new flight (give it dt = 0). */
void lp_reset(lp_pilot *pilot);

/* One control step: image (LP_IMAGE_BYTES), imu (6 floats, or NULL when LP_USES_IMU is 0), dt in seconds.
 * Returns LP_OK, LP_BAD_INPUT or LP_BAD_OUTPUT (then out holds zeros: hover). */
int lp_step(lp_pilot *pilot, const uint8_t *image, const float *imu, float dt, lp_output *out);

#endif
"""

    def source(self) -> str:
        parts = [f"""/* liquid_pilot.c: the pilot {self.model_name} (weights sha256 {self.sha256[:16]}...), generated by
 * `liquid-pilot export --c` from its PyTorch modules. Do not edit: export again. See liquid_pilot.h.
 *
 * Layout: 1. image normalisation, 2. CNN (one function per layer), 3. spatial softmax and features,
 * 4. the {self.cfg.head} head, 5. the step (IMU normalisation, command scaling, clamps).
 * Maps are HWC (channel last), as the camera's bytes.
 */
#include "liquid_pilot.h"

#include <math.h>
""", self._emit_normalisation(), *[self._emit_conv(c) for c in self.convs], self._emit_encoder(),
                 self._emit_head(), self._emit_step()]
        return "\n".join(parts)

    # 1. Image normalisation.
    def _emit_frame_statistics(self, mean: np.ndarray, std: np.ndarray, stats: str) -> str:
        """Return the table of a frame-normalised pilot (frame_norm), rebuilt from each frame's own statistics."""
        h, w = self.cfg.image_height, self.cfg.image_width
        pixels = h * w
        if w * 255 * 255 >= 2**32:
            raise ValueError(f"frames {w} pixels wide are too wide for the C export's frame statistics (< 66,052)")
        n2 = float(pixels * pixels) * 65025.0  # n^2 * 255^2: the variance's divisor in [0, 1] units
        return f"""{_comment("This pilot standardises each frame per colour channel by its own mean m_c and variance "
                     "v_c (frame_norm, in [0, 1] units), so its table is rebuilt for every frame: pixel_value[c][u] "
                     f"= ((u / 255 - m_c) / sqrt(v_c + {FRAME_NORM_FLOOR:g}) - mean[c]) / std[c] ({stats}).")}\
static float pixel_value[3][256];
{_array("frame_mean", mean, "mean[c]")}{_array("frame_std", std, "std[c]")}
/* The frame's sums are exact integers (n * sum of squares - sum^2 = n^2 * variance in levels^2); a row's sums fit
 * 32 bits ({w} pixels * 255^2). Then pixel_value[c][u] = u * a_c + b_c, the formula above rearranged. */
static void frame_statistics(const uint8_t *image)
{{
    uint32_t sum[3] = {{0, 0, 0}};
    uint64_t squares[3] = {{0, 0, 0}};
    int x, y, c, u;
    for (y = 0; y < {h}; y++) {{
        const uint8_t *p = image + y * {w * 3};
        uint32_t s0 = 0, s1 = 0, s2 = 0, q0 = 0, q1 = 0, q2 = 0;
        for (x = 0; x < {w * 3}; x += 3) {{
            const uint32_t r = p[x], g = p[x + 1], b = p[x + 2];
            s0 += r;
            s1 += g;
            s2 += b;
            q0 += r * r;
            q1 += g * g;
            q2 += b * b;
        }}
        sum[0] += s0;
        sum[1] += s1;
        sum[2] += s2;
        squares[0] += q0;
        squares[1] += q1;
        squares[2] += q2;
    }}
    for (c = 0; c < 3; c++) {{
        const float m = (float)sum[c] / {float(pixels * 255):.1f}f;
        const float var = (float)({pixels}u * squares[c] - (uint64_t)sum[c] * sum[c]) / {n2:.1f}f;
        const float scale = 1.0f / sqrtf(var + {_float(FRAME_NORM_FLOOR)});
        const float a = scale / (255.0f * frame_std[c]), b = -(m * scale + frame_mean[c]) / frame_std[c];
        for (u = 0; u < 256; u++)
            pixel_value[c][u] = (float)u * a + b;
    }}
}}
"""

    def _emit_normalisation(self) -> str:
        mean, std = _np(self.pilot.image_mean), _np(self.pilot.image_std)
        c0 = self.convs[0]
        width, pad = c0.width_in, c0.padding
        stats = (f"mean {', '.join(f'{v:.4f}' for v in mean)}, std {', '.join(f'{v:.4f}' for v in std)}, from "
                 "training")
        if self.cfg.frame_norm:
            table_code = self._emit_frame_statistics(mean, std, stats)
        else:  # a fixed table: the training set's statistics
            levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
            table = np.stack([(levels - mean[c]) / std[c] for c in range(3)]).astype(np.float32)
            table_code = _array("pixel_value", table, f"pixel_value[c][u] = (u / 255 - mean[c]) / std[c]: a byte of "
                                                      f"colour c as the CNN sees it ({stats})", per_line=8)
        return "/* ---- 1. Image normalisation ---- */\n" + table_code + f"""
/* One row of the frame ({width} RGB pixels), normalised, with conv0's {pad} zero column(s) of padding each side. */
static void normalise_row(const uint8_t *pixels, float *row)
{{
    int x;
    for (x = 0; x < {pad * 3}; x++) {{
        row[x] = 0.0f;
        row[{(width + pad) * 3} + x] = 0.0f;
    }}
    row += {pad * 3};
    for (x = 0; x < {width * 3}; x += 3) {{
        row[x] = pixel_value[0][pixels[x]];
        row[x + 1] = pixel_value[1][pixels[x + 1]];
        row[x + 2] = pixel_value[2][pixels[x + 2]];
    }}
}}
""" + ("" if not any(c.relu for c in self.convs) else """
/* max(0, v) */
static float relu(float v)
{
    return v > 0.0f ? v : 0.0f;
}
""")

    # 2. Convolutions.
    def _emit_conv(self, c: _Conv) -> str:
        conv: nn.Conv2d = self.pilot.encoder.convs[int(c.name.rsplit(".", 1)[1])]
        k, cin, block, pixels = c.kernel, c.cin, c.block, c.pixels
        blocks, span = c.cout // block, c.stride * cin
        weight = _np(conv.weight).reshape(blocks, block, cin, k, k).transpose(0, 3, 4, 2, 1)
        weight = weight.reshape(blocks, k, k * cin, block)
        sums = [[f"a{j}_{o}" for o in range(block)] for j in range(pixels)]
        init = "\n".join("            float " + ", ".join(f"{sums[j][o]} = b[{o}]" for o in range(block)) + ";"
                         for j in range(pixels))
        loads = ", ".join(f"v{j} = in[k{f' + {j * span}' if j else ''}]" for j in range(pixels))
        macs = "\n".join("                    " + " ".join(f"{sums[j][o]} += v{j} * w[{o}];" for o in range(block))
                         for j in range(pixels))
        value = "relu({0})" if c.relu else "{0}"
        store = "\n".join("                " + " ".join(
            f"o[{j * c.cout + o}] = {value.format(sums[j][o])};" for o in range(block)) for j in range(pixels))
        relu = "max(0, ...) (ReLU)" if c.relu else "no activation (these are the spatial softmax's logits)"
        source = "the normalised frame" if c.index == 0 else f"conv{c.index - 1}'s output"
        pad = "" if not c.pad_out else f"""    for (k = 0; k < {c.pad_out * c.cout}; k++) {{ /* its padding */
        out[k] = 0.0f;
        out[{(c.width + c.pad_out) * c.cout} + k] = 0.0f;
    }}
    out += {c.pad_out * c.cout};
"""
        padded = (f"; out gets the {c.pad_out} zero column(s) the next layer pads with each side" if c.pad_out
                  else "")
        return f"""
/* ---- 2.{c.index} {c.name}: Conv2d({cin} -> {c.cout}, {k}x{k}, stride {c.stride}, padding {c.padding}), \
{c.height_in}x{c.width_in} -> {c.height}x{c.width} ---- */
{_array(f"conv{c.index}_w", weight, f"W[o][ky][kx][i] stored as [o / {block}][ky][kx * {cin} + i][o % {block}]")}
{_array(f"conv{c.index}_b", _np(conv.bias), "bias b[o]")}
{_comment(f"One output row y from {source}: out[x][o] = {relu} of b[o] + sum over ky, kx, i of "
          f"W[o][ky][kx][i] * rows[ky][x * {c.stride} + kx][i]. rows[ky] is input row y * {c.stride} + ky - "
          f"{c.padding} with its {c.padding} zero column(s) each side (zero_row above and below the map), so the sums "
          f"need no bounds checks{padded}. {pixels} neighbouring pixels times {block} output channels are summed at "
          f"once: each input and each weight loaded serves several multiply-adds.").rstrip()}
static void conv{c.index}_row(const float *const rows[{k}], float *out)
{{
    int x, ob, ky, k;
{pad}    for (x = 0; x < {c.width}; x += {pixels}) {{
        for (ob = 0; ob < {blocks}; ob++) {{
            const float *w = conv{c.index}_w[ob][0][0], *b = conv{c.index}_b + ob * {block};
{init}
            for (ky = 0; ky < {k}; ky++) {{
                const float *in = rows[ky] + x * {span};
                for (k = 0; k < {k * cin}; k++, w += {block}) {{ /* kx and i: {k} columns of {cin} channels */
                    const float {loads};
{macs}
                }}
            }}
            {{
                float *o = out + x * {c.cout} + ob * {block};
{store}
            }}
        }}
    }}
}}
"""

    # 3. The whole encoder: streamed first layers, full maps after, spatial softmax, dense layer.
    def _emit_encoder(self) -> str:
        enc = self.pilot.encoder
        c0, c1, last = self.convs[0], self.convs[1], self.convs[-1]
        image_ring, conv0_ring = c0.kernel * c0.row_in, c1.kernel * c0.row_out
        maps = {c.index: c.height * c.row_out for c in self.convs[1:]}
        size_a = max(s for i, s in maps.items() if i % 2 == 1)
        size_b = max([conv0_ring + image_ring] + [s for i, s in maps.items() if i % 2 == 0])
        buf = {i: ("map_a" if i % 2 == 1 else "map_b") for i in maps}
        later = []
        for c in self.convs[2:]:
            prev, src = self.convs[c.index - 1], buf[c.index - 1]
            later.append(f"""    for (y = 0; y < {c.height}; y++) {{ /* conv{c.index}: {src} -> {buf[c.index]} */
        for (k = 0; k < {c.kernel}; k++) {{
            const int iy = y * {c.stride} + k - {c.padding};
            rows[k] = (iy >= 0 && iy < {c.height_in}) ? {src} + iy * {prev.row_out} : zero_row;
        }}
        conv{c.index}_row(rows, {buf[c.index]} + y * {c.row_out});
    }}""")
        later_code = "\n".join(later)
        positions, channels = last.height * last.width, last.cout
        scale = torch.exp(-enc.log_temperature.detach().float())
        grid = _np(enc.grid)
        grid_x, grid_y = grid[:last.width, 0], grid[::last.width, 1]
        if not (np.array_equal(np.tile(grid_x, last.height), grid[:, 0])
                and np.array_equal(np.repeat(grid_y, last.width), grid[:, 1])):
            raise ValueError("the encoder's grid is not a separable x, y grid")
        fc = enc.fc
        if fc.in_features != 3 * channels:
            raise ValueError(f"encoder.fc reads {fc.in_features} values, the spatial softmax gives {3 * channels}")
        kmax = max(c.kernel for c in self.convs)
        statistics = "    frame_statistics(image); /* frame_norm: the table of this frame */\n" \
            if self.cfg.frame_norm else ""
        whole = 4 * c0.height * c0.width * c0.cout
        return f"""
/* ---- 3. The encoder: the convolutions, the spatial softmax and the dense layer ---- */
{_comment(f"Scratch (static: lp_step is not reentrant). The frame's rows are normalised into image_ring "
          f"({c0.kernel} rows) and conv0's output rows pass through conv0_ring ({c1.kernel} rows) just as conv1 "
          f"needs them, so conv0's whole {c0.height}x{c0.width}x{c0.cout} map ({whole // 1024} KB) is never held. "
          "Later maps alternate between map_a (conv1, conv3, ...) and map_b (the rings, then conv2, ...). Rows "
          "carry the next layer's zero padding columns.").rstrip()}
static float map_a[{size_a}];
static float map_b[{size_b}];
static const float zero_row[{max(c.row_in for c in self.convs)}] = {{0.0f}}; /* the rows above and below a map */
#define conv0_ring map_b
#define image_ring (map_b + {conv0_ring})

{_array("grid_x", grid_x, "spatial softmax grid: x of each column, -1 (left) .. 1 (right)")}
{_array("grid_y", grid_y, "and y of each row, -1 (top) .. 1 (bottom)")}
{_array("softmax_scale", scale.reshape(1), "exp(-log_temperature): the softmax's inverse temperature")}
{_array("fc_w", _np(fc.weight), f"encoder.fc: W[f][j], {fc.out_features} features from [x, y per map "
                                 f"({2 * channels}), mean per map ({channels})]")}
{_array("fc_b", _np(fc.bias), "encoder.fc bias")}
/* Spatial softmax of the logits L ({last.height}x{last.width}x{channels}, HWC) and the dense layer:
 *   w[p][c] = softmax over p of L[p][c] * softmax_scale,
 *   x_c = sum_p w[p][c] grid_x[p],  y_c = sum_p w[p][c] grid_y[p],  m_c = mean over p of L[p][c],
 *   features[f] = tanh(fc_b[f] + sum_j fc_w[f][j] [x_0, y_0, x_1, y_1, ..., m_0, m_1, ...][j]). */
static void spatial_softmax_fc(const float *logits, float features[{self.features}])
{{
    float pooled[{3 * channels}];
    int c, p, f;
    for (c = 0; c < {channels}; c++) {{
        float top = logits[c] * softmax_scale[0], total = 0.0f, x = 0.0f, y = 0.0f, sum = 0.0f;
        float e[{positions}];
        for (p = 1; p < {positions}; p++) {{
            const float s = logits[p * {channels} + c] * softmax_scale[0];
            top = s > top ? s : top;
        }}
        for (p = 0; p < {positions}; p++) {{
            e[p] = expf(logits[p * {channels} + c] * softmax_scale[0] - top);
            total += e[p];
            sum += logits[p * {channels} + c];
        }}
        for (p = 0; p < {positions}; p++) {{
            const float weight = e[p] / total;
            x += weight * grid_x[p % {last.width}];
            y += weight * grid_y[p / {last.width}];
        }}
        pooled[2 * c] = x;
        pooled[2 * c + 1] = y;
        pooled[{2 * channels} + c] = sum / {positions}.0f;
    }}
    for (f = 0; f < {self.features}; f++) {{
        float a = fc_b[f];
        for (p = 0; p < {3 * channels}; p++)
            a += fc_w[f][p] * pooled[p];
        features[f] = tanhf(a);
    }}
}}

/* The CNN on a {self.cfg.image_width}x{self.cfg.image_height} RGB frame -> {self.features} features in (-1, 1). */
static void encoder(const uint8_t *image, float features[{self.features}])
{{
    const float *rows[{kmax}];
    int y, k, image_next = 0, conv0_next = 0; /* the next frame row to normalise, the next conv0 row to compute */
{statistics}    for (y = 0; y < {c1.height}; y++) {{ /* conv1, fed by conv0's rows through conv0_ring */
        for (; conv0_next < {c0.height} && conv0_next <= y * {c1.stride} + {c1.kernel - 1 - c1.padding};
             conv0_next++) {{
            const int top = conv0_next * {c0.stride} - {c0.padding};
            for (; image_next < {c0.height_in} && image_next <= top + {c0.kernel - 1}; image_next++)
                normalise_row(image + image_next * {c0.width_in * 3},
                              image_ring + (image_next % {c0.kernel}) * {c0.row_in});
            for (k = 0; k < {c0.kernel}; k++) {{
                const int iy = top + k;
                rows[k] = (iy >= 0 && iy < {c0.height_in}) ? image_ring + (iy % {c0.kernel}) * {c0.row_in} : zero_row;
            }}
            conv0_row(rows, conv0_ring + (conv0_next % {c1.kernel}) * {c0.row_out});
        }}
        for (k = 0; k < {c1.kernel}; k++) {{
            const int iy = y * {c1.stride} + k - {c1.padding};
            rows[k] = (iy >= 0 && iy < {c0.height}) ? conv0_ring + (iy % {c1.kernel}) * {c0.row_out} : zero_row;
        }}
        conv1_row(rows, map_a + y * {c1.row_out});
    }}
{later_code}
    spatial_softmax_fc({buf[last.index]}, features);
}}
#undef conv0_ring
#undef image_ring
"""

    # 4. Heads.
    def _emit_head(self) -> str:
        head = self.pilot.head
        emit = {"cfc_ncp": self._emit_wired_cfc, "ltc_ncp": self._emit_ltc, "cfc": self._emit_dense_cfc,
                "rnn": self._emit_gated_rnn, "ff": self._emit_ff}[self.head_kind]
        sigmoid = "" if self.head_kind == "ff" else """
/* The logistic function, 1 / (1 + e^-x). */
static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}
"""
        linear = "" if self.head_kind == "ltc_ncp" else """
/* out[r] = b[r] + sum_c W[r][c] x[c] for a rows x cols row-major W (b NULL: no bias). */
static void linear(const float *w, const float *b, const float *x, int rows, int cols, float *out)
{
    int r, c;
    for (r = 0; r < rows; r++) {
        float a = b ? b[r] : 0.0f;
        for (c = 0; c < cols; c++)
            a += w[r * cols + c] * x[c];
        out[r] = a;
    }
}
"""
        return f"\n/* ---- 4. The head: {self.cfg.head} ---- */\n" + sigmoid + linear + emit(head)

    def _head_signature(self) -> str:
        return (f"/* The head's step: sensory x ({self.sensory}), state h ({self.state_size}), dt in cell time "
                f"(seconds * {self.cfg.time_scale:g})\n * -> next state and the 4 normalised commands y. */\n"
                f"static void head_step(const float x[{self.sensory}], const float *h, float dt, float *next, "
                f"float y[4])\n")

    def _emit_cfc_layer(self, name: str, layer, inputs: int, comment: str) -> str:
        w_in, w_rec = (t.t() for t in layer.masked())  # (4 size, inputs), (4 size, size)
        size = layer.size
        return f"""
{_array(f"{name}_w_in", _np(w_in), f"{comment}: input weights, rows f1, f2, time_a, time_b per neuron")}
{_array(f"{name}_w_rec", _np(w_rec), f"{comment}: recurrent weights")}
{_array(f"{name}_b", _np(layer.bias), f"{comment}: bias")}
/* {comment}: CfC,
 *   z = b + W_rec h + W_in x, f1 = tanh(z_f1), f2 = tanh(z_f2), g = sigmoid(z_time_a dt + z_time_b),
 *   h' = f1 (1 - g) + g f2, computed as f1 + g (f2 - f1). */
static void {name}(const float x[{inputs}], const float h[{size}], float dt, float out[{size}])
{{
    float z[{GATES * size}], zx[{GATES * size}];
    int n;
    linear({name}_w_rec[0], {name}_b, h, {GATES * size}, {size}, z);
    linear({name}_w_in[0], 0, x, {GATES * size}, {inputs}, zx);
    for (n = 0; n < {size}; n++) {{
        const float f1 = tanhf(z[n] + zx[n]), f2 = tanhf(z[{size} + n] + zx[{size} + n]);
        const float time_a = z[{2 * size} + n] + zx[{2 * size} + n], time_b = z[{3 * size} + n] + zx[{3 * size} + n];
        const float g = sigmoid(time_b + time_a * dt);
        out[n] = f1 + g * (f2 - f1);
    }}
}}
"""

    def _emit_wired_cfc(self, head: WiredCfC) -> str:
        names = ("inter", "command", "motor")
        parts, calls, start, inputs, source = [], [], 0, head.wiring.inputs, "x"
        for i, (layer, size) in enumerate(zip(head.layers, head.sizes)):
            label = names[i] if len(head.sizes) == 3 else f"layer {i}"
            parts.append(self._emit_cfc_layer(f"cfc{i}", layer, inputs,
                                              f"head.layers.{i} ({label}, {size} neurons, state [{start}, "
                                              f"{start + size}))"))
            calls.append(f"    cfc{i}({source}, h + {start}, dt, next + {start});")
            source, inputs, start = f"next + {start}", size, start + size
        motors = head.sizes[-1]
        return "".join(parts) + "\n" + self._head_signature() + "{\n" + "\n".join(calls) + f"""
    {{
        int n;
        for (n = 0; n < {motors}; n++) /* the motor neurons are the commands */
            y[n] = next[{start - motors} + n];
    }}
}}
"""

    def _emit_dense_cfc(self, head: DenseCfC) -> str:
        units = head.state_size
        layer = self._emit_cfc_layer("cfc0", head.layer, self.sensory, f"head.layer ({units} units)")
        return layer + f"""
{_array("readout_w", _np(head.readout.weight), "head.readout: W")}
{_array("readout_b", _np(head.readout.bias), "head.readout: b")}
{self._head_signature()}{{
    cfc0(x, h, dt, next);
    linear(readout_w[0], readout_b, next, 4, {units}, y); /* y = readout_b + readout_w h' */
}}
"""

    def _emit_ltc(self, head: LTC) -> str:
        with torch.no_grad():
            w = F.softplus(head.w) * head.mask
            w_erev = w * head.erev
            sensory_w = F.softplus(head.sensory_w) * head.sensory_mask
            gleak = F.softplus(head.gleak)
            cm_t = F.softplus(head.cm) * head.unfolds  # divided by dt in the step, as in the graph
        n, s = head.state_size, head.wiring.inputs
        if n > 255 or s > 255:
            raise ValueError(f"an LTC of {n} neurons and {s} inputs: the C export indexes neurons in a byte")

        def synapses(mask, rows, label: str, *values) -> tuple[str, int]:
            pre, post = np.nonzero(_np(mask))
            lines = []
            for a, b in zip(pre.tolist(), post.tolist()):
                numbers = ", ".join(_float(float(v[a, b])) for v in values)
                lines.append(f"    {{{a}, {b}, {numbers}}}")
            return f"static const {rows} {label}[{len(lines)}] = {{\n" + ",\n".join(lines) + "\n};\n", len(lines)

        sens, n_sens = synapses(head.sensory_mask, "sensory_synapse", "sensory_synapses", _np(sensory_w),
                                _np(head.sensory_erev), _np(head.sensory_sigma), _np(head.sensory_mu))
        rec, n_rec = synapses(head.mask, "synapse", "synapses", _np(w), _np(w_erev), _np(head.sigma), _np(head.mu))
        outputs = head.wiring.outputs
        return f"""
/* head: LTC neurons on the NCP wiring, dv/dt = -(1/tau + f) v + f A, {head.unfolds} fused semi-implicit Euler steps
 * per control step:  v <- (c v + g_leak v_leak + sum a E) / (c + g_leak + sum a + eps),  c = c_m {head.unfolds} / dt,
 * a = w sigmoid(sigma (v_pre - mu)) per synapse (w = softplus of the trained weight). Only the wiring's
 * synapses are listed (the others are zero in the PyTorch model): {n_sens} sensory, {n_rec} between neurons. */
typedef struct {{
    uint8_t pre, post; /* sensory input -> neuron */
    float w, erev, sigma, mu;
}} sensory_synapse;
typedef struct {{
    uint8_t pre, post; /* neuron -> neuron */
    float w, w_erev, sigma, mu; /* w_erev = w * E */
}} synapse;
{sens}{rec}
{_array("gleak", _np(gleak), "leak conductance, softplus(gleak)")}
{_array("vleak", _np(head.vleak), "leak reversal potential")}
{_array("cm_unfolds", _np(cm_t), f"membrane capacitance times the unfolds, softplus(cm) * {head.unfolds}")}
{_array("input_w", _np(head.input_w), "sensory affine: x * input_w + input_b")}
{_array("input_b", _np(head.input_b), "")}
{_array("output_w", _np(head.output_w), "motor read-out: v * output_w + output_b")}
{_array("output_b", _np(head.output_b), "")}
{self._head_signature()}{{
    float u[{s}], fixed_num[{n}], fixed_den[{n}], cm[{n}], num[{n}], den[{n}], v[{n}];
    const float dt_min = dt > 1e-6f ? dt : 1e-6f; /* dt clamped away from 0: a zero step leaves v as it is */
    int i, k;
    for (i = 0; i < {s}; i++)
        u[i] = x[i] * input_w[i] + input_b[i];
    for (i = 0; i < {n}; i++) {{
        cm[i] = cm_unfolds[i] / dt_min;
        num[i] = 0.0f;
        den[i] = 0.0f;
        v[i] = h[i];
    }}
    for (k = 0; k < {n_sens}; k++) {{ /* the sensory synapses' share, fixed over the unfolds */
        const sensory_synapse *q = &sensory_synapses[k];
        const float a = q->w * sigmoid(q->sigma * (u[q->pre] - q->mu));
        num[q->post] += a * q->erev;
        den[q->post] += a;
    }}
    for (i = 0; i < {n}; i++) {{
        fixed_num[i] = gleak[i] * vleak[i] + num[i];
        fixed_den[i] = cm[i] + gleak[i] + den[i] + {_float(head.epsilon)};
    }}
    for (i = 0; i < {head.unfolds}; i++) {{
        int j;
        for (j = 0; j < {n}; j++) {{
            num[j] = 0.0f;
            den[j] = 0.0f;
        }}
        for (k = 0; k < {n_rec}; k++) {{
            const synapse *q = &synapses[k];
            const float gate = sigmoid(q->sigma * (v[q->pre] - q->mu));
            num[q->post] += gate * q->w_erev;
            den[q->post] += gate * q->w;
        }}
        for (j = 0; j < {n}; j++)
            v[j] = (cm[j] * v[j] + fixed_num[j] + num[j]) / (fixed_den[j] + den[j]);
    }}
    for (i = 0; i < {n}; i++)
        next[i] = v[i];
    for (i = 0; i < {outputs}; i++) /* neurons 0..{outputs - 1} are the motors */
        y[i] = v[i] * output_w[i] + output_b[i];
}}
"""

    def _emit_gated_rnn(self, head: GatedRNNHead) -> str:
        rnn = head.rnn
        if rnn.num_layers != 1 or rnn.bidirectional or not rnn.bias or getattr(rnn, "proj_size", 0):
            raise ValueError("only one-layer, one-way LSTM/GRU heads with biases have a C export")
        u = head.units
        arrays = "".join(_array(name, _np(getattr(rnn, f"{name}_l0")), f"head.rnn.{name}_l0")
                         for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        readout = _array("readout_w", _np(head.readout.weight), "head.readout: W") + \
            _array("readout_b", _np(head.readout.bias), "head.readout: b")
        if head.is_lstm:
            body = f"""/* LSTM (PyTorch's gate order i, f, g, o): z = W_ih x + b_ih + W_hh h + b_hh,
 * c' = sigmoid(f) c + sigmoid(i) tanh(g), h' = sigmoid(o) tanh(c'); the state is [h, c]. */
{self._head_signature()}{{
    float zx[{4 * u}], zh[{4 * u}];
    int n;
    (void)dt; /* a discrete-time baseline: the elapsed time is not its input */
    linear(weight_ih[0], bias_ih, x, {4 * u}, {self.sensory}, zx);
    linear(weight_hh[0], bias_hh, h, {4 * u}, {u}, zh);
    for (n = 0; n < {u}; n++) {{
        const float i = sigmoid(zx[n] + zh[n]), f = sigmoid(zx[{u} + n] + zh[{u} + n]);
        const float g = tanhf(zx[{2 * u} + n] + zh[{2 * u} + n]), o = sigmoid(zx[{3 * u} + n] + zh[{3 * u} + n]);
        const float c = f * h[{u} + n] + i * g;
        next[{u} + n] = c;
        next[n] = o * tanhf(c);
    }}
    linear(readout_w[0], readout_b, next, 4, {u}, y);
}}
"""
        else:
            body = f"""/* GRU (PyTorch's gate order r, z, n): r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise,
 * n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h. */
{self._head_signature()}{{
    float zx[{3 * u}], zh[{3 * u}];
    int k;
    (void)dt; /* a discrete-time baseline: the elapsed time is not its input */
    linear(weight_ih[0], bias_ih, x, {3 * u}, {self.sensory}, zx);
    linear(weight_hh[0], bias_hh, h, {3 * u}, {u}, zh);
    for (k = 0; k < {u}; k++) {{
        const float r = sigmoid(zx[k] + zh[k]), z = sigmoid(zx[{u} + k] + zh[{u} + k]);
        const float n = tanhf(zx[{2 * u} + k] + r * zh[{2 * u} + k]);
        next[k] = (1.0f - z) * n + z * h[k];
    }}
    linear(readout_w[0], readout_b, next, 4, {u}, y);
}}
"""
        return arrays + readout + body

    def _emit_ff(self, head: FeedForwardHead) -> str:
        first, act, second = list(head.net)
        if not (isinstance(first, nn.Linear) and isinstance(act, nn.Tanh) and isinstance(second, nn.Linear)):
            raise ValueError("the feed-forward head's C export expects Linear, Tanh, Linear")
        hidden = first.out_features
        return f"""
{_array("hidden_w", _np(first.weight), "head.net.0: W")}
{_array("hidden_b", _np(first.bias), "head.net.0: b")}
{_array("out_w", _np(second.weight), "head.net.2: W")}
{_array("out_b", _np(second.bias), "head.net.2: b")}
/* A memoryless perceptron: y = out_b + out_w tanh(hidden_b + hidden_w x); no state, no dt. */
{self._head_signature()}{{
    float a[{hidden}];
    int k;
    (void)h;
    (void)next;
    (void)dt;
    linear(hidden_w[0], hidden_b, x, {hidden}, {self.sensory}, a);
    for (k = 0; k < {hidden}; k++)
        a[k] = tanhf(a[k]);
    linear(out_w[0], out_b, a, 4, {hidden}, y);
}}
"""

    # 5. The step.
    def _emit_step(self) -> str:
        cfg, p = self.cfg, self.pilot
        limits = GateConfig()
        f = self.features
        imu_arrays = (_array("imu_mean", _np(p.imu_mean),
                             f"IMU normalisation, from training: ({', '.join(IMU_FIELDS)} - mean) / std")
                      + _array("imu_std", _np(p.imu_std), "")) if cfg.use_imu else ""
        imu_check = """    if (!imu)
        return fail(out, LP_BAD_INPUT);
    for (i = 0; i < 6; i++)
        if (!isfinite(imu[i]))
            return fail(out, LP_BAD_INPUT);
""" if cfg.use_imu else "    (void)imu;\n"
        imu_copy = f"""    for (i = 0; i < 6; i++)
        x[{f} + i] = (imu[i] - imu_mean[i]) / imu_std[i];
""" if cfg.use_imu else ""
        state = self.state_size
        return f"""
/* ---- 5. The step ---- */
{imu_arrays}{_array("command_scale", _np(p.command_scale), "the head's outputs times this are m/s and rad/s")}
void lp_reset(lp_pilot *pilot)
{{
    int i;
    for (i = 0; i < (int)(sizeof pilot->state / sizeof pilot->state[0]); i++)
        pilot->state[i] = 0.0f;
}}

void lp_init(lp_pilot *pilot)
{{
    lp_reset(pilot);
    pilot->limits.max_speed_xy = {_float(limits.max_speed_xy)};
    pilot->limits.max_speed_z = {_float(limits.max_speed_z)};
    pilot->limits.max_yaw_rate = {_float(limits.max_yaw_rate)};
}}

static int fail(lp_output *out, int code)
{{
    int i;
    for (i = 0; i < LP_COMMANDS; i++)
        out->command[i] = out->raw[i] = 0.0f; /* hover */
    return code;
}}

static float cut(float value, float limit)
{{
    return value > limit ? limit : (value < -limit ? -limit : value);
}}

int lp_step(lp_pilot *pilot, const uint8_t *image, const float *imu, float dt, lp_output *out)
{{
    float x[{self.sensory}], y[4], next[{max(state, 1)}];
    float speed;
    int i, finite = 1;
    if (!image || !isfinite(dt) || dt < 0.0f)
        return fail(out, LP_BAD_INPUT);
{imu_check}    encoder(image, x);
{imu_copy}    head_step(x, pilot->state, dt * {_float(cfg.time_scale)}, next, y);
    for (i = 0; i < {state}; i++)
        finite &= isfinite(next[i]) != 0;
    for (i = 0; i < LP_COMMANDS; i++) {{
        out->raw[i] = y[i] * command_scale[i];
        finite &= isfinite(out->raw[i]) != 0;
    }}
    if (!finite) {{
        lp_reset(pilot);
        return fail(out, LP_BAD_OUTPUT);
    }}
    for (i = 0; i < {state}; i++)
        pilot->state[i] = next[i];
    /* The clamps (flight/gate.py): the horizontal vector scaled down to max_speed_xy, vz and the yaw rate cut. */
    for (i = 0; i < LP_COMMANDS; i++)
        out->command[i] = out->raw[i];
    speed = sqrtf(out->raw[0] * out->raw[0] + out->raw[1] * out->raw[1]);
    if (speed > pilot->limits.max_speed_xy) {{
        out->command[0] = out->raw[0] * pilot->limits.max_speed_xy / speed;
        out->command[1] = out->raw[1] * pilot->limits.max_speed_xy / speed;
    }}
    out->command[2] = cut(out->raw[2], pilot->limits.max_speed_z);
    out->command[3] = cut(out->raw[3], pilot->limits.max_yaw_rate);
    return LP_OK;
}}
"""


# ---------------------------------------------------------------------------------------------------------------
# The self-test's data


def _selftest_header(pilot: Pilot, steps: StepInputs) -> str:
    count = len(steps.images)
    return f"""/* selftest_data.h: a recorded flight's inputs and onnxruntime's outputs for them (selftest_data.c). */
#ifndef SELFTEST_DATA_H
#define SELFTEST_DATA_H

#include <stdint.h>

#include "liquid_pilot.h"

#define TEST_STEPS {count}
#define TEST_TOLERANCE {TOLERANCE!r}f /* absolute, on every output */
#define TEST_SOURCE "{steps.source}"

extern const uint8_t test_images[TEST_STEPS][LP_IMAGE_BYTES];
extern const float test_imu[TEST_STEPS][6];
extern const float test_dt[TEST_STEPS]; /* seconds */
extern const uint8_t test_reset[TEST_STEPS]; /* 1: lp_reset before this step */
extern const float test_command[TEST_STEPS][LP_COMMANDS]; /* onnxruntime's command (before the clamps) */
extern const float test_clamped[TEST_STEPS][LP_COMMANDS]; /* after the gate's default clamps (GateConfig) */
extern const float test_state[TEST_STEPS][LP_STATE_SIZE > 0 ? LP_STATE_SIZE : 1]; /* onnxruntime's next state */

#endif
"""


def _selftest_data(steps: StepInputs, reference: dict[str, np.ndarray]) -> str:
    count = len(steps.images)
    state = reference["state"]
    if state.shape[1] == 0:
        state = np.zeros((count, 1), np.float32)
    digest = hashlib.sha256(steps.images.tobytes()).hexdigest()[:16]
    return "\n".join([
        f"/* selftest_data.c: {count} steps of {steps.source} (frames sha256 {digest}...), generated. */",
        '#include "selftest_data.h"', "",
        _array("test_images", steps.images.reshape(count, -1), "RGB frames, HWC", "uint8_t", 24, "const"),
        _array("test_imu", steps.imu, "IMU samples", per_line=6, storage="const"),
        _array("test_dt", steps.dt, "seconds since the previous frame", per_line=8, storage="const"),
        _array("test_reset", steps.reset.astype(np.uint8), "reset before the step", "uint8_t", 24, "const"),
        _array("test_command", reference["command"], "onnxruntime: command", per_line=4, storage="const"),
        _array("test_clamped", reference["clamped"], "onnxruntime's command, clamped", per_line=4, storage="const"),
        _array("test_state", state, "onnxruntime: next state", per_line=8, storage="const"),
    ])
