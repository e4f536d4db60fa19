"""Fly a real drone: the pilot node with its parameters, topic remappings and namespace.

    ros2 launch liquid_pilot pilot.launch.py namespace:=drone1 image_topic:=/camera/color/image_raw
    ros2 service call /drone1/pilot_node/enable std_srvs/srv/SetBool "{data: true}"   # once airborne

    ros2 launch liquid_pilot pilot.launch.py --show-args

The node gets config/pilot.yaml first, then the user's params_file, so that file needs only what
it changes. The pilot starts disabled, publishing zero commands, until it is enabled.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    pilot_defaults = PathJoinSubstitution([FindPackageShare("liquid_pilot"), "config", "pilot.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("params_file", default_value=pilot_defaults,
                              description="your parameter file (a /**/pilot_node section), applied on top of "
                                          "config/pilot.yaml: set only what you change (e.g. model)"),
        DeclareLaunchArgument("image_topic", default_value="camera/image_raw",
                              description="camera images (sensor_msgs/Image; /compressed is appended for "
                                          "image_transport: compressed); the pilot takes camera_info from the "
                                          "sibling topic (/camera/color/image_raw -> /camera/color/camera_info), "
                                          "as image_transport pairs them, so it moves with the image"),
        DeclareLaunchArgument("imu_topic", default_value="imu/data", description="IMU samples (sensor_msgs/Imu)"),
        DeclareLaunchArgument("cmd_vel_topic", default_value="cmd_vel", description="velocity commands out"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        Node(
            package="liquid_pilot",
            executable="pilot_node",
            name="pilot_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=[pilot_defaults, LaunchConfiguration("params_file")],
            remappings=[
                ("camera/image_raw", LaunchConfiguration("image_topic")),
                ("imu/data", LaunchConfiguration("imu_topic")),
                ("cmd_vel", LaunchConfiguration("cmd_vel_topic")),
            ],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            output="screen",
            emulate_tty=True,
        ),
    ])
