"""The ``liquid-pilot`` command."""
from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from liquid_pilot.nn.policy import Pilot
    from liquid_pilot.train.trainer import TrainConfig

# Libraries the onboard install (`pip install liquid_pilot`, flight only) leaves out -> the extra that brings them.
EXTRAS = {"torch": "train", "onnx": "train", "tqdm": "train", "pybullet": "sim", "gymnasium": "sim",
          "matplotlib": "plot", "rclpy": "ros"}


def _pilot(model: str | None) -> Pilot:
    """Load MODEL, or make a freshly initialised default pilot."""
    from liquid_pilot.nn.checkpoint import load_pilot
    from liquid_pilot.nn.policy import Pilot

    return Pilot().eval() if model is None else load_pilot(model)


def _info(args: argparse.Namespace) -> None:
    pilot = _pilot(args.model)
    cfg = pilot.config
    print(f"pilot: {args.model or 'freshly initialised default (untrained)'}")
    print(f"head: {cfg.head}   image: {cfg.image_height}x{cfg.image_width} RGB   imu: {cfg.use_imu}   "
          f"time scale: {cfg.time_scale} per second")
    fov = "unknown" if cfg.camera_fov_deg is None else "{:.0f}x{:.0f} deg".format(*cfg.camera_fov_deg)
    print(f"camera: any size, centre-cropped to the model's aspect and resized; training field of view {fov}")
    if args.model:
        from liquid_pilot.nn.checkpoint import read_inputs

        inputs = read_inputs(args.model)
        if inputs:
            print("trained on: " + ", ".join(f"{k} {v}" for k, v in inputs.items()))
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
    from liquid_pilot.nn.checkpoint import read_checkpoint
    from liquid_pilot.nn.policy import COMMAND_AXES

    print(f"state: {pilot.state_size} values   outputs: {', '.join(COMMAND_AXES)} "
          f"(scale {[round(v, 3) for v in pilot.command_scale.tolist()]})")
    if args.model is not None:
        provenance = read_checkpoint(args.model)["provenance"]
        for key, value in sorted(provenance.items()):
            if isinstance(value, list) and len(value) > 4:  # the training bags: a hundred paths say little
                value = f"{len(value)} items: {value[0]}, {value[1]}, ..., {value[-1]}"
            print(f"provenance.{key}: {value}")


def _wiring(args: argparse.Namespace) -> None:
    from liquid_pilot.nn.draw import draw_wiring
    from liquid_pilot.nn.policy import COMMAND_AXES, IMU_FIELDS

    pilot = _pilot(args.model)
    wiring = getattr(pilot.head, "wiring", None)
    if wiring is None:
        raise SystemExit(f"error: a {pilot.config.head!r} head has no wiring to draw (NCP heads: cfc_ncp, ltc_ncp)")
    names = [f"cnn{i}" for i in range(pilot.config.features)]
    names += list(IMU_FIELDS) if pilot.config.use_imu else []
    draw_wiring(wiring, args.out, names, list(COMMAND_AXES))
    print(f"wrote {args.out}")


def _export(args: argparse.Namespace) -> None:
    from liquid_pilot.nn.artefact import write_artefact
    from liquid_pilot.nn.export import export_torchscript

    if not (args.onnx or args.torchscript or args.c):
        raise SystemExit("error: name at least one of --onnx FILE, --torchscript FILE, --c DIR")
    pilot = _pilot(args.model)
    if args.c:
        from liquid_pilot.nn.export_c import check_destination, export_c
        from liquid_pilot.harness.pilots import record_steps

        check_destination(args.c)
        export_c(args.model, args.c, record_steps(args.model, steps=args.c_steps))
        print(f"wrote {args.c}: the step as C99 with its self-test over a simulated flight; run `make -C {args.c} "
              "test` (and cortex-m4, aarch64: docs/microcontroller.md)")
    if args.onnx:
        write_artefact(args.model, args.onnx)
        print(f"wrote {args.onnx}: the flight artefact (pilot_node flies it with onnxruntime alone)")
    if args.torchscript:
        export_torchscript(pilot, args.torchscript)
        print(f"wrote {args.torchscript}")


def _sim(args: argparse.Namespace) -> None:
    from liquid_pilot.sim.config import list_all, load_scenario
    from liquid_pilot.sim.episode import ExpertPolicy, fly
    from liquid_pilot.sim.world import Simulator

    if args.list:
        for name in list_all():
            print(f"{name:20s} {load_scenario(name).description}")
        return
    scenario = _scenario(args)
    sim = Simulator(scenario)
    if args.model:
        from liquid_pilot.harness.pilots import PilotPolicy

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


def _sitl(args: argparse.Namespace) -> None:
    import json

    from liquid_pilot.models import default_model, load_runtime
    from liquid_pilot.harness.autopilot import AutopilotLoop, LoopConfig

    scenario = _scenario(args)
    model = args.model or str(default_model())

    def log(level: str, message: str) -> None:
        if args.verbose or level != "info":
            print(f"[{level}] {message}", flush=True)

    loop = AutopilotLoop(load_runtime(model), scenario, args.address, args.stack,
                         LoopConfig(takeoff_height=args.takeoff_height), log)
    seeds = range(args.seed, args.seed + args.episodes)
    results = []
    print(f"flying {model} through {args.stack} at {args.address}: {scenario.name}, {args.episodes} episodes from "
          f"seed {args.seed} (taking off first: the autopilot may need a minute before it arms)", flush=True)
    try:
        loop.start()
        for seed in seeds:
            result = loop.episode(seed)
            results.append(result)
            reached = f" in {result.time_to_target:.2f} s" if result.time_to_target else ""
            print(f"seed {seed}: {result.reason}{reached}", flush=True)
    except RuntimeError as exc:
        raise ValueError(f"{args.stack} at {args.address}: {exc}") from None
    finally:
        loop.close(land=True)
    lines = {"through": results}
    if args.compare:
        from liquid_pilot.sim.episode import fly
        from liquid_pilot.harness.pilots import PilotPolicy
        from liquid_pilot.sim.world import Simulator

        sim = Simulator(scenario)
        policy = PilotPolicy.from_file(model)
        policy.check(sim)
        lines["direct"] = [fly(sim, policy, seed) for seed in seeds]
        sim.close()
    for name, runs in lines.items():
        times = [r.time_to_target for r in runs if r.success]
        mean = f"{sum(times) / len(times):.2f} s" if times else "none reached"
        where = f"through {args.stack}" if name == "through" else "direct (the simulator's own vehicle)"
        print(f"{where}: {sum(r.success for r in runs)}/{len(runs)} reached; mean time to target {mean}")
    if args.out:
        Path(args.out).write_text(json.dumps({name: [r.summary() for r in runs] for name, runs in lines.items()},
                                             indent=1))
        print(f"wrote {args.out}")


def _scenario(args: argparse.Namespace):  # noqa: ANN202 (keeps sim imports lazy)
    from liquid_pilot.settings import parse_assignments
    from liquid_pilot.sim.config import load_scenario

    scenario = load_scenario(args.scenario)
    if not args.set:
        return scenario
    return scenario.with_overrides(parse_assignments(args.set, "--set", "section.field=value"), "--set")


def _collect(args: argparse.Namespace) -> None:
    from liquid_pilot.harness.collect import CollectInterrupted, collect

    scenario = _scenario(args)
    out = Path(args.out)
    lost = args.search_after_lost
    if lost is not None and args.search is None:
        raise ValueError(f"--search-after-lost {lost:g} resumes the expert's search turn: give --search left or right")
    if lost is not None and not (math.isfinite(lost) and lost > 0):
        raise ValueError(f"--search-after-lost must be a positive number of seconds, got {lost:g}")

    def progress(result, kept: bool, state) -> None:  # noqa: ANN001
        print(f"seed {result.seed}: {result.reason} in {result.duration:.1f} s "
              f"({'written' if kept else 'not written'})  [{state.line()}]", flush=True)

    try:
        done = collect(scenario, args.episodes, out, args.seed, args.storage, args.perturbation,
                       args.keep_failures or args.driver is not None, progress, args.workers, args.ray, args.search,
                       args.driver, args.search_after_lost)
    except CollectInterrupted as cut:
        print(f"interrupted: {cut} (partial bags are removed). {len(cut.written)} finished bags in {out} are "
              f"complete; run the same command again to continue.", file=sys.stderr)
        raise SystemExit(130) from None
    if args.driver is not None:
        failed = sum(1 for r in done.results if not r.success)
        print(f"{len(done.written)} bags in {out}; this run: {len(done.results)} flights by {args.driver}, "
              f"{failed} failed (written too); ran as {done.spread.describe()}")
        return
    print(f"{len(done.written)} bags in {out}; {len(done.skipped)} failed expert flights not written; "
          f"ran as {done.spread.describe()}")


def _reading_options(args: argparse.Namespace) -> dict[str, str | None]:
    """Return the bag-reading settings given on the command line (None: not given)."""
    return {"image": args.image_topic, "command": args.command_topic, "imu": args.imu_topic,
            "time_source": args.time_source, "command_frame": args.command_frame, "imu_frame": args.imu_frame,
            "command_kind": args.command_kind, "command_lead_s": args.command_lead,
            "motion_smoothing_s": args.motion_smoothing}


def _print_reading(report: dict, skip: list[str], indent: str = "  ") -> None:
    """How a flight was read: the topics (and how they were chosen), the time source, the conversions, notes."""
    topics = report.get("topics") or {}
    chosen = {line.split(" ", 2)[1] for line in report.get("chosen") or []}
    names = [f"{role} {topics[role]}{' (by type)' if topics[role] in chosen else ''}"
             for role in ("image", "command", "imu") if topics.get(role)]
    print(f"{indent}topics: {', '.join(names)}{'' if topics.get('imu') else ', no IMU'}")
    time = {"header": "header stamps", "receive": "the time each message was recorded"}[report["time_source"]]
    pairs = (("commands", "command_frame"), ("IMU", "imu_frame"))
    frames = [f"{what} from {report[key].upper()} to FLU" for what, key in pairs if report.get(key, "flu") != "flu"]
    print(f"{indent}time: {time}{'; converted: ' + ', '.join(frames) if frames else ''}")
    label = report.get("label") or {}
    if label.get("kind") == "motion":
        lead = label["lead_s"]
        lead = f"{lead[0]:g} s" if len(set(lead)) == 1 else "(" + ", ".join(f"{v:g}" for v in lead) + ") s"
        smoothing = (f"smoothed by a zero-phase Gaussian of {label['smoothing_s']:g} s" if label["smoothing_s"]
                     else "not smoothed")
        print(f"{indent}label: the vehicle's motion on {topics.get('command')} (body frame: {label['frame_from']}), "
              f"{smoothing}, at the frame's time + {lead}")
    for note in report.get("notes") or []:
        if note not in skip:
            print(f"{indent}note: {note}")


def _print_lead(estimate: dict, indent: str = "  ") -> None:
    """One bag's lead: per axis, or why an axis has none."""
    from liquid_pilot.nn.policy import COMMAND_AXES

    parts = []
    for axis, lead, r, why in zip(COMMAND_AXES, estimate["lead_s"], estimate["correlation"], estimate["why"]):
        parts.append(f"{axis} {lead:.2f} s (r {r:.2f})" if lead is not None else f"{axis} none ({why})")
    print(f"{indent}lead: {estimate['motion']} follows {estimate['command']} by {', '.join(parts)}")


def _bag_info(args: argparse.Namespace) -> None:
    from liquid_pilot.data.reader import BagError, TopicConfig, estimate_lead, lead_pair, read_flight, \
        suggested_lead
    from liquid_pilot.data.storage import find_bags, open_bag

    given = {k: v for k, v in _reading_options(args).items() if v is not None}
    topics = TopicConfig(**{"image": "auto", "command": "auto", "imu": "auto", **given})
    bags, unread = find_bags(args.bags)
    for line in unread:
        print(line)
    failed = 0
    leads = []
    for path in bags:
        try:
            with open_bag(path) as bag:
                all_topics = dict(bag.topics)
                duration = bag.duration_s
                print(f"{path}  ({bag.kind}, {duration:.2f} s, {sum(t.count for t in bag.topics.values())} messages)")
                for topic in sorted(bag.topics.values(), key=lambda t: t.name):
                    rate = topic.count / duration if duration > 0 else 0.0
                    print(f"  {topic.name:24s} {topic.msgtype:34s} {topic.count:6d} msgs  {rate:6.1f} Hz")
                for key, value in bag.custom_data.items():
                    print(f"  {key}: {value}")
                notes = list(bag.notes)
                for note in notes:
                    print(f"  note: {note}")
        except BagError as error:
            failed += 1
            print(f"{path}\n  unreadable: {error}")
            continue
        try:
            report = read_flight(path, topics).report
        except BagError as error:
            failed += 1
            print(f"  unusable for training: {error}")
            report = None
        command, motion, _ = lead_pair(all_topics, topics, report["topics"]["command"] if report else None)
        if command and motion:
            try:
                leads.append(estimate_lead(path, command, motion, topics))
                _print_lead(leads[-1])
            except BagError as error:
                print(f"  lead: not estimated: {error}")
        if report is None:
            continue
        _print_reading(report, notes)
        steps = report.get("image_clock_steps", 0)
        label = "motion label" if (report.get("label") or {}).get("kind") == "motion" else "command"
        print(f"  training would use {report['kept']} of {report['frames']} frames "
              f"({report['frames_without_command']} without a {label}, {report.get('frames_without_imu', 0)} "
              f"without IMU), {report['gaps']} gaps, {steps} clock steps back, out-of-order stamps: "
              f"{report['frame_out_of_order']} frames, {report['command_out_of_order']} commands; frame interval "
              f"{report['median_frame_interval_s'] * 1e3:.1f} ms")
    suggestion = suggested_lead(leads)
    if suggestion is not None:
        value = f"{suggestion[0]:g}" if len(set(suggestion)) == 1 else ",".join(f"{v:g}" for v in suggestion)
        counted = sum(any(v is not None for v in e["lead_s"]) for e in leads)
        over = f"the median of the {counted} bags with an estimate" if len(leads) > 1 else "this bag"
        print(f"lead to train on the motion ({over}): --command-lead {value} (commands lead the motion by the "
              f"vehicle's response; the label of a frame at t is the motion at t + lead)")
    if failed:
        raise SystemExit(2)


def _bag_reindex(args: argparse.Namespace) -> None:
    from liquid_pilot.data.storage import METADATA, reindex

    for path in args.bags:
        info = reindex(path)["rosbag2_bagfile_information"]
        print(f"wrote {Path(path) / METADATA}: {len(info['relative_file_paths'])} files, {info['message_count']} "
              f"messages, {len(info['topics_with_message_count'])} topics, "
              f"{info['duration']['nanoseconds'] / 1e9:.2f} s")


def _train_process(args: argparse.Namespace) -> dict:
    """Train in this process: the only one, each of torchrun's, or each Ray Train worker."""
    from liquid_pilot.train.trainer import train

    recipe = _recipe(args)
    settings = f"{recipe} (the shipped pilot's recipe; --config for another)" if recipe else None
    return train(_train_config(args), args.data, args.out, resume=args.resume, skip_bad=args.skip_bad,
                 cache_dir=args.cache_dir, settings=settings)


def _recipe(args: argparse.Namespace) -> Path | None:
    """Return the shipped pilot's recipe when the command trains from scratch without --config, else None."""
    from liquid_pilot.paths import data_dir

    return data_dir("config") / "train.yaml" if args.config is None and args.init is None else None


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """Return the training settings: --config, else (from scratch) the shipped recipe; the options over them."""
    from liquid_pilot.train.trainer import load_train_config

    return load_train_config(args.config, _train_overrides(args), topics=_reading_options(args),
                             defaults=_recipe(args))


def _train_overrides(args: argparse.Namespace) -> dict:
    return {key: value for key, value in (("epochs", args.epochs), ("threads", args.threads), ("seed", args.seed),
                                          ("device", args.device), ("precision", args.precision),
                                          ("workers", args.workers), ("init", args.init),
                                          ("freeze", ["cnn"] if args.freeze_cnn else None)) if value is not None}


def _train(args: argparse.Namespace) -> None:
    from liquid_pilot.train.distributed import launch

    if args.processes is not None and args.ray is None:
        raise ValueError("--processes starts Ray Train workers and needs --ray ADDRESS (auto, local or an address); "
                         "without Ray, start the processes with torchrun (docs/training.md: Training at scale)")
    if args.ray is not None:
        _train_on_ray(args)
        return
    rank, _, local_rank, _ = launch()
    try:
        summary = _train_process(args)
    except KeyboardInterrupt:
        _interrupted(args, rank)
    except (ValueError, OSError):
        if local_rank != 0:  # under torchrun: each machine's first process says it, once
            raise SystemExit(2) from None
        raise
    _trained(summary, rank)


def _train_on_ray(args: argparse.Namespace) -> None:
    """Run the same training with its processes started as Ray Train workers (liquid_pilot.train.ray_launch)."""
    from liquid_pilot.train import ray_launch

    args.processes = 1 if args.processes is None else args.processes
    try:
        ray_launch.check(args.processes)
    except ValueError:
        if os.environ.get("LOCAL_RANK", "0") != "0":  # started under torchrun after all: its first process says so
            raise SystemExit(2) from None
        raise
    config = _train_config(args)
    try:
        summary = ray_launch.train(_train_process, args, config)
    except KeyboardInterrupt:
        _interrupted(args, 0)
    _trained(summary, 0)


def _interrupted(args: argparse.Namespace, rank: int) -> NoReturn:
    if rank == 0:
        print(f"interrupted; the best checkpoint so far is {args.out}; add --resume to continue", file=sys.stderr)
    raise SystemExit(130) from None


def _trained(summary: dict, rank: int) -> None:
    if rank == 0:
        print(f"best validation loss {summary['best_val_loss']:.5f} after {summary['epochs']} epochs "
              f"({summary['seconds']:.0f} s); wrote {summary['checkpoint']}")


def _replay(args: argparse.Namespace) -> None:
    from liquid_pilot.train.replay import replay

    errors, flight = replay(args.model, args.bag, args.plot, given=_reading_options(args))
    _print_reading(flight.report, [], indent="")
    print(f"{len(flight.images)} frames of {flight.report['frames']} replayed")
    for axis, e in errors.items():
        print(f"{axis:9s} MAE {e['mae']:.4f}  RMSE {e['rmse']:.4f}")
    if args.plot:
        print(f"wrote {args.plot}")


def _demo(args: argparse.Namespace) -> None:
    from liquid_pilot.eval.demo import demo
    from liquid_pilot.models import default_model

    model = Path(args.model) if args.model else default_model()
    if not model.is_file():
        raise ValueError(f"{model}: no such pilot; train one (docs/results.md: Reproduce the shipped pilots) or "
                         "pass --model")
    demo(model, Path(args.out), args.episodes)


def _eval(args: argparse.Namespace) -> None:
    from liquid_pilot.eval.evaluate import evaluate, model_name, resolve_conditions, summarise
    from liquid_pilot.eval.report import markdown, write_report
    from liquid_pilot.eval.runs import parse_runs

    conditions = resolve_conditions(args.conditions)
    runs = parse_runs(args.runs, [model_name(m) for m in args.models])
    out = Path(args.out)

    flown = []

    def progress(record: dict, state) -> None:  # noqa: ANN001
        flown.append(record)
        print(f"{record['model']} {record['condition']} seed {record['seed']}: {record['reason']}  "
              f"[{state.line()}]", flush=True)

    records, spread = evaluate(args.models, conditions, args.episodes, out, args.seed, progress, args.workers,
                               args.ray)
    by_model = summarise(records)  # columns in the order the models were named, not the order they flew in
    summary = {name: by_model[name] for name in map(model_name, args.models) if name in by_model}
    note = (f"New episodes this run: {len(flown)}, {spread.describe()}." if flown
            else "No new episodes this run: every episode was read from episodes.jsonl.")
    write_report(summary, conditions, out, note=note, runs=runs)
    print(markdown(summary, conditions, note=note, runs=runs))
    print(f"wrote {out / 'report.md'}, {out / 'report.json'}, {out / 'heatmap.png'}")


def _add_spread_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    parser.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster: 'auto', 'local' or an address")


def _add_reading_options(parser: argparse.ArgumentParser, default: str) -> None:
    """How to read bags: topics, time source and body frames (checked by data.reader.TopicConfig)."""
    parser.add_argument("--image-topic", help=f"camera topic (Image or CompressedImage); default: {default}")
    parser.add_argument("--command-topic", help=f"the label: velocity commands (Twist, TwistStamped) or the vehicle's "
                        f"motion (Odometry, velocity telemetry such as MAVROS's local_position/velocity_body); "
                        f"default: {default}")
    parser.add_argument("--imu-topic", help=f"Imu topic, or 'none' for an image-only pilot; default: {default}")
    parser.add_argument("--time-source", metavar="{header,receive,auto}",
                        help="align streams by header stamps, by the time each message was recorded, or auto: "
                             "header stamps unless the streams' clocks disagree (default: auto)")
    parser.add_argument("--command-frame", metavar="{flu,frd}",
                        help="body frame of the recorded commands, converted to the pilot's FLU: flu (REP-103) or "
                             "frd (PX4, MAVLink BODY_NED) (default: flu)")
    parser.add_argument("--imu-frame", metavar="{flu,frd}", help="body frame of the recorded IMU (default: flu)")
    parser.add_argument("--command-kind", metavar="{auto,command,motion}",
                        help="what the command topic holds: velocity commands, or the motion the vehicle flew "
                             "(default auto: motion for Odometry and for .../velocity_body, else command)")
    parser.add_argument("--command-lead", metavar="SECONDS",
                        help="motion labels: the label of a frame at t is the motion at t + SECONDS (one value, or "
                             "four: vx,vy,vz,yaw_rate); bag info estimates it from bags with commands and odometry "
                             "(default 0)")
    parser.add_argument("--motion-smoothing", type=float, metavar="SECONDS",
                        help="motion labels: standard deviation of the zero-phase Gaussian that smooths them; 0: none "
                             "(default 0.05)")


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
    p = sub.add_parser("export", help="export a pilot's single step to ONNX, TorchScript and/or C")
    p.add_argument("model", help="checkpoint")
    p.add_argument("--onnx", help="ONNX file to write")
    p.add_argument("--torchscript", help="TorchScript file to write")
    p.add_argument("--c", metavar="DIR", help="directory for the step as portable C99, with a self-test and a Makefile")
    p.add_argument("--c-steps", type=int, default=64, metavar="N",
                   help="steps of the simulated flight the C self-test replays (default 64)")
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
    p = sub.add_parser("sitl", help="fly a pilot through a running PX4 or ArduPilot (SITL) in the simulator's scenes",
                       description="The autopilot flies the vehicle; the simulator renders the camera at the pose it "
                                   "reports and judges the task. Start the SITL first (docs/autopilot.md: the "
                                   "autopilot in the loop); the bridge takes off to --takeoff-height, flies the "
                                   "episodes, and lands.")
    p.add_argument("--stack", required=True, choices=("px4", "ardupilot"), help="the autopilot")
    p.add_argument("--address", required=True,
                   help="its MAVLink link: PX4 SITL udpin:127.0.0.1:14540, ArduPilot SITL tcp:127.0.0.1:5760")
    p.add_argument("--model", help="the pilot (.pt or .onnx; default: the shipped default pilot)")
    p.add_argument("--scenario", default="forest_summer", help="scenario name or YAML file (default: forest_summer)")
    p.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    p.add_argument("--seed", type=int, default=100000, help="the first episode's seed (default 100000)")
    p.add_argument("--takeoff-height", type=float, default=1.0, help="m above the ground where episodes start")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                   help="override a scenario setting (repeatable)")
    p.add_argument("--compare", action="store_true", help="also fly the same seeds in the simulator directly")
    p.add_argument("--out", help="write every episode's metrics here (JSON)")
    p.add_argument("--verbose", action="store_true", help="print the bridge's every transition")
    p.set_defaults(run=_sitl)
    p = sub.add_parser("collect", help="record expert flights in the simulator as rosbag2 bags")
    p.add_argument("--scenario", default="forest_summer", help="scenario name or YAML file")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes (seeds seed..seed+N-1)")
    p.add_argument("--out", required=True, help="folder for the bags (one per episode)")
    p.add_argument("--seed", type=int, default=0, help="first episode seed (default 0)")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="bag storage (default mcap)")
    p.add_argument("--perturbation", type=float, default=0.2,
                   help="DART-style noise on the flown command, as a share of the limits (default 0.2)")
    p.add_argument("--keep-failures", action="store_true", help="also write bags of failed expert flights")
    p.add_argument("--search", choices=["left", "right"], help="until the chair first comes into view, the expert "
                   "turns on the spot this way (labels the camera can predict; for flights that start with the chair "
                   "out of view); default: it turns the shortest way to the chair, which the camera cannot see")
    p.add_argument("--search-after-lost", type=float, metavar="SECONDS", help="with --search: the expert also "
                   "turns that way once the chair has been out of view this long after a sighting, until it is in "
                   "view again (default: never; within SECONDS it turns the shortest way back to the chair)")
    p.add_argument("--driver", metavar="MODEL", help="a pilot checkpoint flies (through the flight core) and the "
                   "expert labels what it saw: closed-loop data aggregation (DAgger); every flight is written, the "
                   "failed ones too")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE", help="override a scenario setting")
    _add_spread_options(p)
    p.set_defaults(run=_collect)
    p = sub.add_parser("bag", help="inspect bags")
    bag_sub = p.add_subparsers(dest="bag_command", required=True)
    p = bag_sub.add_parser("info", help="topics, rates, durations, gaps and what training would use")
    p.add_argument("bags", nargs="+", help="bags (rosbag2 folders, .mcap, .db3, ROS 1 .bag), or folders of bags")
    _add_reading_options(p, "chosen by type")
    p.set_defaults(run=_bag_info)
    p = bag_sub.add_parser("reindex", help="write a rosbag2 folder's metadata.yaml from its files "
                           "(like ros2 bag reindex)")
    p.add_argument("bags", nargs="+", help="rosbag2 bag folders")
    p.set_defaults(run=_bag_reindex)
    p = sub.add_parser("train", help="train a pilot from bags by imitation")
    p.add_argument("--config", default=None, help="training YAML (default: the shipped pilot's recipe, "
                   "config/train.yaml; with --init, the parent's architecture and the settings' defaults)")
    p.add_argument("--data", nargs="+", required=True, help="bags, or folders of bags")
    p.add_argument("--out", required=True, help="checkpoint to write (the best epoch is kept)")
    p.add_argument("--epochs", type=int, help="override the config's number of epochs")
    p.add_argument("--threads", type=int, help="override the config's CPU threads (e.g. 1 per run when "
                   "several trainings share the machine)")
    p.add_argument("--seed", type=int, help="override the config's seed (initialisation, validation split, "
                   "batch order, augmentation): for studies across training runs")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT.state.pt (with as "
                   "many processes as it had)")
    p.add_argument("--init", metavar="MODEL", help="fine-tune: start from this pilot checkpoint (its architecture, "
                   "inputs, normalisation and field of view are kept; its path and SHA-256 go into the provenance)")
    p.add_argument("--freeze-cnn", action="store_true", help="with --init: keep the parent's CNN as it is and train "
                   "the rest (freeze: [cnn] in the config)")
    p.add_argument("--skip-bad", action="store_true", help="report and skip unusable bags instead of stopping")
    p.add_argument("--device", metavar="{auto,cpu,cuda,mps}", help="where to train (default: the config's, auto: "
                   "cuda, else mps, else cpu); under torchrun each process takes the GPU of its local rank")
    p.add_argument("--precision", metavar="{auto,fp32,bf16,fp16}", help="autocast (default auto: bf16 on a GPU "
                   "that has it, else fp16 with gradient scaling; float32 on CPUs)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes per training process (default: none "
                   "on CPUs, up to 4 beside a GPU)")
    p.add_argument("--cache-dir", type=Path, help="folder for the decoded frames (default: "
                   "$XDG_CACHE_HOME/liquid_pilot/frames, else ~/.cache/liquid_pilot/frames)")
    p.add_argument("--ray", metavar="ADDRESS", help="train as Ray Train workers on a Ray cluster: 'auto', 'local' "
                   "or an address (needs the ray extra); instead of torchrun")
    p.add_argument("--processes", type=int, metavar="N", help="with --ray: training processes (Ray Train workers, "
                   "one GPU each on cuda; default 1)")
    _add_reading_options(p, "the config's topics, else chosen by type")
    p.set_defaults(run=_train)
    p = sub.add_parser("replay", help="run a pilot open loop over a bag and compare with its commands")
    p.add_argument("model", help="checkpoint")
    p.add_argument("bag", help="bag (rosbag2 folder, .mcap, .db3 or ROS 1 .bag)")
    p.add_argument("--plot", help="write predicted vs recorded commands here (PNG)")
    _add_reading_options(p, "as the checkpoint was trained, else chosen by type")
    p.set_defaults(run=_replay)
    # Listed for --help only: main() hands `ros ...` to the ROS launcher, which parses its own options.
    sub.add_parser("ros", help="run the ROS 2 nodes in one process without a ROS installation "
                   "(liquid-pilot ros --help)")
    p = sub.add_parser("eval", help="fly models in conditions on the same seeds; Markdown/JSON report, heat map")
    p.add_argument("--models", nargs="+", required=True, help="checkpoints, or 'expert'")
    p.add_argument("--conditions", nargs="+", default=["all"],
                   help="scenario names, 'all', 'ood', 'hard' (the hard tier), or 'validation' and 'validation2' "
                        "(the two held-out sets for choosing recipes; use another --seed than the table's) "
                        "(default: all)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per model and condition (default 50)")
    p.add_argument("--out", required=True, help="folder for episodes.jsonl and the report (resumes if present)")
    p.add_argument("--seed", type=int, default=100_000, help="first episode seed (default 100000)")
    p.add_argument("--runs", action="append", default=[], metavar="NAME=MODEL,MODEL,...",
                   help="models that are training runs of one recipe (names as in the report, e.g. "
                        "cfc_ncp=cfc_ncp,cfc_ncp_seed1): adds their mean, spread and t interval over runs; "
                        "repeat for each recipe")
    _add_spread_options(p)
    p.set_defaults(run=_eval)
    p = sub.add_parser("demo", help="the closed-loop simulation demo with the shipped pilot")
    p.add_argument("--model", help="pilot checkpoint (default: the shipped models/cfc_ncp.pt)")
    p.add_argument("--out", default="demo_out", help="folder for the video and plots (default demo_out)")
    p.add_argument("--episodes", type=int, default=3, help="episodes per condition (default 3)")
    p.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ros"]:  # the ROS launcher parses its own options, --help included
        from liquid_pilot.ros.launcher import main as ros_main

        return ros_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as exc:  # CheckpointError, BagError, ArtefactError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name not in EXTRAS:
            raise
        print(f"error: `liquid-pilot {argv[0]}` needs {exc.name}, which this install leaves out (the onboard "
              f"install flies artefacts only): pip install 'liquid_pilot[{EXTRAS[exc.name]}]' (or [full])",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
