"""From the pilot's body-frame velocity commands to a flight controller: PX4, ArduPilot, MAVROS, Crazyflie.

Plain Python, no ROS and no simulator (``liquid_pilot.ros.bridge_node`` is the ROS shell):

- ``conversions``: frames, signs and units (FLU/FRD, ENU/NED, body/world, rad/deg), in one place;
- ``supervisor``: one state machine for every stack, with an injectable clock: link, arming and
  take-off, the offboard switch after the setpoint stream runs, the pilot's enable, stale commands,
  geofence, hold/land/estop, operator takeover, shutdown;
- ``runner``: the keep-alive thread that ticks the supervisor at the stack's rate;
- backends: ``mavlink`` (PX4 and ArduPilot through pymavlink), ``mavros`` (its topics, wired by the
  node), ``crazyflie`` (cflib).
"""
