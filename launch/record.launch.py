"""Record demonstrations: the simulator flies its privileged expert, the recorder writes MCAP bags.

    ros2 launch liquid_pilot record.launch.py params_file:=my_record.yaml
    ros2 launch liquid_pilot record.launch.py --show-args

Each node gets the shipped defaults first (sim_node: config/sim.yaml then config/record.yaml,
which switches it to the expert; recorder_node: config/record.yaml: topics, output folder,
splitting), then the user's params_file, so that file needs only what it changes. The simulator
starts its first episode once the recorder subscribes. Stop with Ctrl-C: the open bag is closed
and stays readable. `liquid-pilot ros record` runs the same nodes in one process.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("liquid_pilot"), "config"])
    sim_defaults = PathJoinSubstitution([config, "sim.yaml"])
    record_defaults = PathJoinSubstitution([config, "record.yaml"])
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file")
    log_level = ["--ros-args", "--log-level", LaunchConfiguration("log_level")]
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both nodes and their topics"),
        DeclareLaunchArgument("params_file", default_value=record_defaults,
                              description="your parameter file (/**/sim_node and/or /**/recorder_node sections), "
                                          "applied on top of config/sim.yaml and config/record.yaml: set only what "
                                          "you change (e.g. the recorder's output)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        Node(
            package="liquid_pilot",
            executable="sim_node",
            name="sim_node",
            namespace=namespace,
            parameters=[sim_defaults, record_defaults, params_file],
            arguments=log_level,
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package="liquid_pilot",
            executable="recorder_node",
            name="recorder_node",
            namespace=namespace,
            parameters=[record_defaults, params_file],
            arguments=log_level,
            output="screen",
            emulate_tty=True,
            sigterm_timeout="10",  # time to close the open bag
        ),
    ])
