"""The manual (README.md, docs/): a short front door, and every link, command and file it names is real.

Pages: README.md, every Markdown file under docs/ (the manual's pages, the results' notes and reports) and the
model card, models/README.md.

- README.md has at most 300 lines; the rest of the manual is in docs/.
- Every relative Markdown link (and image) names a file or folder of the repository, and every ``#anchor`` a
  heading of the page it points to, slugged as GitHub does.
- The shell blocks (fenced ``sh``, ``bash``, ``shell``; the ``$ `` lines of ``console``) are expanded by bash as a
  user's shell would (backslash continuations, comments, loops, variables, arrays, brace expansion and globs), and
  nothing is run: the shell starts in an empty folder, its PATH an empty folder, and a DEBUG trap skips every
  command but assignments and a few harmless builtins; every other command reaches command_not_found_handle,
  which records it with its expanded arguments (a console script called by its path, ``~/lp/bin/pilot_node``, is
  recorded by its name; other commands named by a path are skipped). No line is skipped for its shell variables (a
  loop's variable takes each of its values; an unset variable fails the block). Then, of the commands recorded:
  - ``liquid-pilot ARGS`` (and ``python -m liquid_pilot.cli``, ``torchrun ... -m liquid_pilot.cli``, ``ros2 run
    liquid_pilot liquid-pilot``) parses with the real parser, ``liquid_pilot.cli.build_parser``, placeholders as
    they are written (``liquid-pilot ros`` with the ROS launcher's parser, its ``--set`` names and values checked
    against the nodes' tables). A ``--scenario`` name is loaded with its ``--set`` overrides, and ``--conditions``
    are resolved, as the command would do first. ``--help`` lines are fine.
  - any argument naming a ``config/`` file, once expanded (``config/train_$head.yaml``), names one that exists;
  - ``ros2 launch liquid_pilot FILE NAME:=VALUE``: FILE is in launch/, NAME an argument that FILE (or a launch
    file it includes) declares, VALUE among its choices;
  - ``ros2 run liquid_pilot EXECUTABLE --ros-args -p NAME:=VALUE`` (or the executable run by itself): a console
    script of setup.py, and, for a node, a parameter of its table that accepts VALUE;
  - ``make TARGET``: a target of the Makefile, or with ``-C build/c/...`` of the Makefile the C export writes.
    One command runs another project's Makefile: ``make px4_sitl ...`` (PX4-Autopilot's, docs/autopilot.md).
- In the prose too: ``make TARGET`` in inline code names a target of either Makefile (the C export's pages
  name its targets), ``ros2 launch liquid_pilot FILE`` an existing launch file, and every ``config/...`` path
  exists (a glob such as ``config/train*.yaml``, or one with a shell variable, taken as a wildcard, matches a file).
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import glob
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_ros_launch import console_scripts
from test_ros_launch import launch_arguments as declared_arguments

ROOT = Path(__file__).resolve().parents[1]
# The manual, the model card and the results' notes (docs/results/: reports and the READMEs beside them).
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "models" / "README.md"]
IDS = [str(page.relative_to(ROOT)) for page in PAGES]
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```|~~~)(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^ *(?P=fence)[ \t]*$",
                   re.S | re.M)
SHELL = {"sh", "bash", "shell", "console"}
# A make command whose first target is one of these runs another project's Makefile: not checked here.
EXTERNAL_MAKE_TARGETS = {"px4_sitl": "PX4-Autopilot's (docs/autopilot.md: with your own SITL)"}

# Run before each block: nothing but recording. The trap skips (returns 1 under extdebug) any command named by a
# path, any builtin or keyword outside SAFE and any assignment that carries a command; the rest are names PATH
# cannot find, which bash hands to command_not_found_handle.
PRELUDE = r"""set -uT
shopt -s extdebug
__safe=" for in do done if then else fi case esac [[ ]] test [ : true false echo printf local return "
__guard() {
    local command=$BASH_COMMAND word=${BASH_COMMAND%%[[:space:]]*}
    if [[ $command =~ ^[A-Za-z_][A-Za-z0-9_]*\+?=(\(.*\)|[^[:space:]]*)$ ]]; then return 0; fi
    if [[ $word == */* || $word == "~"* || $word == *=* ]]; then return 1; fi
    case $(type -t -- "$word") in
        "") return 0 ;;
        builtin|keyword) [[ $__safe == *" $word "* ]] && return 0 || return 1 ;;
        *) return 1 ;;
    esac
}
command_not_found_handle() {
    # One write per record: both sides of a pipeline run at once and append to the same log.
    local __record
    printf -v __record '%s\037' "${BASH_LINENO[0]}" "$@"
    printf '%s\036' "$__record" >> "$__DOCS_LOG"
    return 0
}
trap __guard DEBUG
"""


def strip_code(text: str) -> str:
    """``text`` without its fenced blocks (kept as blank lines, so line numbers stay) and inline code spans."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return re.sub(r"`[^`]+`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text in lower case, punctuation dropped, each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[*`]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (ATX headings outside code; repeats get -1, -2 ...)."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"#{1,6} +(.*?)[ #]*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def test_the_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move sections into docs/ (at most 300)"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text()
    bad = []
    for match in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", strip_code(text)):
        target = match.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        where = f"{page.relative_to(ROOT)}:{line_of(strip_code(text), match.start())}: {target}"
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            bad.append(f"{where}: no such file")
        elif ROOT not in file.parents and file != ROOT:
            bad.append(f"{where}: outside the repository")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            bad.append(f"{where}: no heading with that anchor in {file.relative_to(ROOT)}")
    assert bad == []


def test_slugs_follow_github() -> None:
    assert slug("Launch files a user can't misconfigure") == "launch-files-a-user-cant-misconfigure"
    assert slug("Every head over three training runs: does a liquid pilot generalise better?") == \
        "every-head-over-three-training-runs-does-a-liquid-pilot-generalise-better"
    assert slug("The `liquid-pilot` command (`cli.py`)") == "the-liquid-pilot-command-clipy"
    assert slug("Results — 50 episodes, ±95%") == "results--50-episodes-95"


def shell_blocks(page: Path) -> list[tuple[int, str]]:
    """(line of the block's first line, its text) for each shell block; console blocks keep their ``$ `` lines."""
    text = page.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        if match.group("lang") not in SHELL:
            continue
        body = match.group("body")
        lines = [re.sub(rf"^ {{0,{len(match.group('indent'))}}}", "", line) for line in body.splitlines()]
        if match.group("lang") == "console":
            lines = [line[2:] if line.startswith("$ ") else "" for line in lines]
        else:
            lines = [line[2:] if line.startswith("$ ") else line for line in lines]
        # A console script called by its path (~/lp/bin/pilot_node) is checked as the command it is.
        scripts = "|".join(re.escape(name) for name in console_scripts())
        lines = [re.sub(rf"(^\s*|(?:&&|\|\||;|\||\bdo|\bthen)\s+)[^\s;&|]*/({scripts})(?=\s|$)", r"\1\2", line)
                 for line in lines]
        blocks.append((line_of(text, match.start("body")), "\n".join(lines)))
    return blocks


def commands(block: str, tmp_path: Path) -> list[tuple[int, list[str]]]:
    """The commands a shell block runs, expanded by bash and run by nothing: (line in the block, argv)."""
    log = tmp_path / "commands.log"
    log.write_bytes(b"")
    cwd, empty = tmp_path / "cwd", tmp_path / "empty"  # PATH names an empty folder (an empty PATH is the cwd)
    cwd.mkdir(exist_ok=True)
    empty.mkdir(exist_ok=True)
    result = subprocess.run([shutil.which("bash"), "--noprofile", "--norc", "-c", PRELUDE + block],
                            cwd=cwd, env={"PATH": str(empty), "HOME": str(tmp_path / "home"), "__DOCS_LOG": str(log)},
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    assert result.stderr == "", f"bash: {result.stderr.strip()}"
    offset = PRELUDE.count("\n")
    out = []
    for record in log.read_text().split("\x1e")[:-1]:
        line, *argv = record.split("\x1f")[:-1]
        out.append((int(line) - offset, argv))
    return out


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    """``argv`` parsed as the command would parse it; None for --help; ValueError with argparse's message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code in (0, None):
            return None
        raise ValueError(stderr.getvalue().strip().splitlines()[-1]) from None


def check_liquid_pilot(argv: list[str]) -> None:
    """A ``liquid-pilot`` command line: parsed, and its scenario, overrides and conditions checked."""
    from liquid_pilot import cli

    if argv[:1] == ["ros"]:
        from liquid_pilot.ros import launcher

        args = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
        parsed = parse(launcher.build_parser(), args)
        if parsed is not None:
            nodes = [node for node, _ in launcher.MODES[parsed.mode]]
            for node, values in launcher.parse_set(parsed.set, nodes).items():
                launcher.overrides(node, values, "--set")
        return
    parsed = parse(cli.build_parser(), argv)
    if parsed is None:
        return
    if getattr(parsed, "scenario", None) and not parsed.scenario.endswith((".yaml", ".yml")):
        cli._scenario(parsed)
    if parsed.command == "eval":
        from liquid_pilot.eval.evaluate import resolve_conditions

        resolve_conditions(parsed.conditions)


def launch_arguments(name: str) -> dict[str, list | None]:
    """The arguments a launch file declares, with their choices, and those of the launch files it includes."""
    path = ROOT / "launch" / name
    out = {key: argument["choices"] for key, argument in declared_arguments(path).items()}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value != name \
                and node.value.endswith(".launch.py") and (ROOT / "launch" / node.value).is_file():
            out |= launch_arguments(node.value)
    return out


def check_ros2(argv: list[str]) -> None:
    """``ros2 launch liquid_pilot ...`` and ``ros2 run liquid_pilot ...``; other ros2 commands are ROS's."""
    if len(argv) < 3 or argv[2] != "liquid_pilot" or argv[1] not in ("launch", "run"):
        return
    if argv[1] == "launch":
        name = argv[3]
        if not (ROOT / "launch" / name).is_file():
            raise ValueError(f"no launch/{name}")
        declared = launch_arguments(name)
        for item in argv[4:]:
            if item.startswith("-"):
                continue
            key, sep, value = item.partition(":=")
            if not sep or key not in declared:
                raise ValueError(f"{name} declares no argument {key!r}; it has: {', '.join(sorted(declared))}")
            if declared[key] is not None and value not in declared[key]:
                raise ValueError(f"{name}: {key}:={value} is not one of {declared[key]}")
        return
    scripts = console_scripts()
    executable, rest = argv[3], argv[4:]
    if executable not in scripts:
        raise ValueError(f"no executable {executable!r}; setup.py has: {', '.join(sorted(scripts))}")
    if executable == "liquid-pilot":
        check_liquid_pilot(rest)
        return
    check_node_parameters(scripts[executable].partition(":")[0], rest)


def check_node_parameters(module: str, args: list[str]) -> None:
    """Each ``-p NAME:=VALUE`` after --ros-args names a parameter of the node's table that accepts VALUE."""
    import importlib

    from liquid_pilot.ros.params import builtin

    table = {p.name: p for p in importlib.import_module(module).PARAMETERS}
    for flag, item in zip(args, args[1:]):
        if flag in ("-p", "--param"):
            name, _, value = item.partition(":=")
            if name in table:
                table[name].check(yaml.safe_load(value))
            elif not builtin(name):
                raise ValueError(f"{module} has no parameter {name!r}")


def make_targets(text: str) -> set[str]:
    return set(re.findall(r"^(\w[\w.-]*):", text, re.M))


def check_make(argv: list[str], inline: bool = False) -> None:
    """``make [-C DIR] TARGET... [VAR=VALUE]``: each target is one of the Makefile it runs."""
    from liquid_pilot.nn.export_c_files import MAKEFILE

    ours, exported = make_targets((ROOT / "Makefile").read_text()), make_targets(MAKEFILE)
    args = argv[1:]
    known = ours | exported if inline else ours
    if args[:1] == ["-C"]:
        if not args[1].startswith("build/c/"):
            raise ValueError(f"make -C {args[1]}: not a folder the C export writes (build/c/...)")
        known, args = exported, args[2:]
    targets = [arg for arg in args if "=" not in arg]
    if targets[:1] and targets[0] in EXTERNAL_MAKE_TARGETS:
        return
    for target in targets:
        if target not in known:
            raise ValueError(f"no make target {target!r}; there are: {', '.join(sorted(known))}")


def check_command(argv: list[str]) -> None:
    """Dispatch one recorded command to its check; commands of other tools (pip, scp, git ...) pass."""
    name = argv[0]
    for arg in argv[1:]:
        if arg.startswith("config/") and not (ROOT / arg).exists():
            raise ValueError(f"{arg}: no such file")
    if name == "liquid-pilot":
        check_liquid_pilot(argv[1:])
    elif name in ("python", "python3", "torchrun") and "-m" in argv:
        module = argv.index("-m") + 1
        if argv[module] == "liquid_pilot.cli":
            check_liquid_pilot(argv[module + 1:])
    elif name == "ros2":
        check_ros2(argv)
    elif name in console_scripts():  # a node's executable
        check_node_parameters(console_scripts()[name].partition(":")[0], argv[1:])
    elif name == "make":
        check_make(argv)


def test_both_sides_of_a_pipeline_are_recorded_whole(tmp_path: Path) -> None:
    # Both sides of a pipeline run at once and append to one log: twenty pipelines, each a race between the two.
    block = ('for band in {1..20}; do\n  for seed in 1 2; do\n    liquid-pilot sim --seed $seed\n'
             '  done | grep -c x\ndone')
    recorded = commands(block, tmp_path)
    assert sorted(recorded) == sorted([(3, ["liquid-pilot", "sim", "--seed", "1"]),
                                       (3, ["liquid-pilot", "sim", "--seed", "2"]), (4, ["grep", "-c", "x"])] * 20)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_shell_blocks_name_real_commands(page: Path, tmp_path: Path) -> None:
    bad = []
    for start, block in shell_blocks(page):
        for line, argv in commands(block, tmp_path):
            try:
                check_command(argv)
            except Exception as exc:  # noqa: BLE001 (any error of the real code is the finding)
                bad.append(f"{page.relative_to(ROOT)}:{start + line - 1}: {' '.join(argv)}\n    {exc}")
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_prose_names_real_targets_launch_files_and_configs(page: Path) -> None:
    text = page.read_text()
    bad = []
    for match in re.finditer(r"`(make [^`]+)`", FENCE.sub("", text)):
        try:
            check_make(match.group(1).split(), inline=True)
        except ValueError as exc:
            bad.append(f"`{match.group(1)}`: {exc}")
    for match in re.finditer(r"ros2 launch liquid_pilot ([\w.]+)", text):
        if not (ROOT / "launch" / match.group(1)).is_file():
            bad.append(f"line {line_of(text, match.start())}: no launch/{match.group(1)}")
    for match in re.finditer(r"(?<![\w/.~-])config/[^\s`'\"()\],;:|]*", text):
        path = match.group(0).rstrip(".")
        pattern = re.sub(r"\$\{?\w+\}?", "*", path)
        if not glob.glob(str(ROOT / pattern)):
            bad.append(f"line {line_of(text, match.start())}: {path}: no such file")
    assert bad == [], "\n".join(bad)
