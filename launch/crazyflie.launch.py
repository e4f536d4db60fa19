"""Fly a real drone with a Crazyflie: the pilot, the bridge and, with record:=true, a recorder.

The bridge: cflib hover setpoints, the pilot's vz integrated into a height.

    ros2 launch liquid_pilot crazyflie.launch.py params_file:=my_crazyflie.yaml
    ros2 launch liquid_pilot crazyflie.launch.py --show-args

The bridge connects to the radio URI, takes off to 1 m on hover setpoints and enables the pilot;
a positioning deck or system must give the state estimate.

This is bridge.launch.py with stack:=crazyflie: see there for the nodes, parameter files and services.
"""
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    bridge = PythonLaunchDescriptionSource(
        PathJoinSubstitution([FindPackageShare("liquid_pilot"), "launch", "bridge.launch.py"]))
    return LaunchDescription([IncludeLaunchDescription(bridge, launch_arguments={"stack": "crazyflie"}.items())])
