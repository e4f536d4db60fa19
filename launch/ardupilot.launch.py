"""Fly a real drone with ArduPilot Copter: the pilot, the bridge and, with record:=true, a recorder.

The bridge: guided over MAVLink: pymavlink, MAV_FRAME_BODY_OFFSET_NED velocity setpoints.

    ros2 launch liquid_pilot ardupilot.launch.py params_file:=my_ardupilot.yaml
    ros2 launch liquid_pilot ardupilot.launch.py --show-args

The operator arms and takes off (in LOITER); the bridge streams setpoints for 1 s, switches to
GUIDED and enables the pilot. A mode switch on the RC takes control back.

This is bridge.launch.py with stack:=ardupilot: see there for the nodes, parameter files and services.
"""
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    bridge = PythonLaunchDescriptionSource(
        PathJoinSubstitution([FindPackageShare("liquid_pilot"), "launch", "bridge.launch.py"]))
    return LaunchDescription([IncludeLaunchDescription(bridge, launch_arguments={"stack": "ardupilot"}.items())])
