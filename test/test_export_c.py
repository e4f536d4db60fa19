"""The pilot's step as portable C (``liquid-pilot export --c``) gives onnxruntime's outputs on a recorded flight.

``make test`` runs on this machine's compiler always; ``make cortex-m4`` (QEMU's Cortex-M4 board) and
``make aarch64`` (qemu-aarch64) run where their tools are installed (``.ci/run`` installs them) and are skipped
with the reason otherwise.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from liquid_pilot.nn.checkpoint import save_pilot
from liquid_pilot.nn.checkpoint import read_checkpoint
from liquid_pilot.nn.export_c import TOLERANCE, StepInputs, export_c
from liquid_pilot.nn.policy import Pilot, PilotConfig

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "cfc_ncp.pt"
SHIPPED_USES_IMU = bool(read_checkpoint(SHIPPED)["config"]["use_imu"])  # the default reads the camera alone
ERRORS = re.compile(r"max \|C - onnxruntime\|: command (\S+), clamped command (\S+), state (\S+) \(tolerance")
HAS_CC = shutil.which("cc") is not None and shutil.which("make") is not None
M4_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")
A64_TOOLS = ("aarch64-linux-gnu-gcc",)
pytestmark = pytest.mark.skipif(not HAS_CC, reason="no C compiler (cc) or make on this machine")


def make(directory: Path, target: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(directory), target], capture_output=True, text=True, timeout=timeout)


def errors(output: str) -> list[float]:
    """The self-test's largest differences from onnxruntime: command, clamped command, state."""
    match = ERRORS.search(output)
    assert match, output
    return [float(v) for v in match.groups()]


def missing(tools: tuple[str, ...]) -> str | None:
    absent = [t for t in tools if shutil.which(t) is None]
    return f"not installed: {', '.join(absent)} (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm " \
           "gcc-aarch64-linux-gnu qemu-user-static; .ci/run installs them)" if absent else None


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped pilot exported by the command a user runs, over 24 steps of a simulated flight."""
    out = tmp_path_factory.mktemp("c") / "pilot"
    result = subprocess.run([sys.executable, "-m", "liquid_pilot.cli", "export", str(SHIPPED), "--c", str(out),
                             "--c-steps", "24"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    return out


def test_the_host_build_matches_onnxruntime_on_a_simulated_flight(exported: Path) -> None:
    result = make(exported, "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "-std=c99 -Wall -Wextra -Werror" in result.stdout
    assert "24 steps of a simulated flight of cfc_ncp.pt in forest_summer" in result.stdout
    assert max(errors(result.stdout)) < TOLERANCE and "PASS" in result.stdout


def test_the_self_test_fails_when_the_c_step_is_off_by_a_little(exported: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken, ignore=shutil.ignore_patterns("build"))
    source = (broken / "liquid_pilot.c").read_text()
    assert source.count("features[f] = tanhf(a);") == 1
    (broken / "liquid_pilot.c").write_text(source.replace("features[f] = tanhf(a);", "features[f] = tanhf(a + 0.01f);"))
    result = make(broken, "test")
    assert result.returncode != 0 and "FAIL" in result.stdout, result.stdout
    assert max(errors(result.stdout)) > TOLERANCE


def test_the_step_needs_nothing_from_libc_but_math(exported: Path, tmp_path: Path) -> None:
    source = (exported / "liquid_pilot.c").read_text() + (exported / "liquid_pilot.h").read_text()
    assert set(re.findall(r"#include\s+[<\"]([^>\"]+)", source)) == {"liquid_pilot.h", "math.h", "stdint.h"}
    assert "malloc(" not in source and "static const float conv0_w" in source
    obj = tmp_path / "liquid_pilot.o"
    subprocess.run(["cc", "-std=c99", "-O2", "-c", str(exported / "liquid_pilot.c"), "-o", str(obj)], check=True)
    undefined = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split()
    names = {name for name in undefined if name not in ("U", "w")}
    # memset and memcpy: a compiler may emit them for loops (freestanding C requires them anyway).
    assert names <= {"expf", "tanhf", "sqrtf", "memset", "memcpy"}, names


def test_the_header_documents_inputs_outputs_units_and_frames(exported: Path) -> None:
    header = (exported / "liquid_pilot.h").read_text()
    imu = ("#define LP_USES_IMU 1", "rad/s), accel_x") if SHIPPED_USES_IMU else ("#define LP_USES_IMU 0",)
    for text in ("#define LP_IMAGE_HEIGHT 64", "#define LP_IMAGE_WIDTH 64", "#define LP_STATE_SIZE 19", *imu,
                 "RGB, row-major HWC", "body FLU", "m/s and rad/s",
                 "seconds since the previous step's frame", "centre crop", "int lp_step(lp_pilot *pilot",
                 "max_speed_xy", "not reentrant"):
        assert text in header, text


DRIVER = r"""#include <math.h>
#include <stdio.h>
#include "liquid_pilot.h"
#include "selftest_data.h"

int main(void)
{
    static lp_pilot pilot;
    lp_output out;
    int i, rc, clamped = 0;
    lp_init(&pilot);
    rc = lp_step(&pilot, test_images[0], test_imu[0], NAN, &out);
    printf("nan dt %d %g\n", rc, (double)fabsf(out.command[0]));
    rc = lp_step(&pilot, test_images[0], test_imu[0], -0.1f, &out);
    printf("negative dt %d\n", rc);
#if LP_USES_IMU
    rc = lp_step(&pilot, test_images[0], 0, 0.0f, &out);
    printf("no imu %d\n", rc);
#else
    printf("no imu needed\n");
#endif
    for (i = 0; i < LP_STATE_SIZE; i++)
        if (pilot.state[i] != 0.0f)
            printf("state touched\n");
    pilot.limits.max_speed_xy = 0.01f;
    pilot.limits.max_speed_z = 0.002f;
    pilot.limits.max_yaw_rate = 0.003f;
    for (i = 0; i < TEST_STEPS; i++) {
        rc = lp_step(&pilot, test_images[i], test_imu[i], test_dt[i], &out);
        if (rc != LP_OK || sqrtf(out.command[0] * out.command[0] + out.command[1] * out.command[1]) > 0.01001f ||
            fabsf(out.command[2]) > 0.002f || fabsf(out.command[3]) > 0.003f)
            printf("clamp broken at step %d\n", i);
        clamped += fabsf(out.raw[0]) > 0.01f || fabsf(out.raw[2]) > 0.002f || fabsf(out.raw[3]) > 0.003f;
    }
    printf("clamped %d\ndone\n", clamped);
    return 0;
}
"""


def test_bad_inputs_hover_without_touching_the_state_and_the_clamps_hold(exported: Path, tmp_path: Path) -> None:
    (tmp_path / "driver.c").write_text(DRIVER)
    binary = tmp_path / "driver"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{exported}",
                    str(exported / "liquid_pilot.c"), str(exported / "selftest_data.c"), str(tmp_path / "driver.c"),
                    "-lm", "-o", str(binary)], check=True)
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    assert "nan dt 1 0\nnegative dt 1\n" + ("no imu 1\n" if SHIPPED_USES_IMU else "no imu needed\n") in out
    assert "state touched" not in out and "clamp broken" not in out
    assert out.endswith("done\n") and int(re.search(r"clamped (\d+)", out).group(1)) > 0


@pytest.mark.slow
def test_the_cortex_m4_build_matches_and_fits_a_crazyflie(exported: Path) -> None:
    if missing(M4_TOOLS):
        pytest.skip(missing(M4_TOOLS))
    result = make(exported, "cortex-m4")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard" in out and "mps2-an386" in out
    assert max(errors(out)) < TOLERANCE and "PASS" in out
    flash, ram = (int(v) for v in re.search(r"flash (\d+) bytes .*RAM (\d+) bytes", out).groups())
    stack = int(re.search(r"stack: (\d+) bytes", out).group(1))
    instructions = float(re.search(r"instructions per step: (\d+) mean", out).group(1))
    rate = float(re.search(r"steps per second at 168 MHz: (\d+)", out).group(1))
    assert flash <= 256 * 1024 and ram + stack <= 64 * 1024, (flash, ram, stack)
    assert 1e6 < instructions and rate == pytest.approx(168e6 / instructions, abs=1) and rate >= 30


@pytest.mark.slow
def test_the_aarch64_build_matches_under_qemu(exported: Path) -> None:
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if missing(A64_TOOLS) or not qemu:
        pytest.skip(missing(A64_TOOLS) or "not installed: qemu-aarch64 (Debian: qemu-user-static)")
    result = make(exported, "aarch64")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "aarch64-linux-gnu-gcc" in result.stdout and "qemu-aarch64" in result.stdout
    assert max(errors(result.stdout)) < TOLERANCE and "PASS" in result.stdout


def synthetic(config: PilotConfig, steps: int = 5) -> StepInputs:
    """Random frames and IMU samples, irregular periods, a reset half way (dt 0 there and at the start)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (steps, config.image_height, config.image_width, 3), dtype=np.uint8)
    imu = rng.normal(0, 0.5, (steps, 6)).astype(np.float32)
    imu[:, 5] += 9.81
    dt = rng.uniform(0.03, 0.1, steps).astype(np.float32)
    reset = np.zeros(steps, bool)
    reset[[0, steps // 2]] = True
    dt[reset] = 0
    return StepInputs(images, imu, dt, reset, "synthetic inputs")


@pytest.mark.parametrize("config", [
    PilotConfig(head="cfc_ncp"), PilotConfig(head="ltc_ncp"), PilotConfig(head="cfc"), PilotConfig(head="lstm"),
    PilotConfig(head="gru"), PilotConfig(head="ff"),
    # camera only, and frames whose maps do not divide into the blocks the convolutions sum at once
    PilotConfig(head="ltc_ncp", use_imu=False, image_height=36, image_width=52),
    PilotConfig(head="cfc_ncp", strict_wiring=False, image_height=32, image_width=32),
    # each frame standardised by its own statistics (round 3's candidate C5)
    PilotConfig(head="cfc_ncp", use_imu=False, frame_norm=True),
], ids=["cfc_ncp", "ltc_ncp", "cfc", "lstm", "gru", "ff", "ltc_camera_only_52x36", "cfc_ncps_wiring_32x32",
        "cfc_ncp_frame_norm"])
def test_every_head_matches_onnxruntime_on_the_host(config: PilotConfig, tmp_path: Path) -> None:
    pilot = Pilot(config, seed=3)
    pilot.set_normalisation(torch.tensor([0.4, 0.5, 0.45]), torch.tensor([0.2, 0.23, 0.38]),
                            torch.tensor([0.01, 0, 0, 0, 0, 9.8]), torch.tensor([0.2, 0.2, 0.2, 1, 1, 1]))
    save_pilot(pilot, tmp_path / "p.pt")
    export_c(tmp_path / "p.pt", tmp_path / "c", synthetic(config))
    result = make(tmp_path / "c", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert max(errors(result.stdout)) < TOLERANCE
    header = (tmp_path / "c" / "liquid_pilot.h").read_text()
    assert f"#define LP_USES_IMU {int(config.use_imu)}" in header
    assert f"#define LP_STATE_SIZE {pilot.state_size}" in header


def test_recordings_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    config = PilotConfig()
    steps = synthetic(config)
    with pytest.raises(ValueError, match="reset\\[0\\] must be true"):
        StepInputs(steps.images, steps.imu, steps.dt, np.zeros(len(steps.dt), bool), "x")
    with pytest.raises(ValueError, match="dt must be finite"):
        StepInputs(steps.images, steps.imu, -steps.dt - 1, steps.reset, "x")
    with pytest.raises(ValueError, match="one plain line"):
        StepInputs(steps.images, steps.imu, steps.dt, steps.reset, 'say "hi"')
    save_pilot(Pilot(PilotConfig(image_height=32, image_width=32)), tmp_path / "small.pt")
    with pytest.raises(ValueError, match="the recorded frames are 64x64, the model takes 32x32"):
        export_c(tmp_path / "small.pt", tmp_path / "c", steps)
    assert not (tmp_path / "c").exists()


def test_the_command_refuses_bad_options_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for args, expected in ((["--c-steps", "0"], "steps = 0 must be in [1, 10000]"),
                           ([], "is not a directory")):
        target = tmp_path / ("file" if not args else "out")
        result = subprocess.run([sys.executable, "-m", "liquid_pilot.cli", "export", str(SHIPPED), "--c", str(target),
                                 *args], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        lines = [line for line in result.stderr.splitlines() if not line.startswith("pybullet build time")]
        assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr  # PyBullet's banner is not ours
