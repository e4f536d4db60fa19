"""Flights as rosbag2 bags: recording from the simulator, reading real bags, training sequences."""
