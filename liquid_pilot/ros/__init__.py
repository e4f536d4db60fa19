"""ROS 2 nodes: the pilot, the simulator, a bag recorder and player, and an in-process launcher.

This package is the only part of liquid_pilot that imports rclpy (the ``ros`` extra).
"""
