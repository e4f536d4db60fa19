"""Fly a real drone with MAVROS: the pilot, the bridge and, with record:=true, a recorder.

The bridge: setpoint_velocity/cmd_vel: the ENU world frame, rotated by the heading.

    ros2 launch liquid_pilot mavros.launch.py namespace:=drone1
    ros2 launch liquid_pilot mavros.launch.py --show-args

MAVROS runs as you run it already. mavros_msgs has no wheel: the operator arms, takes off and
switches to OFFBOARD/GUIDED; the bridge streams once the vehicle is airborne and cannot see the mode.

This is bridge.launch.py with stack:=mavros: see there for the nodes, parameter files and services.
"""
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    bridge = PythonLaunchDescriptionSource(
        PathJoinSubstitution([FindPackageShare("liquid_pilot"), "launch", "bridge.launch.py"]))
    return LaunchDescription([IncludeLaunchDescription(bridge, launch_arguments={"stack": "mavros"}.items())])
