"""Record demonstrations: the simulator flies its privileged expert, the recorder writes MCAP bags.

    ros2 launch liquid_pilot record.launch.py record_params_file:=my_record.yaml

config/record.yaml (on top of config/sim.yaml) switches the simulator to the expert and
sets the recorder's topics, output folder and splitting. Stop with Ctrl-C: the open bag is
closed and stays readable. `liquid-pilot ros record` runs the same nodes in one process.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("liquid_pilot"), "config"])
    sim_params = PathJoinSubstitution([config, "sim.yaml"])
    record_params = PathJoinSubstitution([config, "record.yaml"])
    namespace = LaunchConfiguration("namespace")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both nodes and their topics"),
        DeclareLaunchArgument("sim_params_file", default_value=sim_params, description="sim_node parameters"),
        DeclareLaunchArgument("record_params_file", default_value=record_params,
                              description="the expert autopilot for sim_node, and recorder_node parameters"),
        Node(
            package="liquid_pilot",
            executable="sim_node",
            name="sim_node",
            namespace=namespace,
            parameters=[LaunchConfiguration("sim_params_file"), LaunchConfiguration("record_params_file")],
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package="liquid_pilot",
            executable="recorder_node",
            name="recorder_node",
            namespace=namespace,
            parameters=[LaunchConfiguration("record_params_file")],
            output="screen",
            emulate_tty=True,
            sigterm_timeout="10",  # time to close the open bag
        ),
    ])
