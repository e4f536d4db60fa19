"""Fly the simulator with the pilot: both on simulated time (the simulator publishes /clock).

    ros2 launch liquid_pilot sim.launch.py sim_params_file:=my_sim.yaml

config/sim.yaml sets the scenario, the pace and, for the pilot, use_sim_time and
start_enabled. `liquid-pilot ros sim` runs the same nodes and files in one process.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("liquid_pilot"), "config"])
    pilot_params = PathJoinSubstitution([config, "pilot.yaml"])
    sim_params = PathJoinSubstitution([config, "sim.yaml"])
    namespace = LaunchConfiguration("namespace")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both nodes and their topics"),
        DeclareLaunchArgument("pilot_params_file", default_value=pilot_params, description="pilot_node parameters"),
        DeclareLaunchArgument("sim_params_file", default_value=sim_params,
                              description="sim_node parameters and the pilot's simulation settings"),
        Node(
            package="liquid_pilot",
            executable="pilot_node",
            name="pilot_node",
            namespace=namespace,
            parameters=[LaunchConfiguration("pilot_params_file"), LaunchConfiguration("sim_params_file")],
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package="liquid_pilot",
            executable="sim_node",
            name="sim_node",
            namespace=namespace,
            parameters=[LaunchConfiguration("sim_params_file")],
            output="screen",
            emulate_tty=True,
        ),
    ])
