"""The ``liquid-pilot`` command."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from liquid_pilot.nn.checkpoint import CheckpointError, load_pilot, read_checkpoint
from liquid_pilot.nn.policy import COMMAND_AXES, IMU_FIELDS, Pilot


def _pilot(model: str | None) -> Pilot:
    """Load MODEL, or make a freshly initialised default pilot."""
    return Pilot().eval() if model is None else load_pilot(model)


def _info(args: argparse.Namespace) -> None:
    pilot = _pilot(args.model)
    cfg = pilot.config
    print(f"pilot: {args.model or 'freshly initialised default (untrained)'}")
    print(f"head: {cfg.head}   image: {cfg.image_height}x{cfg.image_width} RGB   imu: {cfg.use_imu}   "
          f"time scale: {cfg.time_scale} per second")
    wiring = getattr(pilot.head, "wiring", None)
    if wiring is not None:
        inter, command, motor = wiring.layer_sizes
        print(f"neurons: sensory {wiring.inputs}, inter {inter}, command {command}, motor {motor} "
              f"({wiring.units} in total; wiring seed {cfg.wiring_seed}, sparsity {cfg.sparsity})")
        layer_of = {n: name for name, layer in zip(("inter", "command", "motor"), wiring.layers) for n in layer}
        counts: dict[str, int] = {}
        for src, dest in zip(*wiring.adjacency.nonzero()):
            key = f"{layer_of[src]}->{layer_of[dest]}"
            counts[key] = counts.get(key, 0) + 1
        parts = [f"sensory->inter {wiring.sensory_synapse_count}"] + [f"{k} {v}" for k, v in counts.items()]
        excit = int((wiring.adjacency > 0).sum() + (wiring.sensory_adjacency > 0).sum())
        total = wiring.synapse_count + wiring.sensory_synapse_count
        print(f"synapses: {', '.join(parts)} ({total} in total, {excit} excitatory)")
    else:
        print(f"units: {cfg.units} (not wired: every unit connects to every other)")
    n = pilot.parameter_counts()
    print(f"trainable parameters: {n['total']:,} (CNN {n['encoder']:,}, head {n['head']:,}; "
          f"{n['masked_out']:,} head entries switched off by the wiring)")
    print(f"state: {pilot.state_size} values   outputs: {', '.join(COMMAND_AXES)} "
          f"(scale {[round(v, 3) for v in pilot.command_scale.tolist()]})")
    if args.model is not None:
        provenance = read_checkpoint(args.model)["provenance"]
        for key, value in sorted(provenance.items()):
            print(f"provenance.{key}: {value}")


def _wiring(args: argparse.Namespace) -> None:
    from liquid_pilot.nn.draw import draw_wiring

    pilot = _pilot(args.model)
    wiring = getattr(pilot.head, "wiring", None)
    if wiring is None:
        raise SystemExit(f"error: a {pilot.config.head!r} head has no wiring to draw (NCP heads: cfc_ncp, ltc_ncp)")
    names = [f"cnn{i}" for i in range(pilot.config.features)]
    names += list(IMU_FIELDS) if pilot.config.use_imu else []
    draw_wiring(wiring, args.out, names, list(COMMAND_AXES))
    print(f"wrote {args.out}")


def _export(args: argparse.Namespace) -> None:
    from liquid_pilot.nn.export import export_onnx, export_torchscript

    if not (args.onnx or args.torchscript):
        raise SystemExit("error: name at least one of --onnx FILE, --torchscript FILE")
    pilot = load_pilot(args.model)
    if args.onnx:
        export_onnx(pilot, args.onnx)
        print(f"wrote {args.onnx}")
    if args.torchscript:
        export_torchscript(pilot, args.torchscript)
        print(f"wrote {args.torchscript}")


def _parse_settings(pairs: list[str]) -> dict[str, object]:
    """``section.field=value`` pairs, values read as YAML (numbers, lists, true/false)."""
    import yaml

    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects section.field=value, got {pair!r}")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def _sim(args: argparse.Namespace) -> None:
    from liquid_pilot.sim.config import list_scenarios, load_scenario
    from liquid_pilot.sim.episode import ExpertPolicy, fly
    from liquid_pilot.sim.world import Simulator

    if args.list:
        for name in list_scenarios():
            print(f"{name:18s} {load_scenario(name).description}")
        return
    scenario = load_scenario(args.scenario)
    if args.set:
        scenario = scenario.with_overrides(_parse_settings(args.set))
    sim = Simulator(scenario)
    if args.model:
        from liquid_pilot.sim.pilots import PilotPolicy

        policy = PilotPolicy.from_file(args.model)
        policy.check(sim)
    else:
        policy = ExpertPolicy()
    recorder = None
    if args.video or args.plot:
        from liquid_pilot.sim.video import FlightRecorder

        recorder = FlightRecorder()
    result = fly(sim, policy, args.seed, on_step=recorder)
    pilot = args.model or "expert"
    print(f"scenario {scenario.name} | pilot {pilot} | seed {args.seed}")
    for key, value in result.summary().items():
        print(f"  {key}: {value}")
    if recorder is not None:
        from liquid_pilot.sim.video import plot_trajectory

        if args.video:
            recorder.write_video(args.video, scenario.sim.camera_hz)
            print(f"wrote {args.video}")
        plot = args.plot or str(Path(args.video).with_suffix(".png"))
        plot_trajectory(sim, result.trajectory, plot, f"{scenario.name}, {pilot}, seed {args.seed}: {result.reason}")
        print(f"wrote {plot}")
    sim.close()


def _ros(args: argparse.Namespace) -> None:
    from liquid_pilot.ros.launcher import main as ros_main

    code = ros_main(args.ros_args)
    if code:
        raise SystemExit(code)


def _demo(args: argparse.Namespace) -> None:
    raise SystemExit("the closed-loop demo needs a trained pilot in models/, which is not shipped yet "
                     "(see the README's status); meanwhile `liquid-pilot sim` flies the expert")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liquid-pilot", description="Fly a drone with a liquid neural network.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="neurons, synapses and parameters of a pilot")
    p.add_argument("model", nargs="?", help="checkpoint (default: a freshly initialised default pilot)")
    p.set_defaults(run=_info)
    p = sub.add_parser("wiring", help="draw a pilot's neural circuit")
    p.add_argument("model", nargs="?", help="checkpoint (default: a freshly initialised default pilot)")
    p.add_argument("--out", default="wiring.png", help="image file to write (default: wiring.png)")
    p.set_defaults(run=_wiring)
    p = sub.add_parser("export", help="export a pilot's single step to ONNX and/or TorchScript")
    p.add_argument("model", help="checkpoint")
    p.add_argument("--onnx", help="ONNX file to write")
    p.add_argument("--torchscript", help="TorchScript file to write")
    p.set_defaults(run=_export)
    p = sub.add_parser("sim", help="fly one simulated episode and print its metrics")
    p.add_argument("--scenario", default="forest_summer", help="scenario name or YAML file (default: forest_summer)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--expert", action="store_true", help="fly the privileged expert (the default)")
    who.add_argument("--model", help="fly this trained pilot checkpoint")
    p.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    p.add_argument("--video", help="write an MP4: onboard view beside a top-down map (and a plot beside it)")
    p.add_argument("--plot", help="write the trajectory plot here (PNG)")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                   help="override a scenario setting, e.g. --set inject.image_noise=0.1 (repeatable)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.set_defaults(run=_sim)
    p = sub.add_parser("ros", help="run the ROS 2 nodes in one process without a ROS installation",
                       add_help=False)
    p.add_argument("ros_args", nargs=argparse.REMAINDER, help="sim | pilot | record | play, then their options")
    p.set_defaults(run=_ros)
    p = sub.add_parser("demo", help="the closed-loop simulation demo with the shipped pilot")
    p.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
