"""Fly the simulator with the pilot: both on simulated time (the simulator publishes /clock).

    ros2 launch liquid_pilot sim.launch.py params_file:=my_sim.yaml
    ros2 launch liquid_pilot sim.launch.py --show-args

Each node gets the shipped defaults first (pilot_node: config/pilot.yaml then config/sim.yaml;
sim_node: config/sim.yaml), then the user's params_file, so that file needs only what it
changes, for either node or both. sim_node waits for the pilot before the first episode and
disables it between episodes. `liquid-pilot ros sim` runs the same nodes and files in one process.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("liquid_pilot"), "config"])
    pilot_defaults = PathJoinSubstitution([config, "pilot.yaml"])
    sim_defaults = PathJoinSubstitution([config, "sim.yaml"])
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file")
    log_level = ["--ros-args", "--log-level", LaunchConfiguration("log_level")]
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both nodes and their topics"),
        DeclareLaunchArgument("params_file", default_value=sim_defaults,
                              description="your parameter file (/**/pilot_node and/or /**/sim_node sections), applied "
                                          "on top of config/pilot.yaml and config/sim.yaml: set only what you change"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        Node(
            package="liquid_pilot",
            executable="pilot_node",
            name="pilot_node",
            namespace=namespace,
            parameters=[pilot_defaults, sim_defaults, params_file],
            arguments=log_level,
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package="liquid_pilot",
            executable="sim_node",
            name="sim_node",
            namespace=namespace,
            parameters=[sim_defaults, params_file],
            arguments=log_level,
            output="screen",
            emulate_tty=True,
        ),
    ])
