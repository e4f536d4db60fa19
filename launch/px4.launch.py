"""Fly a real drone with PX4: the pilot, the bridge and, with record:=true, a recorder.

The bridge: offboard over MAVLink: pymavlink, MAV_FRAME_BODY_NED velocity setpoints.

    ros2 launch liquid_pilot px4.launch.py namespace:=drone1 image_topic:=/camera/color/image_raw
    ros2 launch liquid_pilot px4.launch.py --show-args

The operator arms and takes off (in position mode); the bridge streams setpoints for 1 s, switches
to OFFBOARD and enables the pilot. A mode switch on the RC takes control back.

This is bridge.launch.py with stack:=px4: see there for the nodes, parameter files and services.
"""
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    bridge = PythonLaunchDescriptionSource(
        PathJoinSubstitution([FindPackageShare("liquid_pilot"), "launch", "bridge.launch.py"]))
    return LaunchDescription([IncludeLaunchDescription(bridge, launch_arguments={"stack": "px4"}.items())])
