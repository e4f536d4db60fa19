"""Harnesses that run simulator episodes with other parts of the project: above sim/, data/ and bridge/.

- ``pilots``: a trained pilot (a checkpoint or its flight artefact) as a simulator policy, flown through the
  flight core that ``pilot_node`` flies;
- ``bags``: simulator episodes written as rosbag2 bags (the messages of the camera, IMU, odometry and labels);
- ``collect``: demonstrations collected in parallel (the expert, its search rule, or a pilot flying while the
  expert labels: DAgger), written as bags;
- ``mavlink_vehicle``: the simulator as a MAVLink vehicle (PX4's and ArduPilot's side of the bridge), and the
  end-to-end run camera -> pilot -> bridge -> vehicle in lockstep;
- ``autopilot``: a real autopilot (PX4 or ArduPilot SITL, over MAVLink) flies the liquid pilot through the
  simulator's scenes: camera -> pilot -> bridge -> the autopilot's firmware and physics -> odometry -> camera.
"""
