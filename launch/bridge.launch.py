"""Fly a real drone: the pilot, the bridge to the flight stack and, with record:=true, a recorder.

    ros2 launch liquid_pilot bridge.launch.py stack:=px4 namespace:=drone1 image_topic:=/camera/color/image_raw
    ros2 launch liquid_pilot bridge.launch.py --show-args

px4.launch.py, mavros.launch.py, ardupilot.launch.py and crazyflie.launch.py are this file with its stack set:
`ros2 launch liquid_pilot px4.launch.py ARGS` is `ros2 launch liquid_pilot bridge.launch.py stack:=px4 ARGS`.
The stack chooses config/STACK.yaml, which holds the bridge's backend and the recorder's topics:

px4        offboard over MAVLink: pymavlink, MAV_FRAME_BODY_NED velocity setpoints. The operator arms and takes
           off (in position mode); the bridge streams setpoints for 1 s, switches to OFFBOARD and enables the
           pilot. A mode switch on the RC takes control back.
ardupilot  ArduPilot Copter, guided over MAVLink: pymavlink, MAV_FRAME_BODY_OFFSET_NED velocity setpoints. The
           operator arms and takes off (in LOITER); the bridge streams setpoints for 1 s, switches to GUIDED and
           enables the pilot. A mode switch on the RC takes control back.
mavros     setpoint_velocity/cmd_vel: the ENU world frame, rotated by the heading. MAVROS runs as you run it
           already. mavros_msgs has no wheel: the operator arms, takes off and switches to OFFBOARD/GUIDED; the
           bridge streams once the vehicle is airborne and cannot see the mode.
crazyflie  cflib hover setpoints, the pilot's vz integrated into a height. The bridge connects to the radio URI,
           takes off to 1 m on hover setpoints and enables the pilot; a positioning deck or system must give the
           state estimate.

Each node gets the shipped defaults first (pilot_node: config/pilot.yaml; bridge_node and recorder_node:
config/STACK.yaml), then the user's params_file, so that file needs only what it changes. The pilot starts
disabled; the bridge enables it through pilot_node/enable once it controls the vehicle, and disables it on
every way out (stale commands, geofence, hold, land, takeover). Services: bridge_node/hold, resume, land,
estop; status: bridge_node/status (JSON, latched). Ctrl-C: hover, then land.

When bridge_node exits (a crash, or after landing), the whole launch shuts down: the pilot sends its
final zero and stops, and the recorder closes its bag; nothing runs on without the vehicle's link.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, RegisterEventHandler, Shutdown
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("liquid_pilot"), "config"])
    pilot_defaults = PathJoinSubstitution([config, "pilot.yaml"])
    stack_defaults = [PathJoinSubstitution([config, LaunchConfiguration("stack")]), ".yaml"]  # config/STACK.yaml
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file")
    log_level = ["--ros-args", "--log-level", LaunchConfiguration("log_level")]
    pilot = Node(
        package="liquid_pilot",
        executable="pilot_node",
        name="pilot_node",
        namespace=namespace,
        parameters=[pilot_defaults, params_file],
        remappings=[
            ("camera/image_raw", LaunchConfiguration("image_topic")),
            ("imu/data", LaunchConfiguration("imu_topic")),
        ],
        arguments=log_level,
        output="screen",
        emulate_tty=True,
    )
    bridge = Node(
        package="liquid_pilot",
        executable="bridge_node",
        name="bridge_node",
        namespace=namespace,
        parameters=[stack_defaults, params_file],
        arguments=log_level,
        output="screen",
        emulate_tty=True,
        sigterm_timeout="35",  # Ctrl-C lands first (shutdown_timeout 30 s)
    )
    recorder = Node(
        package="liquid_pilot",
        executable="recorder_node",
        name="recorder_node",
        namespace=namespace,
        parameters=[stack_defaults, params_file],
        condition=IfCondition(LaunchConfiguration("record")),
        arguments=log_level,
        output="screen",
        emulate_tty=True,
        sigterm_timeout="10",  # time to close the open bag
    )
    return LaunchDescription([
        DeclareLaunchArgument("stack", choices=["px4", "mavros", "ardupilot", "crazyflie"],
                              description="the flight stack: config/STACK.yaml holds the bridge's backend "
                                          "(launch/STACK.launch.py sets it)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes and their topics"),
        DeclareLaunchArgument("params_file", default_value=stack_defaults,
                              description="your parameter file (/**/pilot_node, /**/bridge_node, /**/recorder_node "
                                          "sections), applied on top of config/pilot.yaml and config/STACK.yaml: "
                                          "set only what you change (e.g. bridge_node address: "
                                          "serial:/dev/ttyACM0:921600 for px4, tcp:127.0.0.1:5760 for ArduPilot "
                                          "SITL, mavros_frame: body for mavros, uri: radio://0/80/2M/E7E7E7E7E7 "
                                          "for crazyflie)"),
        DeclareLaunchArgument("image_topic", default_value="camera/image_raw",
                              description="the pilot's camera images (sensor_msgs/Image; /compressed is appended "
                                          "for image_transport: compressed); its camera_info is the sibling topic"),
        DeclareLaunchArgument("imu_topic", default_value="imu/data", description="the pilot's IMU (sensor_msgs/Imu)"),
        DeclareLaunchArgument("record", default_value="false",
                              description="true: also record camera, IMU, commands and the bridge's status to MCAP"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        pilot,
        bridge,
        recorder,
        # The pilot and the recorder never run on without the bridge: its exit shuts the launch down.
        RegisterEventHandler(OnProcessExit(target_action=bridge, on_exit=[
            Shutdown(reason="bridge_node exited: stopping the pilot (final zero) and the recorder")])),
    ])
